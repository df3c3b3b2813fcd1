"""`map_async` in a real Bytewax dataflow, and the `AsyncRunner` under it."""

from __future__ import annotations

import asyncio
import gc
import pickle
import threading
import time
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.settings import Settings
from operators.llm.operator import AsyncFailure, map_async, worker_runner
from operators.llm.runner import AsyncRunner, call_bound_seconds

pytestmark = pytest.mark.dataflow

SETTINGS = Settings(llm_max_concurrency=8, llm_timeout_seconds=2.0, llm_max_retries=0)


def run_flow(items: list[Any], fn: Any, batch_size: int = 5) -> list[Any]:
    out: list[Any] = []
    flow = Dataflow("map_async_test")
    up = op.input("in", flow, TestingSource(items, batch_size=batch_size))
    op.output("out", map_async("llm", up, fn, settings=SETTINGS), TestingSink(out))
    run_main(flow)
    return out


def test_results_keep_input_order_despite_completion_order() -> None:
    finished: list[int] = []

    async def slow_first(x: int) -> int:
        await asyncio.sleep(0.002 * ((7 * x) % 11))
        finished.append(x)
        return x * 10

    out = run_flow(list(range(23)), slow_first)
    assert out == [x * 10 for x in range(23)]
    assert finished != sorted(finished)


def test_keyed_items_keep_per_key_order() -> None:
    items = [(f"k{i % 3}", i) for i in range(12)]

    async def echo(item: tuple[str, int]) -> tuple[str, int]:
        await asyncio.sleep(0.001 * (12 - item[1]))
        return item

    out = run_flow(items, echo, batch_size=4)
    for key in ("k0", "k1", "k2"):
        assert [v for k, v in out if k == key] == [v for k, v in items if k == key]


def test_exception_becomes_async_failure_and_flow_continues() -> None:
    async def picky(x: int) -> int:
        if x == 3:
            raise ValueError("three is not allowed")
        return x

    out = run_flow(list(range(6)), picky)
    assert out[:3] == [0, 1, 2] and out[4:] == [4, 5]
    failure = out[3]
    assert failure == AsyncFailure(3, "ValueError", "three is not allowed")
    assert pickle.loads(pickle.dumps(failure)) == failure


def test_batch_calls_overlap() -> None:
    async def nap(x: int) -> int:
        await asyncio.sleep(0.1)
        return x

    started = time.perf_counter()
    assert run_flow(list(range(8)), nap, batch_size=8) == list(range(8))
    assert time.perf_counter() - started < 0.6


def test_runner_is_per_worker_thread() -> None:
    here = worker_runner(SETTINGS)
    assert worker_runner(SETTINGS) is here
    other: list[AsyncRunner] = []
    thread = threading.Thread(target=lambda: other.append(worker_runner(SETTINGS)))
    thread.start()
    thread.join()
    assert other[0] is not here
    deadline = time.monotonic() + 2.0
    while not other[0].closed and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert other[0].closed, "a finished worker thread's runner is closed"


def test_runner_bounds_concurrency_and_orders_results() -> None:
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


def test_runner_times_out_a_hung_call_without_blocking_others() -> None:
    async def value(x: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return x

    with AsyncRunner(max_concurrency=4, call_timeout=0.2) as runner:
        started = time.perf_counter()
        results = runner.run_all([value(1, 0.0), value(2, 60.0), value(3, 0.05)])
        assert time.perf_counter() - started < 1.0
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], TimeoutError)


def test_runner_run_raises_and_close_is_final() -> None:
    async def boom() -> None:
        raise KeyError("k")

    runner = AsyncRunner(max_concurrency=1, call_timeout=1.0)
    with pytest.raises(KeyError):
        runner.run(boom())
    runner.close()
    runner.close()
    assert runner.closed
    with pytest.raises(RuntimeError):
        runner.run_all([boom()])


def test_runner_bound_covers_every_attempt() -> None:
    settings = Settings(llm_timeout_seconds=10.0, llm_max_retries=2)
    assert call_bound_seconds(settings) == pytest.approx(10.0 * 3 + 0.5 + 1.0)
    runner = AsyncRunner.from_settings(settings)
    try:
        assert runner.call_timeout > call_bound_seconds(settings)
        assert runner.max_concurrency == settings.llm_max_concurrency
    finally:
        runner.close()
