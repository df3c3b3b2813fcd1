"""A per-worker asyncio event loop in a daemon thread, for running LLM calls from Bytewax steps.

Bytewax calls operators synchronously on the worker thread; the LLM client is async. An
`AsyncRunner` owns one event loop running in its own daemon thread: `run_all` hands it a batch
of coroutines, which run with bounded concurrency (one semaphore per runner), each under a
timeout, and blocks the calling thread until all have finished. Results come back in input
order, with an exception in the place of each call that failed or timed out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import math
import threading
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any, TypeVar

from flows.settings import Settings
from operators.llm.per_loop import close_loop_clients

log = logging.getLogger(__name__)

Y = TypeVar("Y")

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
RUNNER_MARGIN_SECONDS = 1.0
_PENDING: Any = object()


def call_bound_seconds(settings: Settings) -> float:
    """The longest one LLM call may take: every attempt timing out, plus the client's backoffs.

    That is `llm_timeout_seconds * (llm_max_retries + 1)` and the `openai` client's exponential
    backoff between attempts (0.5 s doubling, capped at 8 s). A longer `Retry-After` is cut.
    """
    backoff = sum(
        min(INITIAL_RETRY_DELAY * 2**i, MAX_RETRY_DELAY) for i in range(settings.llm_max_retries)
    )
    return settings.llm_timeout_seconds * (settings.llm_max_retries + 1) + backoff


class AsyncRunner:
    """One event loop in a daemon thread; runs batches of coroutines with bounded concurrency.

    `call_timeout` bounds every coroutine (from the moment it holds a concurrency slot), so a hung
    call cannot block the worker forever; `from_settings` sets it a little above the LLM call bound,
    so the LLM layer's own timeout fires first and is handled as an `LLMCallError`.
    """

    def __init__(self, *, max_concurrency: int, call_timeout: float, name: str = "llm") -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.call_timeout = call_timeout
        self._loop = asyncio.new_event_loop()
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._closed = False
        self._thread = threading.Thread(
            target=self._serve, name=f"surgeflow-{name}-loop", daemon=True
        )
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings, *, name: str = "llm") -> AsyncRunner:
        timeout = call_bound_seconds(settings) + RUNNER_MARGIN_SECONDS
        return cls(max_concurrency=settings.llm_max_concurrency, call_timeout=timeout, name=name)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, coro: Coroutine[Any, Any, Y], timeout: float | None = None) -> Y:
        """Run one coroutine on the loop and return its result (or raise its exception)."""
        result = self.run_all([coro], timeout)[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def run_all(
        self, coros: Sequence[Coroutine[Any, Any, Y]], timeout: float | None = None
    ) -> list[Y | BaseException]:
        """Run `coros` concurrently (at most `max_concurrency` at once); results in input order.

        Each coroutine gets `timeout` seconds (default `call_timeout`) once it holds a slot; one
        that raises or times out yields its exception (a `TimeoutError` on timeout) in its place.
        """
        if self._closed:
            for coro in coros:
                coro.close()
            raise RuntimeError("AsyncRunner is closed")
        if not coros:
            return []
        per_call = self.call_timeout if timeout is None else timeout
        results: list[Any] = [_PENDING] * len(coros)
        batch = asyncio.run_coroutine_threadsafe(
            self._run_batch(coros, per_call, results), self._loop
        )
        waves = math.ceil(len(coros) / self.max_concurrency)
        try:
            batch.result(timeout=per_call * waves + RUNNER_MARGIN_SECONDS)
        except concurrent.futures.TimeoutError:
            batch.cancel()
            log.error("batch of %d calls exceeded its bound; unfinished calls fail", len(coros))
        return [TimeoutError("call did not finish") if r is _PENDING else r for r in results]

    async def _run_batch(
        self, coros: Sequence[Coroutine[Any, Any, Any]], timeout: float, results: list[Any]
    ) -> None:
        await asyncio.gather(*(self._run_one(i, c, timeout, results) for i, c in enumerate(coros)))

    async def _run_one(
        self, index: int, coro: Awaitable[Any], timeout: float, results: list[Any]
    ) -> None:
        try:
            async with self._semaphore:
                results[index] = await asyncio.wait_for(coro, timeout)
        except asyncio.CancelledError:
            _close(coro)
            raise
        except Exception as exc:
            results[index] = exc

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what is still running, close the loop's clients (`PerLoop`), stop the loop and
        join its thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is threading.current_thread():
            raise RuntimeError("AsyncRunner.close() called from its own loop")
        try:
            asyncio.run_coroutine_threadsafe(_cancel_tasks(), self._loop).result(timeout)
            asyncio.run_coroutine_threadsafe(close_loop_clients(), self._loop).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            log.warning("tasks of the LLM runner did not stop within %.1f s", timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def __enter__(self) -> AsyncRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _cancel_tasks() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _close(coro: Awaitable[Any]) -> None:
    """Close a coroutine that was cancelled before it started (avoids "never awaited")."""
    if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
        coro.close()
