"""One client per running event loop, created on first use and closed with the loop.

An async client (`openai.AsyncOpenAI`, `redis.asyncio.Redis`) holds a connection pool that belongs
to the loop it was opened on; each Bytewax worker runs its own loop, so each gets its own client.
A `PerLoop` given a `close` function registers the client with its loop, and
`close_loop_clients()` (run by `AsyncRunner.close` on its loop before stopping it) closes every
client of that loop, so no connection is left for the garbage collector to complain about.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, Optional, TypeVar

log = logging.getLogger(__name__)

C = TypeVar("C")

_closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Callable[[], Awaitable[None]]]]
_closers = weakref.WeakKeyDictionary()
_closers_lock = threading.Lock()


async def close_loop_clients() -> None:
    """Close every client registered with the running loop (errors are logged, not raised)."""
    with _closers_lock:
        closers = _closers.pop(asyncio.get_running_loop(), [])
    for close in closers:
        try:
            await close()
        except Exception:
            log.debug("closing a client failed", exc_info=True)


class PerLoop(Generic[C]):
    """The `factory`-made object of the running loop; thread-safe.

    With `close`, each object is closed by `close_loop_clients()` on its loop, or by `aclose()`.
    """

    def __init__(
        self,
        factory: Callable[[], C],
        close: Optional[Callable[[C], Awaitable[None]]] = None,
    ) -> None:
        self._factory = factory
        self._close = close
        self._objects: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, C]
        self._objects = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self) -> C:
        """The running loop's object, made on first use."""
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._objects.get(loop)
            if found is None:
                found = self._objects[loop] = self._factory()
                self._register(loop)
            return found

    def _register(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._close is None:
            return
        with _closers_lock:
            _closers.setdefault(loop, []).append(self.aclose)

    async def aclose(self) -> None:
        """Close and forget the running loop's object, if there is one."""
        with self._lock:
            found = self._objects.pop(asyncio.get_running_loop(), None)
        if found is not None and self._close is not None:
            await self._close(found)
