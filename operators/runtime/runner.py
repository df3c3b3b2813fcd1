"""A per-worker asyncio event loop in a daemon thread, for running LLM calls from Bytewax steps.

Bytewax calls operators synchronously on the worker thread; the LLM client is async. An
`AsyncRunner` owns one event loop running in its own daemon thread. `submit` hands it one
coroutine and returns at once with a `concurrent.futures.Future`; `run` and `run_all` wait for
one coroutine or a batch. Every coroutine runs under a safety-net time bound counted from the
moment it starts (never from submission), and fails with `TimeoutError` past it. The runner adds
no concurrency limit of its own unless given `max_concurrency`: provider calls are bounded inside
the LLM service, and how many items wait is bounded by the operator (`llm_max_pending`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import math
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, Optional, Protocol, TypeVar

from operators.config.llm import LLMSettings
from operators.runtime.per_loop import close_loop_clients

log = logging.getLogger(__name__)

Y = TypeVar("Y")
Y_co = TypeVar("Y_co", covariant=True)

RUNNER_MARGIN_SECONDS = 1.0
REPAIR_ATTEMPTS = 1
"""Calls an item may make after its first one (one repair of an unusable answer)."""
EMBED_PHASES = 2
"""Embedding batches an item may wait for one after the other (reference texts fetched once,
such as a router's intent examples, then its own texts)."""


def call_bound_seconds(llm: LLMSettings, timeout_seconds: Optional[float] = None) -> float:
    """The longest one LLM call may take: every attempt at its worst, plus the waits between.

    Each of the `max_retries + 1` attempts may wait `max_limiter_wait_seconds` twice (a
    concurrency slot, then the request and token limits) and then run for `timeout_seconds`
    (the request's own timeout when given); between attempts the service waits at most
    `retry_max_seconds` (its backoff cap, and the longest Retry-After it honours).
    """
    timeout = llm.timeout_seconds if timeout_seconds is None else timeout_seconds
    attempt = timeout + 2 * llm.max_limiter_wait_seconds
    waits = llm.max_retries * llm.retry_max_seconds
    return (llm.max_retries + 1) * attempt + waits


def embed_bound_seconds(llm: LLMSettings) -> float:
    """The longest one embedding batch may take from the moment it is sent, its splits included:
    a call at the timeout of a full batch (`llm.embed_timeout(embed_batch_size)`). The
    embeddings enforce it as a deadline; pieces still unanswered then fail with a timeout."""
    return call_bound_seconds(llm, llm.embed_timeout(llm.embed_batch_size))


def item_bound_seconds(llm: LLMSettings) -> float:
    """The safety-net bound of one item of an agent step, counted from the moment it starts.

    What an item may ask for, one after the other: `EMBED_PHASES` embedding batches (the batch
    wait, then `embed_bound_seconds` each), its chat call and one repair call
    (`call_bound_seconds` each), and a one-second margin, so the LLM layer's own bounds always
    fire first.
    """
    embeds = EMBED_PHASES * (llm.embed_batch_wait_seconds + embed_bound_seconds(llm))
    calls = (1 + REPAIR_ATTEMPTS) * call_bound_seconds(llm)
    return embeds + calls + RUNNER_MARGIN_SECONDS


class AsyncRunner:
    """One event loop in a daemon thread, running coroutines handed over from other threads.

    `call_timeout` bounds every coroutine from the moment it starts (or, with `max_concurrency`,
    from the moment it holds one of that many slots). `from_settings` sets it to
    `item_bound_seconds` and sets no concurrency limit.
    """

    def __init__(
        self, *, call_timeout: float, max_concurrency: Optional[int] = None, name: str = "llm"
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1 (or None for no limit)")
        self.max_concurrency = max_concurrency
        self.call_timeout = call_timeout
        self._loop = asyncio.new_event_loop()
        self._slots = None if max_concurrency is None else asyncio.Semaphore(max_concurrency)
        self._closed = False
        self._thread = threading.Thread(
            target=self._serve, name=f"surgeflow-{name}-loop", daemon=True
        )
        self._thread.start()

    @classmethod
    def from_settings(cls, llm: LLMSettings, *, name: str = "llm") -> AsyncRunner:
        return cls(call_timeout=item_bound_seconds(llm), name=name)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(
        self, coro: Coroutine[Any, Any, Y], timeout: Optional[float] = None
    ) -> concurrent.futures.Future[Y]:
        """Start `coro` on the loop and return its future at once (never blocks).

        The future holds the coroutine's result or exception; a `TimeoutError` once it has run
        `timeout` seconds (default `call_timeout`); it is cancelled if the runner closes first.
        """
        if self._closed:
            coro.close()
            raise RuntimeError("AsyncRunner is closed")
        bound = self.call_timeout if timeout is None else timeout
        return asyncio.run_coroutine_threadsafe(self._bounded(coro, bound), self._loop)

    def run(self, coro: Coroutine[Any, Any, Y], timeout: Optional[float] = None) -> Y:
        """Run one coroutine on the loop and return its result (or raise its exception)."""
        result = self.run_all([coro], timeout)[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def run_all(
        self, coros: Sequence[Coroutine[Any, Any, Y]], timeout: Optional[float] = None
    ) -> list[Y | BaseException]:
        """Run `coros` concurrently and wait for all of them; results in input order.

        Each coroutine gets `timeout` seconds (default `call_timeout`) once started; one that
        raises or times out yields its exception (a `TimeoutError` on timeout) in its place.
        """
        if self._closed:
            for coro in coros:
                coro.close()
            raise RuntimeError("AsyncRunner is closed")
        per_call = self.call_timeout if timeout is None else timeout
        futures = [self.submit(coro, per_call) for coro in coros]
        waves = math.ceil(len(coros) / (self.max_concurrency or max(len(coros), 1)))
        done, late = concurrent.futures.wait(futures, per_call * waves + RUNNER_MARGIN_SECONDS)
        if late:
            log.error("%d of %d calls exceeded their bound and fail", len(late), len(coros))
        return [_outcome(future) if future in done else _late(future) for future in futures]

    async def _bounded(self, coro: Coroutine[Any, Any, Y], timeout: float) -> Y:
        try:
            if self._slots is None:
                return await asyncio.wait_for(coro, timeout)
            async with self._slots:
                return await asyncio.wait_for(coro, timeout)
        except asyncio.CancelledError:
            _close(coro)
            raise

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


class _Finished(Protocol[Y_co]):
    """What `_outcome` reads of a future: read-only, so covariant (a `Future[Y]` is a
    `_Finished[Y | BaseException]`, which mypy needs to solve `_outcome` in a comprehension)."""

    def cancelled(self) -> bool: ...
    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]: ...
    def result(self, timeout: Optional[float] = None) -> Y_co: ...


def _outcome(future: _Finished[Y]) -> Y | BaseException:
    if future.cancelled():
        return concurrent.futures.CancelledError("call was cancelled")
    error = future.exception()
    return future.result() if error is None else error


def _late(future: concurrent.futures.Future[Any]) -> TimeoutError:
    future.cancel()
    return TimeoutError("call did not finish")


async def _cancel_tasks() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _close(coro: Coroutine[Any, Any, Any]) -> None:
    """Close a coroutine that was cancelled before it started (avoids "never awaited")."""
    if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
        coro.close()
