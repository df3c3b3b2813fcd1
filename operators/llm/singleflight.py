"""Merging identical calls in flight: the first caller of a key runs it, later callers join.

`SingleFlight.run(key, work)` starts `work()` as a task when no call of `key` is in flight and
awaits it; a caller arriving while it runs awaits the same task instead of starting another. The
task is shielded, so a cancelled caller leaves it running for the others; its result or
exception goes to every caller. The key is forgotten when the task ends, so a later call starts
afresh (by then the answer is usually in the cache).

A `SingleFlight` serves one event loop (its tasks belong to that loop); keep one per loop with
`operators.runtime.per_loop.PerLoop`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class SingleFlight(Generic[K, R]):
    """One running task per key on one event loop."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[R]] = {}

    def __len__(self) -> int:
        """Keys with a call in flight."""
        return len(self._running)

    def __contains__(self, key: object) -> bool:
        """Whether a call of `key` is in flight (a `run` of it now would join)."""
        return key in self._running

    async def run(self, key: K, work: Callable[[], Awaitable[R]]) -> tuple[R, bool]:
        """`work()`'s result and whether it was joined (True) rather than started here."""
        task = self._running.get(key)
        joined = task is not None
        if task is None:
            task = asyncio.ensure_future(work())
            self._running[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task), joined

    def _forget(self, key: K, task: asyncio.Task[R]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: an error nobody awaited any more is not logged
