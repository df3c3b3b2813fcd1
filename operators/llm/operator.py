"""`map_async`: run an async function on every item of a stream, concurrently, on the worker's loop.

Each Bytewax worker gets one `AsyncRunner` (an event loop in a daemon thread), created lazily the
first time the worker runs a batch and held per thread outside any state, so nothing unpicklable
reaches a snapshot. The runner is closed when its worker thread ends or the process exits.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from flows.settings import Settings
from operators.llm.runner import AsyncRunner, call_bound_seconds

X = TypeVar("X")
Y = TypeVar("Y")

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class AsyncFailure(Generic[X]):
    """An item whose async function raised, emitted in place of its result.

    `error_type` is the exception's class name (`TimeoutError` when the call exceeded the runner's
    bound) and `error` its message, cut to 2000 characters. The item is kept as it came in, so the
    flow can `op.branch` failures (`isinstance(x, AsyncFailure)`) to its dead-letter output.
    """

    item: X
    error_type: str
    error: str

    @classmethod
    def of(cls, item: X, exc: BaseException) -> AsyncFailure[X]:
        text = str(exc) or type(exc).__name__
        return cls(item=item, error_type=type(exc).__name__, error=text[:MAX_ERROR_CHARS])


class _Runners:
    """The runners of one worker thread, by (concurrency, timeout); closed when the thread ends."""

    def __init__(self) -> None:
        self.by_config: dict[tuple[int, float], AsyncRunner] = {}
        weakref.finalize(self, _close_all, self.by_config)


def _close_all(runners: dict[tuple[int, float], AsyncRunner]) -> None:
    for runner in runners.values():
        runner.close()
    runners.clear()


_local = threading.local()


def worker_runner(settings: Settings) -> AsyncRunner:
    """The calling thread's (worker's) runner for these settings, created on first use."""
    runners: _Runners | None = getattr(_local, "runners", None)
    if runners is None:
        runners = _local.runners = _Runners()
    key = (settings.llm_max_concurrency, call_bound_seconds(settings))
    runner = runners.by_config.get(key)
    if runner is None or runner.closed:
        name = threading.current_thread().name
        runner = runners.by_config[key] = AsyncRunner.from_settings(settings, name=name)
    return runner


async def _apply(fn: Callable[[X], Awaitable[Y]], item: X) -> Y:
    return await fn(item)


def run_batch(
    items: list[X],
    fn: Callable[[X], Awaitable[Y]],
    runner: AsyncRunner,
) -> list[Y | AsyncFailure[X]]:
    """`fn` over `items` concurrently on `runner`; results (or `AsyncFailure`s) in input order."""
    results = runner.run_all([_apply(fn, item) for item in items])
    return [
        AsyncFailure.of(item, result) if isinstance(result, BaseException) else result
        for item, result in zip(items, results, strict=True)
    ]


@operator
def map_async(
    step_id: str,
    up: Stream[X],
    fn: Callable[[X], Awaitable[Y]],
    *,
    settings: Settings,
) -> Stream[Y | AsyncFailure[X]]:
    """Apply an async `fn` to every item, concurrently within each batch.

    Consumes: items `X` of `up` (for a keyed stream, `(key, value)` pairs; `fn` gets the pair).
    Emits: `fn(item)` for every item, in input order within each batch, so per-key order is kept;
    an item whose `fn` raised (or outran the runner's per-call bound) is emitted as an
    `AsyncFailure(item, error_type, error)` instead, so one bad item never stops the dataflow.
    `fn` should turn its expected failures (e.g. `LLMError`) into data itself; `AsyncFailure` is
    the safety net for everything else, and flows dead-letter it.
    Keeps: no state. Calls run on the worker's `AsyncRunner` with at most
    `settings.llm_max_concurrency` in flight; the worker waits for its batch to finish.
    """

    def mapper(batch: list[X]) -> list[Any]:
        return run_batch(batch, fn, worker_runner(settings))

    return op.flat_map_batch("run", up, mapper)
