"""`RedisCache` against a real `redis-server`: batching, TTLs, the front cache, degrading, recovery.

Tests on the session's Redis (`redis_url`) write under a namespace of their own and delete it
afterwards; tests that count commands or stop Redis use a server of their own (`redis_server`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from operators.config.settings import Settings
from operators.llm.cache import InProcessCache
from operators.llm.redis_cache import RedisCache, build_cache, redacted_url
from operators.llm.service import OpenAIService
from scripts.redis_server import RedisServer, free_port
from tests.flows.flow_runs import embedded_settings

pytestmark = pytest.mark.redis

R = TypeVar("R")
LOGGER = "operators.llm.redis_cache"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(cache: RedisCache, work: Callable[[], Coroutine[Any, Any, R]]) -> R:
    """Run `work()` on a fresh event loop and close that loop's Redis client afterwards."""

    async def main() -> R:
        try:
            return await work()
        finally:
            await cache.aclose()

    return asyncio.run(main())


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def front(entries: int = 100) -> InProcessCache:
    return InProcessCache(flow="test", max_entries=entries, ttl_seconds=600)


def closed_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


@pytest.fixture
def connect() -> Iterator[Callable[[str], redis.Redis]]:
    """Synchronous clients to inspect Redis with, closed after the test."""
    clients: list[redis.Redis] = []

    def make(url: str) -> redis.Redis:
        clients.append(redis.Redis.from_url(url))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def ns(redis_url: str, connect: Callable[[str], redis.Redis]) -> Iterator[str]:
    """A key prefix of this test's own on the session's Redis; its keys are deleted afterwards."""
    prefix = f"surgeflow:v1:test-{uuid.uuid4().hex}"
    yield prefix
    client = connect(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def test_round_trip_leaves_missing_keys_out(
    redis_url: str, ns: str, connect: Callable[[str], redis.Redis]
) -> None:
    writer, reader = RedisCache(redis_url, flow="test"), RedisCache(redis_url, flow="test")
    items = {f"{ns}:a": b"\x00\x01 binary", f"{ns}:b": b"2"}
    run(writer, lambda: writer.set_many(items, ttl_seconds=60))
    found = run(reader, lambda: reader.get_many([f"{ns}:a", f"{ns}:b", f"{ns}:missing"]))
    assert found == items
    assert connect(redis_url).get(f"{ns}:a") == b"\x00\x01 binary"
    stats = reader.stats()
    assert stats == {"front_hits": 0, "redis_hits": 2, "misses": 1, "errors": 0, "available": True}


def test_a_client_that_decodes_replies_still_gives_bytes(redis_url: str, ns: str) -> None:
    writer = RedisCache(redis_url, flow="test")
    items = {f"{ns}:text": "réponse en texte".encode()}
    run(writer, lambda: writer.set_many(items, ttl_seconds=60))
    reader = RedisCache(
        redis_url,
        flow="test",
        client_factory=lambda: aioredis.Redis.from_url(redis_url, decode_responses=True),
    )
    assert run(reader, lambda: reader.get_many([f"{ns}:text", f"{ns}:missing"])) == items


def test_values_are_stored_with_their_ttl(
    redis_url: str, ns: str, connect: Callable[[str], redis.Redis]
) -> None:
    cache = RedisCache(redis_url, flow="test")
    run(cache, lambda: cache.set_many({f"{ns}:t": b"v"}, ttl_seconds=120))
    client = connect(redis_url)
    assert 110 <= client.ttl(f"{ns}:t") <= 120
    assert 110_000 <= client.pttl(f"{ns}:t") <= 120_000


def test_a_batch_is_one_mget_and_one_pipeline_of_sets(
    redis_server: RedisServer, connect: Callable[[str], redis.Redis]
) -> None:
    client = connect(redis_server.url)
    cache = RedisCache(redis_server.url, flow="test", chunk_size=500)
    keys = [f"surgeflow:v1:chat:{i:04d}" for i in range(1200)]

    def calls(command: str) -> int:
        return client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)

    client.config_resetstat()
    run(cache, lambda: cache.set_many({k: b"v" for k in keys[:300]}, ttl_seconds=60))
    assert calls("set") == 300 and calls("multi") == 0, "SETs are pipelined, not a transaction"
    client.config_resetstat()
    found = run(cache, lambda: cache.get_many(keys[:400]))
    assert len(found) == 300 and calls("mget") == 1
    client.config_resetstat()
    assert len(run(cache, lambda: cache.get_many(keys))) == 300
    assert calls("mget") == 3, "1200 keys are three MGETs of at most 500 keys"
    assert calls("get") == 0 and calls("multi") == 0


def test_only_keys_missed_by_the_front_go_to_redis(
    redis_server: RedisServer, connect: Callable[[str], redis.Redis]
) -> None:
    client = connect(redis_server.url)
    cache = RedisCache(redis_server.url, flow="test", front=front())
    client.set("surgeflow:v1:chat:in-redis", b"r")
    run(cache, lambda: cache.set_many({"surgeflow:v1:chat:in-front": b"f"}, ttl_seconds=60))
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    wanted = ["surgeflow:v1:chat:in-front", "surgeflow:v1:chat:in-redis", "surgeflow:v1:chat:no"]
    found = run(cache, lambda: cache.get_many(wanted))
    assert found == {"surgeflow:v1:chat:in-front": b"f", "surgeflow:v1:chat:in-redis": b"r"}
    mgets = [e["command"] for e in client.slowlog_get(100) if e["command"].startswith(b"MGET")]
    assert mgets == [b"MGET surgeflow:v1:chat:in-redis surgeflow:v1:chat:no"]
    assert cache.stats()["front_hits"] == 1 and cache.stats()["redis_hits"] == 1
    client.slowlog_reset()
    again = run(cache, lambda: cache.get_many(wanted[:2]))
    assert again == found, "a value found in Redis is kept in the front"
    assert not [e for e in client.slowlog_get(100) if e["command"].startswith(b"MGET")]


def test_front_answers_while_redis_is_stopped(redis_server: RedisServer) -> None:
    cache = RedisCache(redis_server.url, flow="test", front=front())
    run(cache, lambda: cache.set_many({"surgeflow:v1:chat:k": b"v"}, ttl_seconds=60))
    redis_server.stop()
    assert run(cache, lambda: cache.get_many(["surgeflow:v1:chat:k"])) == {
        "surgeflow:v1:chat:k": b"v"
    }
    assert cache.stats()["errors"] == 0 and cache.available, "a front hit never touches Redis"


def test_a_stopped_redis_degrades_to_the_front_without_raising(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FakeClock()
    cache = RedisCache(redis_server.url, flow="test", front=front(), retry_seconds=30, clock=clock)
    errors = {
        op: sample("surgeflow_cache_errors_total", flow="test", operation=op)
        for op in ("get", "set")
    }
    run(cache, lambda: cache.set_many({"surgeflow:v1:chat:old": b"o"}, ttl_seconds=60))
    redis_server.stop()

    async def while_down() -> tuple[dict[str, bytes], ...]:
        await cache.set_many({"surgeflow:v1:chat:new": b"n"}, ttl_seconds=60)
        clock.now += 31
        first = await cache.get_many(["surgeflow:v1:chat:old", "surgeflow:v1:chat:other"])
        second = await cache.get_many(["surgeflow:v1:chat:new", "surgeflow:v1:chat:other"])
        return first, second

    first, second = run(cache, while_down)
    assert first == {"surgeflow:v1:chat:old": b"o"} and second == {"surgeflow:v1:chat:new": b"n"}
    assert sample("surgeflow_cache_errors_total", flow="test", operation="set") - errors["set"] == 1
    assert sample("surgeflow_cache_errors_total", flow="test", operation="get") - errors["get"] == 1
    assert sample("surgeflow_cache_backend_up", flow="test") == 0
    stats = cache.stats()
    assert stats["errors"] == 2 and stats["misses"] == 2 and not stats["available"]
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and "unavailable" in warnings[0] and "ConnectionError" in warnings[0]


def test_no_redis_attempt_within_the_down_window() -> None:
    clock = FakeClock()
    cache = RedisCache(closed_url(), flow="test", retry_seconds=10, clock=clock)

    async def scenario() -> list[int]:
        errors = []
        for step in (0.0, 0.0, 9.9, 0.2, 0.0, 5.0, 5.0):
            clock.now += step
            assert await cache.get_many(["surgeflow:v1:chat:k"]) == {}
            await cache.set_many({"surgeflow:v1:chat:k": b"v"}, ttl_seconds=60)
            errors.append(cache.stats()["errors"])
        return errors

    # every attempt on a closed port fails, so errors count the attempts: one per window
    assert run(cache, scenario) == [1, 1, 1, 2, 2, 2, 3]
    assert cache.stats()["misses"] == 7


def test_recovers_when_redis_comes_back(
    caplog: pytest.LogCaptureFixture,
    connect: Callable[[str], redis.Redis],
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    port, clock = free_port(), FakeClock()
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", flow="test", retry_seconds=5, clock=clock)
    key = "surgeflow:v1:chat:k"

    async def scenario() -> list[dict[str, bytes]]:
        seen = [await cache.get_many([key])]
        with RedisServer(port=port) as server:  # the same URL now answers
            connect(server.url).set(key, b"back")
            seen.append(await cache.get_many([key]))  # still within the down window
            clock.now += 5
            seen.append(await cache.get_many([key]))
            await cache.aclose()
        return seen

    assert run(cache, scenario) == [{}, {}, {key: b"back"}]
    assert cache.available and cache.stats()["errors"] == 1
    assert sample("surgeflow_cache_backend_up", flow="test") == 1
    assert len(messages(caplog, logging.WARNING)) == 1
    assert [m for m in messages(caplog, logging.INFO) if "is back" in m]


def test_one_cache_serves_two_event_loops(redis_url: str, ns: str) -> None:
    cache = RedisCache(redis_url, flow="test", front=front(10))
    barrier = threading.Barrier(2)
    results: dict[int, list[dict[str, bytes]]] = {}

    async def work(worker: int) -> list[dict[str, bytes]]:
        await cache.set_many({f"{ns}:w{worker}-{i}": b"%d" % i for i in range(50)}, 60)
        await asyncio.to_thread(barrier.wait, 5)
        keys = [f"{ns}:w{w}-{i}" for w in (0, 1) for i in range(50)]
        return list(await asyncio.gather(*(cache.get_many(keys[i::5]) for i in range(5))))

    def thread(worker: int) -> None:
        results[worker] = run(cache, lambda: work(worker))

    threads = [threading.Thread(target=thread, args=(w,)) for w in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    for worker in (0, 1):
        merged = {k: v for part in results[worker] for k, v in part.items()}
        assert len(merged) == 100 and merged[f"{ns}:w1-7"] == b"7"
    assert cache.stats()["errors"] == 0


def test_lookups_are_counted_per_key_by_backend(redis_url: str, ns: str) -> None:
    def lookups() -> dict[tuple[str, str], float]:
        return {
            (b, r): sample("surgeflow_cache_lookups_total", flow="test", backend=b, result=r)
            for b in ("memory", "redis")
            for r in ("hit", "miss")
        }

    writer, cache = (
        RedisCache(redis_url, flow="test"),
        RedisCache(redis_url, flow="test", front=front()),
    )
    run(writer, lambda: writer.set_many({f"{ns}:r": b"1"}, ttl_seconds=60))
    run(cache, lambda: cache.set_many({f"{ns}:f": b"2"}, ttl_seconds=60))
    before = lookups()
    run(cache, lambda: cache.get_many([f"{ns}:f", f"{ns}:r", f"{ns}:x", f"{ns}:y"]))
    delta = {k: v - before[k] for k, v in lookups().items()}
    assert delta == {
        ("memory", "hit"): 1,
        ("memory", "miss"): 3,
        ("redis", "hit"): 1,
        ("redis", "miss"): 2,
    }


def test_build_cache_picks_the_backend_from_settings() -> None:
    local = build_cache(embedded_settings(cache_max_entries=123), flow="test")
    assert isinstance(local, InProcessCache) and not isinstance(local, RedisCache)
    settings = embedded_settings(
        redis_url=closed_url(), cache_front_entries=50, redis_retry_seconds=3
    )
    remote = build_cache(settings, flow="test")
    assert isinstance(remote, RedisCache) and isinstance(remote.front, InProcessCache)
    assert remote.front.ttl_seconds == settings.cache.ttl_seconds
    no_front = build_cache(
        embedded_settings(redis_url=closed_url(), cache_front_entries=0), flow="test"
    )
    assert isinstance(no_front, RedisCache) and no_front.front is None


def test_the_service_uses_redis_when_configured(llm_settings: Callable[..., Settings]) -> None:
    assert isinstance(OpenAIService(llm_settings(redis_url=closed_url())).cache, RedisCache)
    assert isinstance(OpenAIService(llm_settings(redis_url=None)).cache, InProcessCache)


def test_logged_urls_hide_the_password() -> None:
    assert redacted_url("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redacted_url("redis://:secret@host:6379/0") == "redis://:***@host:6379/0"
    assert redacted_url("redis://host:6379/0") == "redis://host:6379/0"
