"""Cuts and pauses of the adaptive concurrency limit, shared by every process through Redis.

`AdaptiveConcurrency` (`operators.llm.adaptive`) publishes each cut and Retry-After pause here and
reads the shared state back; `RedisSharedPressure` keeps it in the hash
`surgeflow:v1:pressure:<scope>`, changed atomically by one Lua script on the server's clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from operators.llm.redis_cache import RedisClientFactory
from operators.llm.redis_scripts import ScriptRunner

CUT_INTERVAL_SECONDS = 1.0
"""A cut within this long of the previous one is the same burst of drops: ignored."""
HOLD_SECONDS = 2.0
"""How long a shared cut is news to the loops that read it."""
PRESSURE_PREFIX = "surgeflow:v1:pressure:"


class SharedPressure(Protocol):
    async def publish_cut(self, limit: int) -> None:
        """Tell every process that the limit was cut to `limit`."""
        ...

    async def publish_pause(self, seconds: float) -> None:
        """Tell every process to start no call for `seconds`."""
        ...

    async def read(self) -> tuple[int | None, float]:
        """The limit of a recent cut (None if none) and the seconds left of the shared pause."""
        ...


PRESSURE_SCRIPT = """
-- KEYS[1]: the pressure hash; ARGV: op ('cut', 'pause', 'read'), value, hold, cut interval
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local key, op, hold = KEYS[1], ARGV[1], tonumber(ARGV[3])
if op == 'cut' then
  local cut_at = tonumber(redis.call('HGET', key, 'cut_at'))
  if cut_at == nil or now - cut_at >= tonumber(ARGV[4]) then
    redis.call('HSET', key, 'limit', ARGV[2], 'cut_at', string.format('%.17g', now))
  end
elseif op == 'pause' then
  local pause_until = now + tonumber(ARGV[2])
  if pause_until > (tonumber(redis.call('HGET', key, 'pause_until')) or 0) then
    redis.call('HSET', key, 'pause_until', string.format('%.17g', pause_until))
  end
end
local state = redis.call('HMGET', key, 'limit', 'cut_at', 'pause_until')
local remaining = math.max((tonumber(state[3]) or now) - now, 0)
if op ~= 'read' then
  redis.call('PEXPIRE', key, math.ceil((math.max(remaining, hold) + 1) * 1000))
end
local fresh = state[1] and state[2] and now - tonumber(state[2]) < hold
return {fresh and state[1] or false, string.format('%.17g', remaining)}
"""


class RedisSharedPressure:
    """`SharedPressure` in a Redis hash: the last cut (limit, server time) and the pause's end.

    A cut within `cut_interval` of the previous one is ignored (one burst seen by many processes
    is one cut); `read` reports a cut for `hold_seconds`. A failing Redis is skipped (one WARNING):
    publications are dropped and `read` reports nothing, so each loop carries on by itself.
    """

    def __init__(
        self,
        url: str,
        scope: str,
        *,
        timeout_seconds: float = 0.5,
        retry_seconds: float = 5.0,
        hold_seconds: float = HOLD_SECONDS,
        cut_interval: float = CUT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        client_factory: RedisClientFactory | None = None,
    ) -> None:
        self.key = PRESSURE_PREFIX + scope
        self._hold, self._interval = hold_seconds, cut_interval
        self._redis = ScriptRunner(
            url,
            {"pressure": PRESSURE_SCRIPT},
            what=f"concurrency pressure of {scope!r}",
            timeout_seconds=timeout_seconds,
            retry_seconds=retry_seconds,
            clock=clock,
            client_factory=client_factory,
        )

    @property
    def shared(self) -> bool:
        """False while Redis is marked down."""
        return self._redis.up

    async def publish_cut(self, limit: int) -> None:
        await self._run("cut", limit)

    async def publish_pause(self, seconds: float) -> None:
        await self._run("pause", seconds)

    async def read(self) -> tuple[int | None, float]:
        reply = await self._run("read", 0)
        if reply is None:
            return None, 0.0
        return (int(reply[0]) if reply[0] is not None else None), float(reply[1])

    async def aclose(self) -> None:
        """Close the running loop's Redis client."""
        await self._redis.aclose()

    async def _run(self, op: str, value: float) -> Any | None:
        args = [op, value, self._hold, self._interval]
        return await self._redis.call("pressure", [self.key], args)
