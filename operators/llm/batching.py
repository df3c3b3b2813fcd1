"""`MicroBatcher`: gather items submitted one by one into bounded batches for one call each.

Concurrent callers each `submit` one item and await its own result; the batcher hands the queued
items to `run` as one list when `max_size` distinct items are queued or `max_wait` seconds after
the first of them, whichever comes first. Equal items queued together are sent once and every
submitter of them gets the result. A new batch starts filling as soon as the previous one is
handed over, so several `run` calls may be in flight at once.

    batcher = MicroBatcher(embed_many, max_size=256, max_wait=0.01, name="embeddings")
    vector = await batcher.submit("where is my order?")

A batcher belongs to the event loop that first uses it (like an async HTTP client); keep one per
loop (`operators.runtime.per_loop.PerLoop`). Items must be hashable. `run` may put an exception
in an item's place: that item's submitters get it raised, the others their results. `max_size`
may be changed while the batcher runs (`AdaptiveBatchSize` says to what).

`AdaptiveBatchSize` is the size cap of a server whose batches time out: halved below a batch
that timed out, raised again by a quarter (at least one) after a batch of at least half the cap
succeeds, at most once per `grow_after` seconds, never above the configured maximum.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, Optional, TypeVar

from operators.errors import SurgeflowError

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class BatcherClosed(SurgeflowError, RuntimeError):
    """`submit` was called after `aclose`."""


class BatchResultMismatch(SurgeflowError, RuntimeError):
    """`run` returned a different number of results than it was given items."""


class MicroBatcher(Generic[K, R]):
    """Submits items to `run` in batches of at most `max_size`, waiting at most `max_wait` s."""

    def __init__(
        self,
        run: Callable[[list[K]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_size: int,
        max_wait: float,
        name: str = "batch",
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if max_wait < 0:
            raise ValueError("max_wait must not be negative")
        self._run = run
        self._max_size = max_size
        self._max_wait = max_wait
        self.name = name
        self._queued: dict[K, list[asyncio.Future[R]]] = {}
        self._timer: Optional[asyncio.TimerHandle] = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False

    @property
    def max_size(self) -> int:
        """Distinct items that make a batch go at once."""
        return self._max_size

    @max_size.setter
    def max_size(self, size: int) -> None:
        if size < 1:
            raise ValueError("max_size must be at least 1")
        self._max_size = size

    @property
    def queued(self) -> int:
        """Distinct items waiting for the next batch."""
        return len(self._queued)

    @property
    def in_flight(self) -> int:
        """Batches handed to `run` and not finished yet."""
        return len(self._in_flight)

    async def submit(self, item: K) -> R:
        """The result `run` gives for `item`, from the batch it joins.

        Raises what `run` raised for that batch, `BatchResultMismatch` when `run` miscounted, and
        `BatcherClosed` after `aclose`. Cancelling the caller withdraws only its own wait.
        """
        if self._closed:
            raise BatcherClosed(f"{self.name}: the batcher is closed")
        loop = self._bind_loop()
        waiter: asyncio.Future[R] = loop.create_future()
        waiters = self._queued.setdefault(item, [])
        waiters.append(waiter)
        if len(self._queued) >= self._max_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._max_wait, self._flush)
        try:
            return await waiter
        except asyncio.CancelledError:
            self._withdraw(item, waiters, waiter)
            raise

    async def aclose(self) -> None:
        """Refuse new items, hand what is queued to `run`, and wait for every batch in flight."""
        self._closed = True
        self._flush()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(f"{self.name}: a batcher serves only the event loop it started on")
        return loop

    def _withdraw(
        self, item: K, waiters: list[asyncio.Future[R]], waiter: asyncio.Future[R]
    ) -> None:
        """Forget a cancelled waiter; an item nobody waits for any more leaves the queue."""
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters and self._queued.get(item) is waiters:
            del self._queued[item]
            if not self._queued:
                self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush(self) -> None:
        """Hand the queued items to a new `run` task (nothing happens when none are queued)."""
        self._cancel_timer()
        batch, self._queued = self._queued, {}
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(
            self._execute(batch), name=f"{self.name}-{len(batch)}"
        )
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _execute(self, batch: dict[K, list[asyncio.Future[R]]]) -> None:
        """Call `run` once for `batch` and settle every waiter: its result, or the failure."""
        items = list(batch)
        try:
            results = list(await self._run(items))
        except Exception as exc:
            log.debug("%s: a batch of %d failed: %r", self.name, len(items), exc)
            for waiters in batch.values():
                _fail_all(waiters, exc)
            return
        except BaseException:  # cancelled (the loop is closing) or interrupted
            for waiters in batch.values():
                _cancel_all(waiters)
            raise
        if len(results) != len(items):
            error = BatchResultMismatch(
                f"{self.name}: run returned {len(results)} results for {len(items)} items"
            )
            for waiters in batch.values():
                _fail_all(waiters, error)
            return
        for item, result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                _fail_all(batch[item], result)
                continue
            for waiter in batch[item]:
                if not waiter.done():
                    waiter.set_result(result)


GROW_AFTER_SECONDS = 5.0
"""How long `AdaptiveBatchSize` waits after a change before it raises the cap again."""


class AdaptiveBatchSize:
    """The size cap of the next batches: lowered below a batch that timed out, raised slowly
    while batches near the cap succeed (plain logic; the clock is injected)."""

    def __init__(
        self,
        maximum: int,
        *,
        grow_after: float = GROW_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maximum < 1:
            raise ValueError("maximum must be at least 1")
        self.maximum = maximum
        self.limit = maximum
        self._grow_after = grow_after
        self._clock = clock
        self._changed = clock() - grow_after

    def timed_out(self, size: int) -> int:
        """A batch of `size` timed out: the cap becomes at most half of it (at least 1)."""
        lowered = max(1, min(self.limit, size // 2))
        if lowered < self.limit:
            log.info("batches lowered to %d after %d timed out", lowered, size)
        self.limit = lowered
        self._changed = self._clock()
        return self.limit

    def succeeded(self, size: int) -> int:
        """A batch of `size` was answered: one near the cap raises it by a quarter (at least 1)
        when the last change is `grow_after` seconds old."""
        now = self._clock()
        near_cap = 2 * size >= self.limit
        if near_cap and self.limit < self.maximum and now - self._changed >= self._grow_after:
            self.limit = min(self.maximum, self.limit + max(1, self.limit // 4))
            self._changed = now
        return self.limit


def _fail_all(waiters: list[asyncio.Future[R]], error: BaseException) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(error)


def _cancel_all(waiters: list[asyncio.Future[R]]) -> None:
    for waiter in waiters:
        waiter.cancel()
