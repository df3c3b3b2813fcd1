"""Guards: a step that raises on one record dead-letters it and the rest of the stream goes on."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Optional

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from bytewax.testing import TestingSink, TestingSource, run_main

from operators.errors import StopsTheFlow
from operators.runtime.guard import (
    GuardedLogic,
    StepFailure,
    describe,
    guarded,
    guarded_flat_map_batch,
    guarded_map,
    guarded_stateful,
)
from operators.runtime.metrics import LiveKeys
from schemas.dead_letter import DeadLetter, SourceRef

SOURCE = SourceRef(topic="in", partition=0, offset=1)
FAR = datetime(2100, 1, 1, tzinfo=UTC)


def raw_of(letter: DeadLetter) -> Any:
    return json.loads(base64.b64decode(letter.raw_base64))


def test_describe_names_the_type_masks_credentials_and_is_bounded() -> None:
    exc = ConnectionError(
        "redis://user:hunter2@cache:6379/0?password=hunter3 refused; key sk-abcdefghijklmnop"
    )
    text = describe(exc)
    assert text.startswith("ConnectionError: redis://***@cache")
    assert "hunter" not in text and "abcdefghijkl" not in text and "password=***" in text
    assert len(describe(ValueError("x" * 10_000))) == 500
    assert describe(OverflowError()) == "OverflowError"


def test_guarded_returns_a_failure_and_lets_flow_stopping_errors_through() -> None:
    halve = guarded("s", lambda n: 10 // n)
    assert halve(5) == 2
    failure = halve(0)
    assert isinstance(failure, StepFailure) and failure.error_type == "ZeroDivisionError"
    assert failure.item == 0 and failure.step == "s"

    class Unwritable(StopsTheFlow):
        pass

    def unwritable(_: int) -> int:
        raise Unwritable("broker gone")

    with pytest.raises(Unwritable):
        guarded("s", unwritable)(1)
    with pytest.raises(MemoryError):
        guarded("s", lambda _: (_ for _ in ()).throw(MemoryError()))(1)


def _run(build) -> tuple[list[Any], list[DeadLetter]]:
    results: list[Any] = []
    dead: list[DeadLetter] = []
    flow = Dataflow("guard_test")
    build(flow, results, dead)
    run_main(flow)
    return results, dead


def test_guarded_map_dead_letters_only_the_failing_item() -> None:
    def build(flow, results, dead):
        up = op.input("in", flow, TestingSource([1, 0, 2, 0, 5]))
        out = guarded_map(
            "invert", up, lambda n: 1 / n, flow="shipments", key=str, source=lambda _: SOURCE
        )
        op.output("ok", out.results, TestingSink(results))
        op.output("dead", out.dead_letters, TestingSink(dead))

    results, dead = _run(build)
    assert results == [1.0, 0.5, 0.2]
    assert [d.key for d in dead] == ["0", "0"]
    letter = dead[0]
    assert letter.error_type == "processing_error" and letter.step == "guard_test.invert"
    assert "guard_test.invert" in letter.error and "ZeroDivisionError" in letter.error
    assert letter.source == SOURCE and raw_of(letter) == 0


def test_guarded_flat_map_batch_retries_a_failed_batch_one_item_at_a_time() -> None:
    batches: list[list[int]] = []

    def doubled(batch: list[int]) -> list[int]:
        batches.append(list(batch))
        if any(n < 0 for n in batch):
            raise OverflowError("date value out of range")
        return [n * 2 for n in batch]

    def build(flow, results, dead):
        up = op.input("in", flow, TestingSource([1, -1, 2, 3], batch_size=4))
        out = guarded_flat_map_batch(
            "join", up, doubled, flow="tickets", key=str, source=lambda _: SOURCE
        )
        op.output("ok", out.results, TestingSink(results))
        op.output("dead", out.dead_letters, TestingSink(dead))

    results, dead = _run(build)
    assert results == [2, 4, 6]
    assert batches[0] == [1, -1, 2, 3] and [1] in batches and [-1] in batches
    (letter,) = dead
    assert letter.key == "-1" and "OverflowError: date value out of range" in letter.error


def test_guarded_map_runs_a_batch_at_a_time_and_calls_after_batch_once_per_batch() -> None:
    seen: list[int] = []
    flushed: list[list[int]] = []

    def build(flow, results, dead):
        up = op.input("in", flow, TestingSource([1, 0, 2, 4, 0, 5], batch_size=3))
        out = guarded_map(
            "invert", up, lambda n: seen.append(n) or 1 / n, flow="shipments", key=str,
            source=lambda _: SOURCE, after_batch=lambda: flushed.append(list(seen)),
        )  # fmt: skip
        op.output("ok", out.results, TestingSink(results))
        op.output("dead", out.dead_letters, TestingSink(dead))

    results, dead = _run(build)
    assert results == [1.0, 0.5, 0.25, 0.2]
    assert flushed == [[1, 0, 2], [1, 0, 2, 4, 0, 5]], "after every batch, failures included"
    assert [d.key for d in dead] == ["0", "0"]


def test_guarded_flat_map_batch_sends_returned_dead_letters_out_with_its_own() -> None:
    own = DeadLetter.build(
        flow="tickets", step="join", error_type="unknown_reference", error="no such row",
        raw=b"7", source=SOURCE, key="7",
    )  # fmt: skip

    def joined(batch: list[int]) -> list[Any]:
        if any(n < 0 for n in batch):
            raise OverflowError("date value out of range")
        return [own if n == 7 else n * 2 for n in batch]

    def build(flow, results, dead):
        up = op.input("in", flow, TestingSource([1, 7, -1, 3], batch_size=4))
        out = guarded_flat_map_batch(
            "join", up, joined, flow="tickets", key=str, source=lambda _: SOURCE,
            returned_dead_letters=True,
        )  # fmt: skip
        op.output("ok", out.results, TestingSink(results))
        op.output("dead", out.dead_letters, TestingSink(dead))

    results, dead = _run(build)
    assert results == [2, 6]
    assert sorted(d.error_type for d in dead) == ["processing_error", "unknown_reference"]
    assert own in dead


class Counter(StatefulLogic[int, int, dict]):
    """Sums its items; raises on 13 after changing its state, and its timer raises past 100."""

    def __init__(self, state: Optional[dict]) -> None:
        self.state = dict(state or {"sum": 0})

    def on_item(self, value: int) -> tuple[Iterable[int], bool]:
        self.state["sum"] += value
        if value == 13:
            raise ValueError("unlucky")
        return [self.state["sum"]], StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[int], bool]:
        raise OverflowError("timer overflow")

    def notify_at(self) -> Optional[datetime]:
        if self.state["sum"] > 100:
            return datetime(2000, 1, 1, tzinfo=UTC)  # due at once
        if self.state["sum"] == 42:
            return datetime.max.replace(tzinfo=UTC) + timedelta(days=1)  # raises OverflowError
        return None

    def snapshot(self) -> dict:
        return dict(self.state)


def test_a_failing_item_rolls_the_key_back_and_a_failing_timer_drops_the_key() -> None:
    items = [("a", 1), ("a", 13), ("a", 2), ("b", 13), ("c", 200)]
    live = LiveKeys("guard_test", "sum")

    def build(flow, results, dead):
        up = op.input("in", flow, TestingSource(items))
        sums, failed = guarded_stateful(
            "sum", up, Counter, flow="shipments", source=lambda _: SOURCE, live=live
        )
        op.output("ok", sums, TestingSink(results))
        op.output("dead", failed, TestingSink(dead))

    results, dead = _run(build)
    # a: 13 failed and was rolled back, so 2 adds to 1, not to 14; c: 200 is emitted, then its
    # timer fails: the state is dead-lettered and the key dropped.
    assert results == [("a", 1), ("a", 3), ("c", 200)]
    by_key = {d.key: d for d in dead}
    assert set(by_key) == {"a", "b", "c"} and len(dead) == 3
    assert "on this record" in by_key["a"].error and raw_of(by_key["a"]) == 13
    assert by_key["a"].step == "guard_test.sum" and by_key["a"].source == SOURCE
    assert "state of this key" in by_key["c"].error and raw_of(by_key["c"]) == {"sum": 200}
    assert "OverflowError: timer overflow" in by_key["c"].error
    assert live.count == 1, "a holds state; b never did and c was dropped"


def test_notify_at_raising_after_an_item_dead_letters_that_item_and_keeps_the_key() -> None:
    logic = GuardedLogic("s", Counter, {"sum": 40}, source=lambda _: SOURCE)
    out, discard = logic.on_item(2)  # sum 42: notify_at overflows
    (failure,) = out
    assert isinstance(failure, StepFailure) and failure.item == 2
    assert failure.error_type == "OverflowError" and discard is StatefulLogic.RETAIN
    assert logic.snapshot() == {"sum": 40}
    assert logic.on_item(1) == ([41], StatefulLogic.RETAIN)


def test_a_resumed_state_whose_timer_cannot_be_asked_is_dead_lettered_at_once() -> None:
    logic = GuardedLogic("s", Counter, {"sum": 42}, source=lambda _: SOURCE)
    assert logic.notify_at() is not None and logic.notify_at() < datetime.now(UTC)
    out, discard = logic.on_notify()
    (failure,) = out
    assert failure.item is None and failure.state == {"sum": 42}
    assert discard is StatefulLogic.DISCARD


def test_flow_stopping_errors_pass_through_the_stateful_guard() -> None:
    class Broken(Counter):
        def on_item(self, value: int) -> tuple[Iterable[int], bool]:
            raise MemoryError()

    logic = GuardedLogic("s", Broken, None, source=lambda _: SOURCE)
    with pytest.raises(MemoryError):
        logic.on_item(1)


def test_a_record_for_a_broken_key_reports_the_state_and_starts_the_key_afresh() -> None:
    logic = GuardedLogic("s", Counter, {"sum": 42}, source=lambda _: SOURCE)  # notify_at raises
    out, discard = logic.on_item(5)
    broken, five = out
    assert isinstance(broken, StepFailure) and broken.state == {"sum": 42}
    assert five == 5 and discard is StatefulLogic.RETAIN
    assert logic.snapshot() == {"sum": 5}


def test_a_logic_whose_timer_never_answers_dead_letters_its_records_and_stops() -> None:
    class NoTimer(Counter):
        def notify_at(self) -> Optional[datetime]:
            raise OverflowError("no timer")

    logic = GuardedLogic("s", NoTimer, {"sum": 1}, source=lambda _: SOURCE)
    out, discard = logic.on_item(7)
    broken, failed = out
    assert broken.state == {"sum": 1} and failed.item == 7
    assert failed.error == "OverflowError: no timer" and discard is StatefulLogic.DISCARD


class Snapshots(Counter):
    """A `Counter` that counts the snapshots taken of it."""

    taken = 0

    def snapshot(self) -> dict:
        Snapshots.taken += 1
        return super().snapshot()


def test_a_key_that_holds_no_state_takes_no_snapshot_and_is_dropped_when_it_fails() -> None:
    Snapshots.taken = 0
    fresh = GuardedLogic("s", Snapshots, None, source=lambda _: SOURCE)
    out, discard = fresh.on_item(13)
    (failure,) = out
    assert isinstance(failure, StepFailure) and failure.item == 13
    assert discard is StatefulLogic.DISCARD
    assert Snapshots.taken == 0, "nothing to roll back to: no snapshot before its first record"
    held = GuardedLogic("s", Snapshots, {"sum": 1}, source=lambda _: SOURCE)
    assert held.on_item(13)[1] is StatefulLogic.RETAIN
    assert Snapshots.taken == 1 and held.snapshot() == {"sum": 1}


def test_guarded_stateful_keeps_the_step_id_and_rebuilds_a_dropped_key_within_a_batch() -> None:
    items = [("b", 13), ("b", 4), ("a", 1), ("a", 13), ("a", 2)]
    flow_ref: list[Dataflow] = []
    live = LiveKeys("guard_test", "batch")

    def build(flow, results, dead):
        up = op.input("in", flow, TestingSource(items, batch_size=5))
        sums, failed = guarded_stateful(
            "sum", up, Counter, flow="shipments", source=lambda _: SOURCE, live=live
        )
        op.output("ok", sums, TestingSink(results))
        op.output("dead", failed, TestingSink(dead))
        flow_ref.append(flow)

    results, dead = _run(build)
    assert sorted(results) == [("a", 1), ("a", 3), ("b", 4)]
    assert sorted(raw_of(d) for d in dead) == [13, 13]
    assert live.count == 2, "b left the count when dropped and came back when started afresh"
    (step,) = [s for s in flow_ref[0].substeps if s.step_id == "guard_test.sum"]
    # recovery snapshots are keyed by this id: the one `op.stateful("sum", ...)` has
    assert [s.step_id for s in step.substeps] == ["guard_test.sum.stateful_batch"]


class AtomicSnapshots(Snapshots):
    """A `Counter` that declares `atomic_items`: it raises on 13 before changing its state."""

    atomic_items = True

    def on_item(self, value: int) -> tuple[Iterable[int], bool]:
        if value == 13:
            raise ValueError("unlucky")
        return super().on_item(value)


def test_a_logic_declaring_atomic_items_is_never_snapshotted_before_a_record() -> None:
    """No snapshot before the records of a key holding state; a record that fails keeps the
    same inner logic (not rebuilt) with its state, and a key that never held state is dropped."""
    Snapshots.taken = 0
    held = GuardedLogic("s", AtomicSnapshots, {"sum": 1}, source=lambda _: SOURCE)
    inner = held._inner
    assert held.on_item(2) == ([3], StatefulLogic.RETAIN)
    out, discard = held.on_item(13)
    (failure,) = out
    assert isinstance(failure, StepFailure) and failure.item == 13
    assert discard is StatefulLogic.RETAIN and held._inner is inner
    assert Snapshots.taken == 0, "an atomic logic is not snapshotted before its records"
    assert held.on_item(4) == ([7], StatefulLogic.RETAIN)
    fresh = GuardedLogic("s", AtomicSnapshots, None, source=lambda _: SOURCE)
    assert fresh.on_item(13)[1] is StatefulLogic.DISCARD
    assert Snapshots.taken == 0
    # a logic that does not declare it (or declares anything but True) is rolled back
    AtomicSnapshots.atomic_items = "yes"  # type: ignore[assignment]
    try:
        rolled = GuardedLogic("s", AtomicSnapshots, {"sum": 1}, source=lambda _: SOURCE)
        first = rolled._inner
        rolled.on_item(13)
        assert Snapshots.taken == 1 and rolled._inner is not first, "rebuilt from the snapshot"
    finally:
        AtomicSnapshots.atomic_items = True


def test_outputs_a_logic_yields_lazily_are_realised_inside_the_guard() -> None:
    """A logic returning a generator that raises on 13 fails that record (rolled back), and a
    list it returns is passed on as it is."""

    class Lazy(Counter):
        def on_item(self, value: int) -> tuple[Iterable[int], bool]:
            self.state["sum"] += value

            def outputs() -> Iterable[int]:
                if value == 13:
                    raise ValueError("lazy")
                yield self.state["sum"]

            return outputs(), StatefulLogic.RETAIN

    logic = GuardedLogic("s", Lazy, {"sum": 1}, source=lambda _: SOURCE)
    assert logic.on_item(2) == ([3], StatefulLogic.RETAIN)
    (failure,), discard = logic.on_item(13)
    assert isinstance(failure, StepFailure) and failure.error == "ValueError: lazy"
    assert discard is StatefulLogic.RETAIN and logic.snapshot() == {"sum": 3}
    emitted: list[int] = [7]

    class Listed(Counter):
        def on_item(self, value: int) -> tuple[Iterable[int], bool]:
            return emitted, StatefulLogic.RETAIN

    assert GuardedLogic("s", Listed, None, source=lambda _: SOURCE).on_item(1)[0] is emitted
