"""`Lane`, the state machine of `map_async`'s lanes, driven with futures the test completes."""

from __future__ import annotations

import pickle
import threading
import zlib
from concurrent.futures import Future
from typing import Any

import pytest

from operators.runtime.inflight import (
    AsyncFailure,
    IncompatibleStateError,
    Lane,
    PendingBound,
    lane_for,
)

Item = tuple[str, int]
"""(key, n): the tests' items."""


class FakeWork:
    """A `submit` callable whose futures the test completes by item."""

    def __init__(self) -> None:
        self.futures: dict[Item, Future[Any]] = {}
        self.submitted: list[Item] = []

    def __call__(self, item: Item) -> Future[Any]:
        future: Future[Any] = Future()
        self.futures[item] = future
        self.submitted.append(item)
        return future

    def finish(self, *items: Item) -> None:
        for item in items:
            self.futures[item].set_result(f"{item[0]}{item[1]}")

    def fail(self, item: Item, exc: BaseException) -> None:
        self.futures[item].set_exception(exc)


def lane_of(work: FakeWork, limit: int = 100, **kwargs: Any) -> Lane[Item, str]:
    return Lane(work, key=lambda item: item[0], bound=PendingBound(limit), **kwargs)


def test_results_leave_in_completion_order_across_keys() -> None:
    work = FakeWork()
    lane = lane_of(work)
    lane.submit([("a", 1), ("b", 1), ("c", 1)])
    assert lane.poll() == [] and len(lane) == 3
    work.finish(("c", 1))
    assert lane.poll() == ["c1"]
    work.finish(("a", 1), ("b", 1))
    assert lane.poll() == ["a1", "b1"]
    assert len(lane) == 0


def test_a_key_waits_for_its_earlier_items() -> None:
    work = FakeWork()
    lane = lane_of(work)
    lane.submit([("s", 1), ("s", 2), ("t", 1), ("s", 3)])
    work.finish(("s", 3), ("s", 2), ("t", 1))
    assert lane.poll() == ["t1"], "s2 and s3 wait for s1"
    assert len(lane) == 3
    work.finish(("s", 1))
    assert lane.poll() == ["s1", "s2", "s3"]
    assert len(lane) == 0


def test_a_failed_item_becomes_an_async_failure_in_its_place() -> None:
    work = FakeWork()
    lane = lane_of(work)
    lane.submit([("s", 1), ("s", 2)])
    work.finish(("s", 2))
    work.fail(("s", 1), ValueError("bad input"))
    assert lane.poll() == [AsyncFailure(("s", 1), "ValueError", "bad input"), "s2"]


def test_snapshot_holds_exactly_the_unemitted_items_as_data() -> None:
    work = FakeWork()
    lane = lane_of(work)
    lane.submit([("s", 1), ("s", 2), ("t", 1), ("u", 1)])
    work.finish(("t", 1), ("s", 2))
    assert lane.poll() == ["t1"]
    state = lane.snapshot()
    assert state == {"version": 1, "pending": [(0, ("s", 1)), (1, ("s", 2)), (3, ("u", 1))]}
    assert pickle.loads(pickle.dumps(state)) == state, "plain data, no futures"


def test_restore_submits_the_items_again_and_keeps_their_order() -> None:
    state = {"version": 1, "pending": [(3, ("u", 1)), (0, ("s", 1)), (1, ("s", 2))]}
    work = FakeWork()
    lane = lane_of(work)
    lane.restore(state)
    assert work.submitted == [("s", 1), ("s", 2), ("u", 1)]
    lane.submit([("s", 3)])
    assert lane.snapshot()["pending"][-1] == (4, ("s", 3)), "new items follow the restored ones"
    work.finish(("s", 3), ("s", 2))
    assert lane.poll() == []
    work.finish(("s", 1), ("u", 1))
    assert lane.poll() == ["s1", "s2", "s3", "u1"]


@pytest.mark.parametrize("state", [{"version": 2, "pending": []}, {"pending": []}, [1, 2]])
def test_a_snapshot_of_another_version_is_refused(state: Any) -> None:
    lane = lane_of(FakeWork())
    with pytest.raises(IncompatibleStateError, match="state version"):
        lane.restore(state)


def test_drain_waits_for_the_items_then_fails_the_late_ones() -> None:
    work = FakeWork()
    lane = lane_of(work)
    lane.submit([("s", 1), ("s", 2), ("t", 1)])
    timer = threading.Timer(0.05, work.finish, args=[("t", 1)])
    timer.start()
    out = lane.drain(timeout=0.5)
    timer.join()
    assert out[0] == "t1"
    assert [(f.item, f.error_type) for f in out[1:]] == [
        (("s", 1), "TimeoutError"),
        (("s", 2), "TimeoutError"),
    ]
    assert len(lane) == 0 and work.futures[("s", 1)].cancelled()


def test_the_pending_bound_makes_submit_wait_for_a_finished_item() -> None:
    work = FakeWork()
    bound = PendingBound(2)
    lane = Lane(work, key=lambda item: item[0], bound=bound)
    other = Lane(work, key=lambda item: item[0], bound=bound)
    lane.submit([("a", 1)])
    other.submit([("b", 1)])
    assert bound.used == 2
    submitted = threading.Event()
    thread = threading.Thread(target=lambda: (lane.submit([("a", 2)]), submitted.set()))
    thread.start()
    assert not submitted.wait(0.2), "the third item waits while two are unfinished"
    assert ("a", 2) not in work.submitted
    work.finish(("b", 1))  # another lane's item frees the slot
    assert submitted.wait(2.0)
    thread.join()
    assert work.submitted[-1] == ("a", 2) and bound.used == 2
    assert other.poll() == ["b1"]


def test_a_full_bound_is_passed_after_its_wait() -> None:
    bound = PendingBound(1)
    assert bound.acquire(0.0)
    passed: list[bool] = []
    thread = threading.Thread(target=lambda: passed.append(bound.acquire(1.0)))
    thread.start()
    thread.join(0.1)
    assert thread.is_alive() and bound.used == 1, "waits for a free slot first"
    thread.join(10.0)
    assert passed == [False], "taken over the limit rather than waiting forever"
    assert bound.used == 2
    bound.release()
    bound.release()
    assert bound.used == 0


def test_a_failing_submit_gives_its_slot_back() -> None:
    bound = PendingBound(1)

    def broken(item: Item) -> Future[Any]:
        raise RuntimeError("runner closed")

    lane = Lane(broken, key=lambda item: item[0], bound=bound)
    with pytest.raises(RuntimeError):
        lane.submit([("a", 1)])
    assert bound.used == 0 and len(lane) == 0


def test_lanes_are_stable_and_spread() -> None:
    assert lane_for("S-1", 64) == lane_for("S-1", 64) == str(zlib.crc32(b"S-1") % 64)
    assert len({lane_for(f"S-{i}", 8) for i in range(200)}) == 8


def rules_for(*keys: str) -> Any:
    """A `ready` that answers the items of `keys` on the spot ("rules:<key><n>") and raises for
    n < 0."""

    def ready(item: Item) -> Any:
        if item[1] < 0:
            raise ValueError(f"bad {item}")
        return f"rules:{item[0]}{item[1]}" if item[0] in keys else None

    return ready


def test_ready_answers_leave_without_a_future_or_a_slot_of_the_bound() -> None:
    work = FakeWork()
    bound = PendingBound(1)
    lane: Lane[Item, str] = Lane(work, key=lambda i: i[0], bound=bound, ready=rules_for("r"))
    lane.submit([("r", 1), ("r", 2), ("r", 3)])
    assert work.submitted == [] and bound.used == 0, "no call, no slot taken"
    assert len(lane) == 3, "answered items count until they are emitted"
    assert lane.snapshot()["pending"] == [(0, ("r", 1)), (1, ("r", 2)), (2, ("r", 3))]
    assert lane.poll() == ["rules:r1", "rules:r2", "rules:r3"]
    assert len(lane) == 0 and lane.poll() == []


def test_a_ready_answer_waits_behind_its_keys_earlier_call() -> None:
    work = FakeWork()
    ready = rules_for("r")
    lane: Lane[Item, str] = Lane(work, key=lambda i: i[0], bound=PendingBound(10), ready=ready)
    # ("r", 1) is answered now; ("x", 1) needs the call; so does nothing else, but an item of
    # key "x" the rules answer later must wait for ("x", 1).
    lane._answer_now = lambda item: None if item == ("x", 1) else f"rules:{item[0]}{item[1]}"
    lane.submit([("x", 1), ("r", 1), ("x", 2)])
    assert work.submitted == [("x", 1)]
    assert lane.poll() == ["rules:r1"], "x2 may not overtake x1"
    work.finish(("x", 1))
    assert lane.poll() == ["x1", "rules:x2"]
    assert len(lane) == 0


def test_a_ready_that_raises_gives_an_async_failure_in_order() -> None:
    work = FakeWork()
    lane: Lane[Item, str] = Lane(
        work, key=lambda i: i[0], bound=PendingBound(10), ready=rules_for("r")
    )
    lane.submit([("r", -1), ("r", 2)])
    out = lane.poll()
    assert isinstance(out[0], AsyncFailure) and out[0].item == ("r", -1)
    assert out[0].error_type == "ValueError" and "bad" in out[0].error
    assert out[1:] == ["rules:r2"] and work.submitted == []


def test_restored_items_the_rules_answer_leave_on_the_next_poll() -> None:
    lane: Lane[Item, str] = Lane(
        FakeWork(), key=lambda i: i[0], bound=PendingBound(10), ready=rules_for("r")
    )
    lane.restore({"version": 1, "pending": [(4, ("r", 1)), (7, ("r", 2))]})
    assert len(lane) == 2
    assert lane.poll() == ["rules:r1", "rules:r2"]
