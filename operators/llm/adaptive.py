"""Adaptive concurrency of provider calls (AIMD), with cuts and pauses shared through Redis.

`AdaptiveConcurrency` bounds the provider calls in flight on one event loop, as Netflix's
concurrency-limits AIMD does, with a slower increase:

- decrease: `on_drop` (429, timeout, 5xx) multiplies the limit by 0.9, rounded down and never
  below `minimum`, at most once per `CUT_INTERVAL_SECONDS`, so the drops of one burst are one cut;
- increase: `on_success` counts the successes seen while at least half the limit is in use, and
  each `limit` of them add 1 (up to `maximum`): about +1 per limit's worth of calls under load, as
  TCP's congestion avoidance adds one segment per round trip. Successes at low load prove little,
  except that the provider answers: once no call has been dropped for `recovery_seconds`
  (`RECOVERY_SECONDS`), every success adds 1 whatever the load, so a limit cut by a stall or
  an outage returns to `maximum` after the provider does, even when the load is light;
- pause: `on_drop(retry_after)` lets no new call start before `now + retry_after`.

`slot(stop=...)` lets a waiter give up early: `stop()` is checked every `STOP_POLL_SECONDS` and
may raise (the circuit breaker opened while the call waited behind hung calls).

Waiters get slots in FIFO order. With a `SharedPressure`, every cut and pause is published, and
each `slot()` reads the shared state at most every `REFRESH_SECONDS`: a lower shared limit is
adopted (and counts as this loop's cut) and a shared pause is obeyed. `RedisSharedPressure` keeps
that state in the hash `surgeflow:v1:pressure:<scope>`; a shared cut is news for `HOLD_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from operators.config.settings import Settings
from operators.llm.metrics import CONCURRENCY_LIMIT
from operators.llm.pressure import CUT_INTERVAL_SECONDS, RedisSharedPressure, SharedPressure

log = logging.getLogger(__name__)

_LOOP_IDS = itertools.count()

REFRESH_SECONDS = 0.25
PAUSE_POLL_SECONDS = 0.1
"""Longest sleep between checks of a pause's end against the (possibly injected) clock."""
STOP_POLL_SECONDS = 0.1
"""How often a waiter for a slot asks its `stop` whether to give up."""
RECOVERY_SECONDS = 5.0
"""Time without a drop after which every success raises the limit by one, whatever the load."""


class AdaptiveConcurrency:
    """AIMD limit of provider calls in flight on one event loop (Netflix concurrency-limits style).

    One instance per event loop (its waiters are futures of that loop). Call `on_success` or
    `on_drop` inside the slot of the call they describe.
    """

    def __init__(
        self,
        *,
        initial: int,
        minimum: int,
        maximum: int,
        pressure: SharedPressure | None = None,
        recovery_seconds: float = RECOVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        flow: str,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum} and {maximum}")
        self._minimum, self._maximum = minimum, maximum
        self._pressure, self._clock = pressure, clock
        self.metric_labels = {"flow": flow, "loop": str(next(_LOOP_IDS))}
        """Labels of this loop's `surgeflow_llm_concurrency_limit` series (`loop`: a number
        per instance in this process, so one per worker event loop)."""
        self._gauge = CONCURRENCY_LIMIT.labels(**self.metric_labels)
        self._limit = 0
        self._set_limit(initial)
        self._in_flight = 0
        self._successes = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._pause_until = -math.inf
        self._last_cut = -math.inf
        self._last_drop = clock()
        self._recovery = recovery_seconds
        self._next_refresh = -math.inf
        self._resume: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings, *, scope: str, flow: str) -> AdaptiveConcurrency:
        """From `llm_max_concurrency` down to `llm_min_concurrency`, shared by `scope` in Redis."""
        maximum = settings.llm.max_concurrency
        pressure = None
        if settings.redis.url is not None and settings.redis.enabled:
            pressure = RedisSharedPressure(
                settings.redis.url.get_secret_value(),
                scope,
                timeout_seconds=settings.redis.timeout_seconds,
                retry_seconds=settings.redis.retry_seconds,
            )
        minimum = min(settings.llm.min_concurrency, maximum)
        return cls(initial=maximum, minimum=minimum, maximum=maximum, pressure=pressure, flow=flow)

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def pressure(self) -> SharedPressure | None:
        return self._pressure

    @property
    def waiting(self) -> int:
        """Callers queued for a slot."""
        return len(self._waiters)

    @property
    def pause_remaining(self) -> float:
        """Seconds before new calls may start again (0 when not paused)."""
        return max(self._pause_until - self._clock(), 0.0)

    @contextlib.asynccontextmanager
    async def slot(
        self, *, timeout: float, stop: Callable[[], None] | None = None
    ) -> AsyncIterator[None]:
        """Wait (FIFO) for a free slot outside any pause, within `timeout` (else TimeoutError);
        while waiting, `stop()` is called every `STOP_POLL_SECONDS` and may raise to give up."""
        async with asyncio.timeout(timeout):
            await self._refresh()
            await self._acquire(stop)
        try:
            yield
        finally:
            self._release()

    def on_success(self) -> None:
        """A call succeeded: under load, each `limit` successes raise the limit by one; after
        `recovery_seconds` without a drop, every success does."""
        if self._limit < self._maximum and self._clock() - self._last_drop >= self._recovery:
            self._successes = 0
            self._set_limit(self._limit + 1)
            self._wake()
            return
        if 2 * self._in_flight < self._limit:
            return
        self._successes += 1
        if self._successes >= self._limit:
            self._successes = 0
            if self._limit < self._maximum:
                self._set_limit(self._limit + 1)
                self._wake()

    def on_drop(self, retry_after: float | None) -> None:
        """A call was dropped: cut by 0.9 (once per interval), pause for `retry_after` seconds."""
        now = self._clock()
        self._last_drop = now
        if retry_after is not None and retry_after > 0:
            self._pause_until = max(self._pause_until, now + retry_after)
            self._publish(lambda p: p.publish_pause(retry_after))
        if now - self._last_cut >= CUT_INTERVAL_SECONDS:
            self._last_cut = now
            self._successes = 0
            self._set_limit(self._limit * 9 // 10)
            limit = self._limit
            self._publish(lambda p: p.publish_cut(limit))

    async def flush(self) -> None:
        """Wait until every publication to the shared pressure has ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _set_limit(self, limit: int) -> None:
        self._limit = min(max(limit, self._minimum), self._maximum)
        self._gauge.set(self._limit)

    def _free(self) -> bool:
        return self._in_flight < self._limit and self._clock() >= self._pause_until

    async def _acquire(self, stop: Callable[[], None] | None = None) -> None:
        """Take a slot now if nobody waits and one is free, else queue for one."""
        if not self._waiters and self._free():
            self._in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake()
        try:
            if stop is None:
                await waiter
            else:
                while not waiter.done():
                    await asyncio.wait([waiter], timeout=STOP_POLL_SECONDS)
                    if not waiter.done():
                        stop()
                waiter.result()
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # granted just as we gave up: pass the slot on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def _release(self) -> None:
        self._in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        """Hand free slots to waiters in order; while paused, check again when it may end."""
        while self._waiters and self._free():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)
        if self._waiters and self._resume is None and self.pause_remaining > 0:
            delay = min(self.pause_remaining, PAUSE_POLL_SECONDS)
            self._resume = asyncio.get_running_loop().call_later(delay, self._resumed)

    def _resumed(self) -> None:
        self._resume = None
        self._wake()

    async def _refresh(self) -> None:
        """Adopt a lower shared limit and a shared pause, at most every `REFRESH_SECONDS`."""
        now = self._clock()
        if self._pressure is None or now < self._next_refresh:
            return
        self._next_refresh = now + REFRESH_SECONDS
        limit, pause = await self._pressure.read()
        now = self._clock()
        if pause > 0:
            self._pause_until = max(self._pause_until, now + pause)
        if limit is not None and max(limit, self._minimum) < self._limit:
            self._last_cut = self._last_drop = now
            self._successes = 0
            self._set_limit(limit)

    def _publish(self, make: Callable[[SharedPressure], Coroutine[Any, Any, None]]) -> None:
        """Run `make(pressure)` as a task of the running loop, keeping a reference until done."""
        if self._pressure is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.debug("no running loop; shared pressure not published")
            return
        task = loop.create_task(make(self._pressure))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
