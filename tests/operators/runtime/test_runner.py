"""`AsyncRunner`: a loop in a thread that starts coroutines without blocking, and its bounds."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest

from operators.config.settings import Settings
from operators.runtime.runner import (
    AsyncRunner,
    call_bound_seconds,
    embed_bound_seconds,
    item_bound_seconds,
)


async def value_after(x: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return x


def test_submit_returns_at_once_and_the_future_completes_later() -> None:
    with AsyncRunner(call_timeout=5.0) as runner:
        release = asyncio.Event()

        async def gated() -> str:
            await release.wait()
            return "done"

        future = runner.submit(gated())
        assert isinstance(future, concurrent.futures.Future)
        assert not future.done()
        runner.loop.call_soon_threadsafe(release.set)
        assert future.result(timeout=2.0) == "done"


def test_submitted_calls_run_together_without_a_runner_limit() -> None:
    in_flight = peak = 0

    async def track(x: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return x

    with AsyncRunner(call_timeout=5.0) as runner:
        futures = [runner.submit(track(i)) for i in range(40)]
        assert [f.result(timeout=5.0) for f in futures] == list(range(40))
    assert peak == 40


def test_a_submitted_call_past_its_bound_fails_with_timeout_error() -> None:
    with AsyncRunner(call_timeout=0.1) as runner:
        slow, fast = runner.submit(value_after(1, 60.0)), runner.submit(value_after(2, 0.0))
        assert fast.result(timeout=2.0) == 2
        with pytest.raises(TimeoutError):
            slow.result(timeout=2.0)


def test_the_bound_counts_from_the_start_not_from_submission() -> None:
    with AsyncRunner(call_timeout=0.3, max_concurrency=1) as runner:
        futures = [runner.submit(value_after(i, 0.2)) for i in range(3)]
        assert [f.result(timeout=5.0) for f in futures] == [0, 1, 2], "queueing is not counted"


def test_closing_the_runner_cancels_what_is_pending() -> None:
    runner = AsyncRunner(call_timeout=60.0)
    future = runner.submit(value_after(1, 60.0))
    runner.close()
    assert future.cancelled()
    with pytest.raises(RuntimeError):
        runner.submit(value_after(2, 0.0))


def test_run_all_bounds_concurrency_and_orders_results() -> None:
    in_flight = peak = 0

    async def track(x: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return x

    with AsyncRunner(max_concurrency=3, call_timeout=2.0) as runner:
        assert runner.run_all([track(i) for i in range(12)]) == list(range(12))
    assert peak == 3


def test_run_all_times_out_a_hung_call_without_blocking_others() -> None:
    with AsyncRunner(max_concurrency=4, call_timeout=0.2) as runner:
        started = time.perf_counter()
        results = runner.run_all([value_after(1, 0.0), value_after(2, 60.0), value_after(3, 0.05)])
        assert time.perf_counter() - started < 1.0
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], TimeoutError)


def test_run_returns_or_raises_and_close_is_final() -> None:
    async def boom() -> None:
        raise KeyError("k")

    runner = AsyncRunner(call_timeout=1.0)
    assert runner.run(value_after(7, 0.0)) == 7
    with pytest.raises(KeyError):
        runner.run(boom())
    runner.close()
    runner.close()
    assert runner.closed
    with pytest.raises(RuntimeError):
        runner.run_all([boom()])


def test_call_bound_covers_every_attempt_its_waits_and_the_longest_pauses() -> None:
    settings = Settings(
        llm_timeout_seconds=10.0,
        llm_max_retries=3,
        llm_max_limiter_wait_seconds=2.0,
        llm_retry_initial_seconds=0.5,
        llm_retry_max_seconds=1.5,
    )
    pauses = 3 * 1.5  # a Retry-After up to the backoff cap is honoured before every retry
    assert call_bound_seconds(settings.llm) == pytest.approx(4 * (10.0 + 2 * 2.0) + pauses)


def test_item_bound_allows_two_embedding_batches_one_call_and_its_repair() -> None:
    settings = Settings(
        llm_timeout_seconds=5.0,
        llm_max_retries=1,
        llm_max_limiter_wait_seconds=2.0,
        llm_retry_max_seconds=3.0,
        embed_batch_wait_seconds=0.25,
        embed_batch_size=100,
        embed_timeout_per_text_seconds=0.1,
    )
    call = call_bound_seconds(settings.llm)
    assert call == pytest.approx(2 * (5.0 + 2 * 2.0) + 3.0)
    # an embedding batch: a call at the timeout of a full batch, 5 + 100 x 0.1 s
    embed = embed_bound_seconds(settings.llm)
    assert embed == pytest.approx(2 * (15.0 + 2 * 2.0) + 3.0)
    assert item_bound_seconds(settings.llm) == pytest.approx(2 * (0.25 + embed) + 2 * call + 1.0)


def test_from_settings_bounds_items_and_sets_no_concurrency_limit() -> None:
    settings = Settings(llm_timeout_seconds=3.0, llm_max_retries=1)
    with AsyncRunner.from_settings(settings.llm) as runner:
        assert runner.call_timeout == item_bound_seconds(settings.llm)
        assert runner.max_concurrency is None
