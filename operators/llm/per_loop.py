"""One client per running event loop, created on first use.

An async client (`openai.AsyncOpenAI`, `redis.asyncio.Redis`) holds a connection pool that belongs
to the loop it was opened on; each Bytewax worker runs its own loop, so each gets its own client.
Clients are dropped with their loop (weak keys).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Generic, Optional, TypeVar

C = TypeVar("C")


class PerLoop(Generic[C]):
    """The `factory`-made object of the running loop; thread-safe."""

    def __init__(self, factory: Callable[[], C]) -> None:
        self._factory = factory
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
            return found

    def pop(self) -> Optional[C]:
        """Forget the running loop's object and return it (to be closed), if there was one."""
        with self._lock:
            return self._objects.pop(asyncio.get_running_loop(), None)
