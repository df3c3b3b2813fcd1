"""The Redis backend of the prompt and embedding cache, with an in-process LRU in front.

`RedisCache` implements `PromptCache` over `redis.asyncio`. Keys are those of
`operators.llm.cache` (`surgeflow:v1:<kind>:<sha256>`), values are stored with `SET key value EX
ttl`. A lookup first asks the front cache (an `InProcessCache`; its hits never touch Redis), then
sends every remaining key in one round trip: one MGET, or for large batches MGETs of
`chunk_size` keys in one non-transactional pipeline. A write goes to the front and then to Redis
as one pipeline of SETs. Values found in Redis are put in the front.

A worker's event loop owns its connections, so there is one client per running loop, created
lazily and dropped with the loop. Every round trip is bounded by `timeout_seconds` (socket
timeouts and `asyncio.timeout`), and the client does not retry: the cache degrades instead. On a
Redis error, a lookup is answered by the front alone (everything else is a miss) and a write
keeps its front copy; the backend is then marked down for `retry_seconds`, during which Redis is
not tried at all, then one call probes it again. Going down logs one WARNING, coming back one
INFO. Nothing raises out of `get_many` or `set_many`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from operators.config.redact import redacted_url
from operators.config.settings import Settings
from operators.llm.cache import InProcessCache, PromptCache
from operators.llm.down_window import DownWindow
from operators.runtime.metrics import CACHE_BACKEND_UP, CACHE_ERRORS, CACHE_LOOKUPS, Children
from operators.runtime.per_loop import PerLoop

log = logging.getLogger(__name__)

MGET_CHUNK = 500
"""Keys per MGET; a larger lookup sends several MGETs in one pipeline (one round trip)."""

RedisClientFactory = Callable[[], aioredis.Redis]


MAX_CONNECTIONS = 32
"""Connections per event loop's Redis client (lookups are batched, so few are needed)."""


def default_client_factory(url: str, timeout_seconds: float) -> RedisClientFactory:
    """Builds a `redis.asyncio.Redis` for `url` with socket timeouts and no client retries.

    Its pool holds at most `MAX_CONNECTIONS`; a caller beyond that waits for a free connection
    (within the timeout) instead of failing at once, so a burst of concurrent lookups does not
    look like an outage.
    """

    def factory() -> aioredis.Redis:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )
        return aioredis.Redis.from_pool(pool)

    return factory


class RedisCache:
    """`PromptCache` on Redis, batched, with an in-process front and a down window on errors.

    Consumes the keys and values of the LLM layer; keeps them in Redis with the TTL given to
    `set_many`, and in `front` (when given) for at most the front's own TTL. Instance counters
    (`stats()`) and the `surgeflow_cache_*` metrics (under `flow`) record hits, misses and failed
    round trips.
    """

    def __init__(
        self,
        url: str,
        *,
        flow: str,
        front: InProcessCache | None = None,
        timeout_seconds: float = 0.5,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        client_factory: RedisClientFactory | None = None,
        chunk_size: int = MGET_CHUNK,
    ) -> None:
        self._url = url
        self._front = front
        self._timeout = timeout_seconds
        self._window = DownWindow(retry_seconds, clock=clock)
        self._factory = client_factory or default_client_factory(url, timeout_seconds)
        self._chunk = max(chunk_size, 1)
        self._clients = PerLoop(self._factory, close=lambda client: client.aclose())
        self._lock = threading.Lock()
        self._counts = {"front_hits": 0, "redis_hits": 0, "misses": 0, "errors": 0}
        self._hits = CACHE_LOOKUPS.labels(flow, "redis", "hit")
        self._misses = CACHE_LOOKUPS.labels(flow, "redis", "miss")
        self._errors = Children(CACHE_ERRORS, flow)
        self._up = CACHE_BACKEND_UP.labels(flow)
        self._up.set(1)

    @property
    def front(self) -> InProcessCache | None:
        return self._front

    @property
    def available(self) -> bool:
        """False while Redis is marked down (between a failure and a successful probe)."""
        return self._window.up

    def client(self) -> aioredis.Redis:
        """The client of the running event loop, created on first use."""
        return self._clients.get()

    async def aclose(self) -> None:
        """Close the running loop's client and its connections."""
        await self._clients.aclose()

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(keys))
        found = self._front.get_many_now(wanted) if self._front is not None else {}
        rest = [key for key in wanted if key not in found]
        from_redis = await self._fetch(rest) if rest else {}
        if from_redis and self._front is not None:
            self._front.set_many_now(from_redis, self._front.ttl_seconds)
        self._count(
            front_hits=len(found), redis_hits=len(from_redis), misses=len(rest) - len(from_redis)
        )
        found.update(from_redis)
        return found

    async def set_many(self, items: Mapping[str, bytes], ttl_seconds: int) -> None:
        if not items or ttl_seconds < 1:
            return
        if self._front is not None:
            self._front.set_many_now(items, ttl_seconds)
        epoch = self._begin()
        if epoch is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._store(items, int(ttl_seconds))
        except Exception as exc:
            self._failed("set", exc)
        else:
            self._succeeded(epoch)

    def stats(self) -> dict[str, int | bool]:
        """Front hits, Redis hits, misses, failed round trips and whether Redis is in use."""
        with self._lock:
            counts = dict(self._counts)
        return {**counts, "available": self._window.up}

    async def _fetch(self, keys: list[str]) -> dict[str, bytes]:
        """The values Redis holds for `keys`; {} when Redis is down or fails (all misses)."""
        epoch = self._begin()
        values: list[bytes | str | None] = []
        if epoch is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    values = await self._mget(keys)
            except Exception as exc:
                self._failed("get", exc)
                values = []
            else:
                self._succeeded(epoch)
        found = {k: _as_bytes(v) for k, v in zip(keys, values, strict=False) if v is not None}
        self._hits.inc(len(found))
        self._misses.inc(len(keys) - len(found))
        return found

    async def _mget(self, keys: list[str]) -> list[bytes | str | None]:
        """One MGET, or one pipeline of MGETs of `chunk_size` keys: one round trip either way
        (values are `str` only from a client that decodes responses)."""
        client = self.client()
        chunks = [keys[i : i + self._chunk] for i in range(0, len(keys), self._chunk)]
        if len(chunks) == 1:
            return await client.mget(chunks[0])
        async with client.pipeline(transaction=False) as pipe:
            for chunk in chunks:
                pipe.mget(chunk)
            replies = await pipe.execute()
        return [value for reply in replies for value in reply]

    async def _store(self, items: Mapping[str, bytes], ttl_seconds: int) -> None:
        """Every item as `SET key value EX ttl`, in one non-transactional pipeline."""
        async with self.client().pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(key, value, ex=ttl_seconds)
            await pipe.execute()

    def _begin(self) -> int | None:
        """The epoch to try Redis in, or None while it is marked down (see `DownWindow`)."""
        return self._window.begin()

    def _succeeded(self, epoch: int) -> None:
        """A round trip begun in `epoch` worked: Redis is back if it was down since then."""
        if self._window.succeeded(epoch):
            self._up.set(1)
            log.info("Redis cache at %s is back; using it again", redacted_url(self._url))

    def _failed(self, operation: str, exc: BaseException) -> None:
        """Count the failure and mark Redis down for `retry_seconds` (one warning per outage)."""
        self._errors(operation).inc()
        self._count(errors=1)
        went_down = self._window.failed()
        self._up.set(0)
        reason = f"{type(exc).__name__}: {exc}"
        if went_down:
            log.warning(
                "Redis cache at %s is unavailable (%s); using the in-process front only, "
                "next try in %.1f s",
                redacted_url(self._url),
                reason,
                self._window.retry_seconds,
            )
        else:
            log.debug("Redis cache still unavailable (%s)", reason)

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self._counts[name] += amount


def front_of(cache: PromptCache) -> InProcessCache | None:
    """The in-process part of `cache`: itself, a `RedisCache`'s front, or None."""
    if isinstance(cache, InProcessCache):
        return cache
    return cache.front if isinstance(cache, RedisCache) else None


_fronts: dict[tuple[str, str, int, int], InProcessCache] = {}
_fronts_lock = threading.Lock()


def shared_front(url: str, entries: int, ttl_seconds: int, *, flow: str) -> InProcessCache:
    """The process's front cache of the Redis at `url` for `flow`: one per flow and process, so
    every service of the flow (and the flow rebuilt in the process) sees the answers already
    fetched from that Redis, and its lookups count under the flow."""
    with _fronts_lock:
        front = _fronts.get((url, flow, entries, ttl_seconds))
        if front is None:
            front = InProcessCache(flow=flow, max_entries=entries, ttl_seconds=ttl_seconds)
            _fronts[(url, flow, entries, ttl_seconds)] = front
        return front


def build_cache(settings: Settings, *, flow: str) -> PromptCache:
    """`flow`'s cache: `RedisCache` (with the process's front) when `settings.redis.enabled`,
    else an `InProcessCache` of its own (and `surgeflow_cache_backend_up{flow}` 0)."""
    if settings.redis.url is not None and settings.redis.enabled:
        url = settings.redis.url.get_secret_value()
        front = None
        if settings.cache.front_entries > 0:
            front = shared_front(
                url, settings.cache.front_entries, settings.cache.ttl_seconds, flow=flow
            )
        return RedisCache(
            url,
            flow=flow,
            front=front,
            timeout_seconds=settings.redis.timeout_seconds,
            retry_seconds=settings.redis.retry_seconds,
        )
    CACHE_BACKEND_UP.labels(flow).set(0)  # no Redis configured: 0 throughout, as the limiter
    return InProcessCache(
        flow=flow, max_entries=settings.cache.max_entries, ttl_seconds=settings.cache.ttl_seconds
    )


def _as_bytes(value: bytes | str) -> bytes:
    """A cached value as bytes, also from a client built with `decode_responses=True`."""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)
