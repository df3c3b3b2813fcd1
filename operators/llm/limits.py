"""Request, token and budget limits (GCRA): shared by every process through Redis, or in process.

A `Rate` allows `amount` units per `period_seconds`, with a burst of `burst_seconds`' worth (one
full period's amount when None). `reserve` charges several rates at once, all or none, in the
"schedule" form of GCRA: with the emission interval T = period/amount and the stored theoretical
arrival time `tat`, a cost c makes
`new_tat = max(tat, now) + c·T` and the caller waits `new_tat - burst - now` (0 if negative).
If any rate would need longer than `max_wait`, nothing is stored and `reserve` returns None.
`refund` moves `tat` back by c·T (never before now). A window never admits more than the burst
plus the rate, so there is no double burst at minute boundaries.

`RedisRateLimiter` runs both in one Lua script per call (all costs at once, `TIME` of the server as
the clock, keys `surgeflow:v1:limit:<rate.key>` expiring a little after their `tat`). When Redis
fails it says so (one WARNING, `surgeflow_llm_limiter_backend_up` 0, `shared` False), keeps the
limits in a `LocalRateLimiter` for `retry_seconds`, then tries Redis again (one INFO when it
answers). A failover adds no burst of its own:

- every reply of the script carries the shared `tat` of each rate (as seconds ahead of the
  server's now), which the local limiter follows; so while Redis is down the local limiter
  continues from the shared schedule last seen, after the reservations already queued in Redis,
  instead of starting from a full fresh burst;
- every reservation sends the local `tat` along: a rate missing from Redis (restarted empty) is
  seeded with it, and the first reservation of a rate after an outage takes the later of the two,
  so what was admitted locally meanwhile is not admitted again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from operators.config.llm import LLMSettings
from operators.config.settings import Settings
from operators.llm.metrics import LIMITER_BACKEND_UP
from operators.llm.redis_cache import RedisClientFactory
from operators.llm.redis_scripts import ScriptRunner

log = logging.getLogger(__name__)

KEY_PREFIX = "surgeflow:v1:limit:"
SLACK_SECONDS = 1e-4
"""Float noise tolerated in a delay (a burst of exactly `amount` must pass with max_wait 0)."""
MICRO_USD = 1_000_000


@dataclass(frozen=True)
class Rate:
    """`amount` units per `period_seconds`, in bursts of at most `burst_seconds`' worth.

    `burst_seconds` None allows one full period's amount at once (budgets). Provider limits use a
    short burst (`llm_rate_burst_seconds`), because providers enforce per-minute limits over
    shorter windows too: 6000 RPM admitted as one burst would meet 429s.
    """

    key: str
    amount: float
    period_seconds: float = 60.0
    burst_seconds: float | None = None

    @property
    def tolerance(self) -> float:
        """How far ahead of `now` the theoretical arrival time may run (GCRA's burst)."""
        return self.period_seconds if self.burst_seconds is None else self.burst_seconds

    @property
    def interval(self) -> float:
        """Seconds one unit occupies (the emission interval T)."""
        return self.period_seconds / self.amount


Cost = tuple[Rate, float]


class RateLimiter(Protocol):
    @property
    def shared(self) -> bool:
        """True while limits are kept in Redis (shared by every process)."""
        ...

    async def reserve(self, costs: Sequence[Cost], *, max_wait: float) -> float | None:
        """Reserve every (rate, cost) or none: seconds to wait before use, or None."""
        ...

    async def refund(self, costs: Sequence[Cost]) -> None:
        """Give back units reserved but not used."""
        ...


def active_costs(costs: Sequence[Cost]) -> list[Cost]:
    """`costs` without zero costs and without rates that limit nothing (amount or period <= 0)."""
    return [(r, c) for r, c in costs if c > 0 and r.amount > 0 and r.period_seconds > 0]


def schedule(
    tats: Mapping[str, float], costs: Sequence[Cost], now: float, max_wait: float
) -> tuple[dict[str, float], float] | None:
    """The new `tat` of every rate and the wait they impose, or None if one exceeds `max_wait`."""
    planned: dict[str, float] = {}
    worst = 0.0
    for rate, cost in costs:
        tat = max(planned.get(rate.key, tats.get(rate.key, now)), now)
        planned[rate.key] = tat + cost * rate.interval
        delay = planned[rate.key] - rate.tolerance - now
        if delay > max_wait + SLACK_SECONDS:
            return None
        worst = max(worst, delay)
    return planned, (worst if worst > SLACK_SECONDS else 0.0)


class LocalRateLimiter:
    """GCRA in this process; thread-safe, so worker threads and their loops may share one."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        return False

    async def reserve(self, costs: Sequence[Cost], *, max_wait: float) -> float | None:
        return self.reserve_now(costs, max_wait=max_wait)

    async def refund(self, costs: Sequence[Cost]) -> None:
        self.refund_now(costs)

    def reserve_now(self, costs: Sequence[Cost], *, max_wait: float) -> float | None:
        """`reserve` without the event loop."""
        with self._lock:
            now = self._clock()
            plan = schedule(self._tats, active_costs(costs), now, max(max_wait, 0.0))
            if plan is None:
                return None
            self._tats.update(plan[0])
            if len(self._tats) > 1000:
                self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
            return plan[1]

    def refund_now(self, costs: Sequence[Cost]) -> None:
        """`refund` without the event loop."""
        with self._lock:
            now = self._clock()
            for rate, cost in active_costs(costs):
                if rate.key in self._tats:
                    self._tats[rate.key] = max(self._tats[rate.key] - cost * rate.interval, now)

    def ahead(self, keys: Sequence[str]) -> list[float]:
        """How far each key's `tat` runs ahead of now, in seconds (0 for an unknown key)."""
        with self._lock:
            now = self._clock()
            return [max(self._tats.get(key, now) - now, 0.0) for key in keys]

    def follow(self, ahead: Mapping[str, float], *, later_only: bool) -> None:
        """Take the `tat` of each key as `ahead` seconds from now (the shared schedule);
        `later_only` keeps a later local `tat` (replies of concurrent calls may cross)."""
        with self._lock:
            now = self._clock()
            for key, seconds in ahead.items():
                tat = now + max(seconds, 0.0)
                self._tats[key] = max(tat, self._tats.get(key, now)) if later_only else tat


_PREAMBLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function fmt(x) return string.format('%.17g', x) end
"""

RESERVE_SCRIPT = (
    _PREAMBLE
    + """
-- KEYS: limit keys; ARGV: max_wait, slack, then (interval, cost, tolerance, local, merge) per
-- key, where local is the caller's tat in seconds ahead of now: it seeds a missing key, and
-- with merge 1 (the first call after an outage) the later of the two is taken.
-- Reply: {admitted, delay, then each key's tat in seconds ahead of now}.
local max_wait, slack = tonumber(ARGV[1]), tonumber(ARGV[2])
local before, planned, admitted, worst = {}, {}, 1, 0
for i, key in ipairs(KEYS) do
  local at = 5 * i - 2
  local interval, cost, tolerance = tonumber(ARGV[at]), tonumber(ARGV[at + 1]),
    tonumber(ARGV[at + 2])
  local seeded, merge = now + tonumber(ARGV[at + 3]), ARGV[at + 4] == '1'
  local tat = planned[key]
  if tat == nil then
    tat = tonumber(redis.call('GET', key))
    if tat == nil or (merge and seeded > tat) then tat = seeded end
    if tat < now then tat = now end
    before[key] = tat
  end
  planned[key] = tat + cost * interval
  local delay = planned[key] - tolerance - now
  if delay > max_wait + slack then
    admitted, worst = 0, delay
    break
  end
  if delay > worst then worst = delay end
end
local reply = {admitted, 0}
for i, key in ipairs(KEYS) do
  local tat = (admitted == 1 and planned[key]) or before[key] or now
  if admitted == 1 then
    redis.call('SET', key, fmt(tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
  end
  reply[i + 2] = fmt(tat - now)
end
if admitted == 1 and worst <= slack then worst = 0 end
reply[2] = fmt(worst)
return reply
"""
)

REFUND_SCRIPT = (
    _PREAMBLE
    + """
-- KEYS: limit keys; ARGV: unused, unused, then (interval, cost, ...) per key, as for reserve.
-- Reply: each key's tat in seconds ahead of now (-1 for a key Redis does not hold).
local reply = {}
for i, key in ipairs(KEYS) do
  local at = 5 * i - 2
  local tat = tonumber(redis.call('GET', key))
  reply[i] = '-1'
  if tat then
    tat = math.max(tat - tonumber(ARGV[at + 1]) * tonumber(ARGV[at]), now)
    if tat > now then
      redis.call('SET', key, fmt(tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
    else
      redis.call('DEL', key)
    end
    reply[i] = fmt(tat - now)
  end
end
return reply
"""
)


def _script_args(
    head: Sequence[float], costs: Sequence[Cost], ahead: Sequence[float], merge: Sequence[bool]
) -> list[float]:
    per_key = zip(costs, ahead, merge, strict=True)
    values = ((r.interval, c, r.tolerance, a, int(m)) for (r, c), a, m in per_key)
    return [*head, *(v for group in values for v in group)]


class RedisRateLimiter:
    """GCRA in one Lua script on Redis for all costs at once, with a `LocalRateLimiter` fallback.
    `surgeflow_llm_limiter_backend_up{flow}` says which of the two holds `flow`'s limits."""

    def __init__(
        self,
        url: str,
        *,
        flow: str,
        timeout_seconds: float = 0.5,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        client_factory: RedisClientFactory | None = None,
    ) -> None:
        self._local = LocalRateLimiter(clock=clock)
        self._unsynced: set[str] = set()
        """Keys charged or refunded in the local limiter since Redis last saw them."""
        backend_up = LIMITER_BACKEND_UP.labels(flow)
        self._redis = ScriptRunner(
            url,
            {"reserve": RESERVE_SCRIPT, "refund": REFUND_SCRIPT},
            what="rate limits",
            timeout_seconds=timeout_seconds,
            retry_seconds=retry_seconds,
            clock=clock,
            client_factory=client_factory,
            on_change=lambda up: backend_up.set(1 if up else 0),
        )
        backend_up.set(1)

    @property
    def shared(self) -> bool:
        return self._redis.up

    @property
    def local(self) -> LocalRateLimiter:
        """The limiter used while Redis is down."""
        return self._local

    async def reserve(self, costs: Sequence[Cost], *, max_wait: float) -> float | None:
        active = active_costs(costs)
        if not active:
            return 0.0
        reply = await self._call("reserve", active, [max(max_wait, 0.0), SLACK_SECONDS])
        if reply is None:
            return self._local.reserve_now(active, max_wait=max_wait)
        ahead = {r.key: float(s) for (r, _), s in zip(active, reply[2:], strict=True)}
        self._local.follow(ahead, later_only=True)
        return float(reply[1]) if int(reply[0]) else None

    async def refund(self, costs: Sequence[Cost]) -> None:
        active = active_costs(costs)
        if not active:
            return
        reply = await self._call("refund", active, [0, 0])
        if reply is None:
            self._local.refund_now(active)
            return
        ahead = {r.key: float(s) for (r, _), s in zip(active, reply, strict=True) if float(s) >= 0}
        self._local.follow(ahead, later_only=False)

    async def _call(self, script: str, active: Sequence[Cost], head: list[float]) -> Any | None:
        """Run `script` for `active` with the local schedule; None (and remember the keys as
        charged locally) when Redis is down."""
        names = [rate.key for rate, _ in active]
        merge = [name in self._unsynced for name in names]
        args = _script_args(head, active, self._local.ahead(names), merge)
        reply = await self._redis.call(script, [KEY_PREFIX + name for name in names], args)
        if reply is None:
            self._unsynced.update(names)
        elif script == "reserve" and int(reply[0]):
            self._unsynced.difference_update(n for n, m in zip(names, merge, strict=True) if m)
        return reply

    async def aclose(self) -> None:
        """Close the running loop's Redis client."""
        await self._redis.aclose()


def build_limiter(settings: Settings, *, flow: str) -> RateLimiter:
    """`flow`'s limiter: `RedisRateLimiter` when `settings.redis.enabled`, else a
    `LocalRateLimiter`."""
    if settings.redis.url is not None and settings.redis.enabled:
        return RedisRateLimiter(
            settings.redis.url.get_secret_value(),
            flow=flow,
            timeout_seconds=settings.redis.timeout_seconds,
            retry_seconds=settings.redis.retry_seconds,
        )
    LIMITER_BACKEND_UP.labels(flow).set(0)
    return LocalRateLimiter()


def provider_costs(llm: LLMSettings, model: str, tokens: int) -> list[Cost]:
    """One request against `rpm:<model>` and `tokens` against `tpm:<model>`; 0 settings = none."""
    costs: list[Cost] = []
    burst = llm.rate_burst_seconds
    if llm.requests_per_minute > 0:
        rpm = Rate(f"rpm:{model}", llm.requests_per_minute, burst_seconds=burst)
        costs.append((rpm, 1.0))
    if llm.tokens_per_minute > 0 and tokens > 0:
        # The burst always holds one request, however large, so a big request is paced, not refused.
        one_request = tokens * 60.0 / llm.tokens_per_minute
        tpm = Rate(f"tpm:{model}", llm.tokens_per_minute, burst_seconds=max(burst, one_request))
        costs.append((tpm, float(tokens)))
    return costs


def budget_costs(llm: LLMSettings, flow: str, tokens: int, cost_usd: float) -> list[Cost]:
    """`tokens` and `cost_usd` (in micro-USD) against the per-minute budgets of `flow`."""
    costs: list[Cost] = []
    if llm.budget_tokens_per_minute > 0 and tokens > 0:
        rate = Rate(f"budget:{flow}:tokens", llm.budget_tokens_per_minute)
        costs.append((rate, float(tokens)))
    if llm.budget_usd_per_minute > 0 and cost_usd > 0:
        rate = Rate(f"budget:{flow}:usd", llm.budget_usd_per_minute * MICRO_USD)
        costs.append((rate, cost_usd * MICRO_USD))
    return costs
