"""Named Lua scripts on Redis, one client per event loop, degrading instead of raising.

Used by the shared limits (`operators.llm.limits`) and the shared concurrency pressure
(`operators.llm.adaptive`): a failing Redis is marked down for a while and the caller carries on
with its in-process state instead of waiting on a timeout per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from operators.config.redact import redacted_url
from operators.llm.down_window import DownWindow
from operators.llm.redis_cache import RedisClientFactory, default_client_factory
from operators.runtime.per_loop import PerLoop

log = logging.getLogger(__name__)


@dataclass
class _Loaded:
    client: aioredis.Redis
    scripts: dict[str, AsyncScript]


class ScriptRunner:
    """Named Lua scripts on Redis, one client per event loop, degrading instead of raising.

    Every call is bounded by `timeout_seconds`. A failure marks Redis down for `retry_seconds`
    (one WARNING per outage, naming `what`), during which `call` returns None without trying;
    then one call probes it again (one INFO when it answers). `on_change(up)` hears both.
    """

    def __init__(
        self,
        url: str,
        scripts: Mapping[str, str],
        *,
        what: str,
        timeout_seconds: float = 0.5,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        client_factory: RedisClientFactory | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._url, self._what = url, what
        self._timeout = timeout_seconds
        self._window = DownWindow(retry_seconds, clock=clock)
        self._on_change = on_change or (lambda up: None)
        factory = client_factory or default_client_factory(url, timeout_seconds)
        self._loaded = PerLoop(
            lambda: self._load(factory(), scripts), close=lambda ld: ld.client.aclose()
        )

    @staticmethod
    def _load(client: aioredis.Redis, scripts: Mapping[str, str]) -> _Loaded:
        return _Loaded(client, {name: client.register_script(s) for name, s in scripts.items()})

    @property
    def up(self) -> bool:
        """False between a failure and the next successful call."""
        return self._window.up

    async def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any | None:
        """The script's reply, or None while Redis is down or when this call failed."""
        epoch = self._begin()
        if epoch is None:
            return None
        try:
            script = self._loaded.get().scripts[name]
            async with asyncio.timeout(self._timeout):
                reply = await script(keys=list(keys), args=list(args))
        except Exception as exc:
            self._failed(exc)
            return None
        self._succeeded(epoch)
        return reply

    async def aclose(self) -> None:
        """Close the running loop's client."""
        await self._loaded.aclose()

    def _begin(self) -> int | None:
        return self._window.begin()

    def _succeeded(self, epoch: int) -> None:
        if self._window.succeeded(epoch):
            self._on_change(True)
            log.info("Redis at %s is back; %s shared again", redacted_url(self._url), self._what)

    def _failed(self, exc: BaseException) -> None:
        if not self._window.failed():
            log.debug("Redis still unavailable for %s (%s)", self._what, exc)
            return
        self._on_change(False)
        log.warning(
            "Redis at %s is unavailable (%s: %s); %s kept per process, next try in %.1f s",
            redacted_url(self._url),
            type(exc).__name__,
            exc,
            self._what,
            self._window.retry_seconds,
        )
