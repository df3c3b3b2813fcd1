"""`MicroBatcher` with a fake `run` (pure asyncio): grouping, bounds, errors, cancellation; the
size cap `AdaptiveBatchSize` with an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from operators.llm.batching import (
    AdaptiveBatchSize,
    BatcherClosed,
    BatchResultMismatch,
    MicroBatcher,
)


class Recorder:
    """A fake `run`: records each batch, answers `item * 10` after `delay` seconds."""

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.delay = delay
        self.error = error
        self.batches: list[list[Any]] = []
        self.running = 0
        self.most_running = 0

    async def __call__(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delay)
            if self.error is not None:
                raise self.error
            return [item * 10 for item in items]
        finally:
            self.running -= 1


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())


def test_many_concurrent_submitters_share_few_run_calls() -> None:
    fake = Recorder()

    async def main() -> list[int]:
        batcher = MicroBatcher(fake, max_size=64, max_wait=0.05)
        return await asyncio.gather(*(batcher.submit(n) for n in range(200)))

    assert run(main) == [n * 10 for n in range(200)]
    assert [len(b) for b in fake.batches] == [64, 64, 64, 8]
    assert sorted(n for batch in fake.batches for n in batch) == list(range(200))


def test_items_within_max_wait_go_to_one_call_and_later_ones_to_the_next() -> None:
    fake = Recorder()

    async def main() -> list[int]:
        batcher = MicroBatcher(fake, max_size=100, max_wait=0.3)

        async def later(item: int, after: float) -> int:
            await asyncio.sleep(after)
            return await batcher.submit(item)

        return await asyncio.gather(later(1, 0), later(2, 0.01), later(3, 0.02), later(4, 0.7))

    assert run(main) == [10, 20, 30, 40]
    assert fake.batches == [[1, 2, 3], [4]]


def test_a_lone_item_waits_about_max_wait() -> None:
    fake = Recorder()

    async def main() -> float:
        batcher = MicroBatcher(fake, max_size=100, max_wait=0.05)
        started = asyncio.get_running_loop().time()
        assert await batcher.submit(7) == 70
        return asyncio.get_running_loop().time() - started

    waited = run(main)
    assert 0.04 <= waited < 0.5 and fake.batches == [[7]]


def test_a_full_batch_goes_without_waiting() -> None:
    fake = Recorder()

    async def main() -> float:
        batcher = MicroBatcher(fake, max_size=3, max_wait=10.0)
        started = asyncio.get_running_loop().time()
        assert await asyncio.gather(*(batcher.submit(n) for n in (1, 2, 3))) == [10, 20, 30]
        return asyncio.get_running_loop().time() - started

    assert run(main) < 1.0 and fake.batches == [[1, 2, 3]]


def test_identical_items_are_sent_once_and_all_submitters_get_the_result() -> None:
    fake = Recorder()

    async def main() -> list[str]:
        batcher: MicroBatcher[str, str] = MicroBatcher(fake, max_size=10, max_wait=0.02)
        return await asyncio.gather(*(batcher.submit(t) for t in "abacabca"))

    assert run(main) == [t * 10 for t in "abacabca"]
    assert fake.batches == [["a", "b", "c"]]


def test_max_size_counts_distinct_items() -> None:
    fake = Recorder()

    async def main() -> None:
        batcher = MicroBatcher(fake, max_size=2, max_wait=0.02)
        await asyncio.gather(*(batcher.submit(n) for n in (1, 1, 1, 2, 3, 3)))

    run(main)
    assert fake.batches == [[1, 2], [3]]


def test_an_exception_of_run_fails_every_waiter_of_that_batch_only() -> None:
    boom = RuntimeError("provider down")
    fake = Recorder(error=boom)

    async def main() -> list[Any]:
        batcher = MicroBatcher(fake, max_size=3, max_wait=0.02)
        failed = await asyncio.gather(
            *(batcher.submit(n) for n in (1, 2, 1)), return_exceptions=True
        )
        fake.error = None
        return [*failed, await batcher.submit(4)]

    assert run(main) == [boom, boom, boom, 40]
    assert fake.batches == [[1, 2], [4]]


@pytest.mark.parametrize("answer", [[], [1], [1, 2, 3]])
def test_a_result_count_mismatch_fails_the_batch_clearly(answer: list[int]) -> None:
    async def miscount(items: list[int]) -> Sequence[int]:
        return answer

    async def main() -> list[Any]:
        batcher = MicroBatcher(miscount, max_size=10, max_wait=0.01, name="embeddings")
        return await asyncio.gather(*(batcher.submit(n) for n in (5, 6)), return_exceptions=True)

    errors = run(main)
    assert all(isinstance(e, BatchResultMismatch) for e in errors)
    assert str(errors[0]) == f"embeddings: run returned {len(answer)} results for 2 items"


def test_a_cancelled_submitter_leaves_the_queue_and_does_not_break_the_others() -> None:
    fake = Recorder()

    async def main() -> list[int]:
        batcher = MicroBatcher(fake, max_size=10, max_wait=0.05)
        doomed = asyncio.ensure_future(batcher.submit(1))
        shared = asyncio.ensure_future(batcher.submit(2))
        others = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3)]
        await asyncio.sleep(0)
        doomed.cancel()
        shared.cancel()
        results = await asyncio.gather(*others)
        assert doomed.cancelled() and shared.cancelled()
        return results

    assert run(main) == [20, 30]
    assert fake.batches == [[2, 3]]  # 1 had no waiter left; 2 still had one


def test_cancelling_a_submitter_while_its_batch_runs_spares_the_others() -> None:
    fake = Recorder(delay=0.5)

    async def main() -> list[int]:
        batcher = MicroBatcher(fake, max_size=3, max_wait=0.01)
        tasks = [asyncio.ensure_future(batcher.submit(n)) for n in (1, 2, 3)]
        await asyncio.sleep(0.05)
        assert fake.running == 1
        tasks[0].cancel()
        return await asyncio.gather(*tasks[1:])

    assert run(main) == [20, 30]


def test_when_every_submitter_cancels_nothing_is_sent() -> None:
    fake = Recorder()

    async def main() -> None:
        batcher = MicroBatcher(fake, max_size=10, max_wait=0.02)
        task = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0.05)
        assert batcher.queued == 0

    run(main)
    assert fake.batches == []


def test_the_next_batch_fills_and_runs_while_the_previous_one_is_in_flight() -> None:
    fake = Recorder(delay=0.1)

    async def main() -> list[int]:
        batcher = MicroBatcher(fake, max_size=4, max_wait=0.01)
        return await asyncio.gather(*(batcher.submit(n) for n in range(20)))

    assert run(main) == [n * 10 for n in range(20)]
    assert len(fake.batches) == 5 and fake.most_running == 5


def test_aclose_flushes_what_is_queued_then_refuses_new_items() -> None:
    fake = Recorder(delay=0.01)

    async def main() -> list[int]:
        batcher = MicroBatcher(fake, max_size=10, max_wait=60.0)
        waiting = [asyncio.ensure_future(batcher.submit(n)) for n in (1, 2)]
        await asyncio.sleep(0)
        await batcher.aclose()
        assert all(task.done() for task in waiting) and batcher.in_flight == 0
        with pytest.raises(BatcherClosed):
            await batcher.submit(3)
        return [task.result() for task in waiting]

    assert run(main) == [10, 20]
    assert fake.batches == [[1, 2]]


def test_a_batcher_serves_only_its_own_event_loop() -> None:
    batcher = MicroBatcher(Recorder(), max_size=1, max_wait=0.0)
    assert asyncio.run(batcher.submit(1)) == 10
    with pytest.raises(RuntimeError, match="event loop"):
        asyncio.run(batcher.submit(2))


@pytest.mark.parametrize(("size", "wait"), [(0, 0.1), (1, -0.1)])
def test_bounds_are_checked(size: int, wait: float) -> None:
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_size=size, max_wait=wait)


def test_an_exception_in_an_items_place_fails_only_that_items_submitters() -> None:
    async def run_batch(items: list[int]) -> list[int | BaseException]:
        return [KeyError(item) if item == 2 else item * 10 for item in items]

    async def main() -> list[Any]:
        batcher = MicroBatcher(run_batch, max_size=3, max_wait=1.0)
        return await asyncio.gather(
            batcher.submit(1), batcher.submit(2), batcher.submit(2), batcher.submit(3),
            return_exceptions=True,
        )  # fmt: skip

    one, two, again, three = run(main)
    assert (one, three) == (10, 30)
    assert isinstance(two, KeyError) and isinstance(again, KeyError)


def test_a_lowered_max_size_makes_the_next_batches_smaller() -> None:
    recorder = Recorder()

    async def main() -> None:
        batcher = MicroBatcher(recorder, max_size=4, max_wait=0.5)
        await asyncio.gather(*(batcher.submit(i) for i in range(4)))
        batcher.max_size = 2
        await asyncio.gather(*(batcher.submit(i) for i in range(4, 8)))
        with pytest.raises(ValueError):
            batcher.max_size = 0

    run(main)
    assert [len(b) for b in recorder.batches] == [4, 2, 2]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_batch_size_cap_halves_below_a_timeout_and_grows_back_slowly() -> None:
    clock = Clock()
    cap = AdaptiveBatchSize(256, grow_after=5.0, clock=clock)
    assert cap.succeeded(256) == 256, "never above the maximum"
    assert cap.timed_out(256) == 128
    assert cap.timed_out(128) == 64
    assert cap.timed_out(200) == 64, "a batch made before the last drop does not raise it"
    assert cap.timed_out(1) == 1, "never below one"
    assert cap.succeeded(1) == 1, "no growth within grow_after of the last change"
    clock.now += 5.0
    assert cap.succeeded(1) == 2, "at least one more"
    clock.now += 1.0
    assert cap.succeeded(2) == 2, "at most once per grow_after"
    steps = 0
    while cap.limit < 256:
        clock.now += 5.0
        cap.succeeded(cap.limit)
        steps += 1
    assert steps == 23, "from 2 back to the maximum by a quarter at a time, 5 s apart"
    clock.now += 5.0
    cap.timed_out(256)
    clock.now += 5.0
    assert cap.succeeded(10) == 128, "a small batch says nothing about the cap"
    assert cap.succeeded(64) == 160, "one of at least half the cap raises it by a quarter"


def test_a_batch_size_cap_needs_a_size() -> None:
    with pytest.raises(ValueError):
        AdaptiveBatchSize(0)
