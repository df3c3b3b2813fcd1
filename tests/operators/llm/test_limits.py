"""GCRA limits in process and in Redis: bursts, waits, all-or-none, refunds, two processes, outages.

Rate keys carry a prefix of the test's own (`ns`), so tests on the session's Redis do not meet;
tests that stop Redis or count its commands use a server of their own (`redis_server`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

import scripts.redis_server
from operators.llm.limits import (
    KEY_PREFIX,
    Cost,
    LocalRateLimiter,
    Rate,
    RateLimiter,
    RedisRateLimiter,
    budget_costs,
    build_limiter,
    provider_costs,
)
from scripts.redis_server import RedisServer, free_port
from tests.flows.flow_runs import embedded_settings

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[3]
LOGGER = "operators.llm.redis_scripts"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """A limiter and a way to let time pass for it."""

    limiter: RateLimiter
    advance: Callable[[float], Awaitable[None]]

    def run(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run `work()` on a fresh loop, closing the loop's Redis client afterwards."""

        async def main() -> Any:
            try:
                return await work()
            finally:
                if isinstance(self.limiter, RedisRateLimiter):
                    await self.limiter.aclose()

        return asyncio.run(main())


def local_backend() -> Backend:
    clock = FakeClock()

    async def advance(seconds: float) -> None:
        clock.now += seconds

    return Backend(LocalRateLimiter(clock=clock), advance)


def redis_backend(url: str) -> Backend:
    return Backend(RedisRateLimiter(url, flow="test"), asyncio.sleep)


@pytest.fixture
def ns(redis_url: str) -> Iterator[str]:
    """A rate-key prefix of this test's own; its Redis keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex}"
    yield prefix
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{KEY_PREFIX}{prefix}*"))
        if keys:
            client.delete(*keys)


@pytest.fixture(params=["local", "redis"])
def backend(request: pytest.FixtureRequest, redis_url: str) -> Backend:
    return local_backend() if request.param == "local" else redis_backend(redis_url)


def gauge() -> float | None:
    return REGISTRY.get_sample_value("surgeflow_llm_limiter_backend_up", {"flow": "test"})


def test_a_full_burst_passes_at_once_then_one_interval_per_unit(backend: Backend, ns: str) -> None:
    rate = Rate(f"{ns}:rpm", 10, 60.0)  # T = 6 s

    async def scenario() -> list[float | None]:
        burst = [await backend.limiter.reserve([(rate, 1)], max_wait=0) for _ in range(10)]
        assert burst == [0.0] * 10
        return [
            await backend.limiter.reserve([(rate, 1)], max_wait=0),
            await backend.limiter.reserve([(rate, 1)], max_wait=10),
            await backend.limiter.reserve([(rate, 1)], max_wait=10),
            await backend.limiter.reserve([(rate, 1)], max_wait=20),
        ]

    now_or_never, first, too_late, second = backend.run(scenario)
    assert now_or_never is None and too_late is None
    assert first == pytest.approx(6.0, abs=0.1)
    assert second == pytest.approx(12.0, abs=0.1)


def test_a_rejected_reservation_stores_nothing(backend: Backend, ns: str) -> None:
    rate = Rate(f"{ns}:tpm", 100, 60.0)  # T = 0.6 s per token

    async def scenario() -> list[float | None]:
        assert await backend.limiter.reserve([(rate, 100)], max_wait=0) == 0.0
        return [
            await backend.limiter.reserve([(rate, 10)], max_wait=5.9),
            await backend.limiter.reserve([(rate, 10)], max_wait=5.9),
            await backend.limiter.reserve([(rate, 10)], max_wait=6.5),
        ]

    first, second, third = backend.run(scenario)
    assert first is None and second is None
    assert third == pytest.approx(6.0, abs=0.1), "the rejected reservations were not charged"


def test_rates_are_charged_all_or_none(backend: Backend, ns: str) -> None:
    small, large = Rate(f"{ns}:small", 2, 60.0), Rate(f"{ns}:large", 10, 60.0)

    async def scenario() -> list[float | None]:
        assert await backend.limiter.reserve([(small, 2)], max_wait=0) == 0.0
        return [
            await backend.limiter.reserve([(large, 5), (small, 1)], max_wait=0),
            await backend.limiter.reserve([(large, 10)], max_wait=0),
            await backend.limiter.reserve([(large, 1)], max_wait=0),
        ]

    assert backend.run(scenario) == [None, 0.0, None], "the large rate was not charged 5"


def test_an_admitted_reservation_charges_every_rate(backend: Backend, ns: str) -> None:
    rpm, tpm = Rate(f"{ns}:rpm", 3, 60.0), Rate(f"{ns}:tpm", 1000, 60.0)

    async def scenario() -> list[float | None]:
        both = [(rpm, 1.0), (tpm, 400.0)]
        return [
            await backend.limiter.reserve(both, max_wait=0),
            await backend.limiter.reserve(both, max_wait=0),
            await backend.limiter.reserve([(tpm, 201)], max_wait=0),
            await backend.limiter.reserve([(rpm, 1)], max_wait=0),
            await backend.limiter.reserve([(rpm, 1)], max_wait=0),
        ]

    assert backend.run(scenario) == [0.0, 0.0, None, 0.0, None]


def test_a_refund_makes_room_again_but_never_more_than_the_burst(backend: Backend, ns: str) -> None:
    rate = Rate(f"{ns}:tpm", 5, 60.0)

    async def scenario() -> list[float | None]:
        assert await backend.limiter.reserve([(rate, 5)], max_wait=0) == 0.0
        await backend.limiter.refund([(rate, 3)])
        seen = [
            await backend.limiter.reserve([(rate, 3)], max_wait=0),
            await backend.limiter.reserve([(rate, 1)], max_wait=0),
        ]
        await backend.limiter.refund([(rate, 1000)])
        seen.append(await backend.limiter.reserve([(rate, 5)], max_wait=0))
        seen.append(await backend.limiter.reserve([(rate, 1)], max_wait=0))
        return seen

    assert backend.run(scenario) == [0.0, None, 0.0, None]


def test_time_frees_one_unit_per_interval(backend: Backend, ns: str) -> None:
    rate = Rate(f"{ns}:rps", 10, 2.0)  # T = 0.2 s

    async def scenario() -> list[float | None]:
        assert [await backend.limiter.reserve([(rate, 1)], max_wait=0) for _ in range(10)] == [
            0.0
        ] * 10
        seen = [await backend.limiter.reserve([(rate, 1)], max_wait=0)]
        await backend.advance(0.25)
        seen.append(await backend.limiter.reserve([(rate, 1)], max_wait=0))
        seen.append(await backend.limiter.reserve([(rate, 1)], max_wait=0))
        return seen

    assert backend.run(scenario) == [None, 0.0, None]


def test_zero_costs_and_zero_rates_limit_nothing(backend: Backend, ns: str) -> None:
    costs: list[Cost] = [(Rate(f"{ns}:off", 0), 5.0), (Rate(f"{ns}:on", 1), 0.0)]

    async def scenario() -> list[float | None]:
        return [await backend.limiter.reserve(costs, max_wait=0) for _ in range(5)]

    assert backend.run(scenario) == [0.0] * 5


def test_local_and_redis_agree_on_a_sequence(redis_url: str, ns: str) -> None:
    a, b = Rate(f"{ns}:a", 6, 60.0), Rate(f"{ns}:b", 100, 30.0)
    steps: list[tuple[str, list[Cost], float]] = [
        ("reserve", [(a, 4), (b, 50)], 0),
        ("reserve", [(a, 2), (b, 40)], 0),
        ("reserve", [(a, 2), (b, 40)], 0),
        ("reserve", [(a, 1), (b, 1)], 15),
        ("refund", [(a, 1), (b, 20)], 0),
        ("reserve", [(b, 30), (b, 30)], 5),
        ("reserve", [(a, 3)], 31),
        ("reserve", [(a, 1), (a, 1)], 100),
        ("refund", [(a, 100)], 0),
        ("reserve", [(a, 6), (b, 1)], 0),
    ]

    def play(backend: Backend) -> list[float | None]:
        async def scenario() -> list[float | None]:
            seen: list[float | None] = []
            for op, costs, max_wait in steps:
                if op == "refund":
                    await backend.limiter.refund(costs)
                else:
                    seen.append(await backend.limiter.reserve(costs, max_wait=max_wait))
            return seen

        return backend.run(scenario)

    local, remote = play(local_backend()), play(redis_backend(redis_url))
    assert [x is None for x in local] == [x is None for x in remote]
    assert [x or 0 for x in remote] == pytest.approx([x or 0 for x in local], abs=0.1)
    assert local == [0.0, 0.0, None, 10.0, None, 30.0, 50.0, 0.0]


def test_redis_keys_expire_a_little_after_their_arrival_time(redis_url: str, ns: str) -> None:
    limiter, rate = RedisRateLimiter(redis_url, flow="test"), Rate(f"{ns}:tpm", 10, 60.0)
    key = f"surgeflow:v1:limit:{ns}:tpm"

    async def scenario() -> None:
        await limiter.reserve([(rate, 5)], max_wait=0)
        await limiter.aclose()

    asyncio.run(scenario())
    with redis.Redis.from_url(redis_url) as client:
        assert 30_000 <= client.pttl(key) <= 31_000, "tat is now + 30 s, kept 1 s longer"

    async def give_back() -> None:
        await limiter.refund([(rate, 5)])
        await limiter.aclose()

    asyncio.run(give_back())
    with redis.Redis.from_url(redis_url) as client:
        assert not client.exists(key), "a refund back to now deletes the key"


def test_a_reservation_is_one_script_call(redis_server: RedisServer) -> None:
    limiter = RedisRateLimiter(redis_server.url, flow="test")
    costs: list[Cost] = [(Rate("x:rpm", 10), 1.0), (Rate("x:tpm", 1e5), 500.0), (Rate("y", 3), 1)]

    async def scenario() -> None:
        await limiter.reserve(costs, max_wait=0)  # loads the scripts
        await limiter.refund(costs)
        with redis.Redis.from_url(redis_server.url) as client:
            client.config_resetstat()
            for _ in range(3):
                await limiter.reserve(costs, max_wait=0)
            await limiter.refund(costs)
            stats = client.info("commandstats")
        await limiter.aclose()
        assert stats["cmdstat_evalsha"]["calls"] == 4
        assert not {"cmdstat_eval", "cmdstat_script|load", "cmdstat_multi"} & stats.keys()

    asyncio.run(scenario())


def test_one_local_limiter_serves_many_threads() -> None:
    limiter = LocalRateLimiter(clock=FakeClock())
    rate, admitted, lock = Rate("threads", 50, 60.0), [], threading.Lock()
    barrier = threading.Barrier(4)

    def worker() -> None:
        async def hammer() -> int:
            return sum(
                [await limiter.reserve([(rate, 1)], max_wait=0) is not None for _ in range(100)]
            )

        barrier.wait(5)
        count = asyncio.run(hammer())
        with lock:
            admitted.append(count)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(admitted) == 4 and sum(admitted) == 50


def test_two_processes_share_one_rate(redis_server: RedisServer) -> None:
    amount, period, seconds = 50, 1.0, 1.0
    key = f"test-{uuid.uuid4().hex}:shared"
    command = [sys.executable, "-m", "tests.support.limiter_process", redis_server.url, key]
    command += [str(amount), str(period), str(seconds)]
    processes = [
        subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = [json.loads(p.communicate(timeout=60)[0].splitlines()[-1]) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    elapsed = max(r["last"] for r in results) - min(r["first"] for r in results)
    expected = amount + amount * elapsed / period
    admitted = sum(r["admitted"] for r in results)
    assert all(r["shared"] and r["admitted"] > 0 for r in results), results
    assert sum(r["attempts"] for r in results) > 3 * expected, "the limit was what held them"
    assert 0.8 * expected <= admitted <= expected + 3, (admitted, expected, results)


def test_a_stopped_redis_degrades_to_local_limits_and_comes_back(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    limiter = RedisRateLimiter(redis_server.url, flow="test", retry_seconds=5, clock=clock)
    rate = Rate("outage", 3, 60.0)

    async def reserve(max_wait: float = 0) -> float | None:
        return await limiter.reserve([(rate, 1)], max_wait=max_wait)

    async def scenario() -> None:
        assert await reserve() == 0.0 and limiter.shared and gauge() == 1
        port = redis_server.port
        redis_server.stop()
        # the local limits continue from the shared schedule: 1 of the burst of 3 was used
        assert [await reserve() for _ in range(3)] == [0.0, 0.0, None], "local limits"
        assert not limiter.shared and gauge() == 0
        monkeypatch.setattr(scripts.redis_server, "free_port", lambda: port)
        redis_server.start()
        clock.now += 4.9
        assert await reserve() is None and not limiter.shared, "Redis is not tried in the window"
        with redis.Redis.from_url(redis_server.url) as client:
            assert "cmdstat_evalsha" not in client.info("commandstats")
        clock.now += 0.2
        # Redis came back empty: it is seeded with the local schedule (3 units, 5.1 s ago)
        delay = await reserve(max_wait=60)
        assert limiter.shared and gauge() == 1
        assert delay == pytest.approx(3 * 20 - 5.1 + 20 - 60, abs=0.05)
        with redis.Redis.from_url(redis_server.url) as client:
            ahead = client.pttl(f"{KEY_PREFIX}outage") / 1000 - 1
        assert ahead == pytest.approx(4 * 20 - 5.1, abs=0.1), "the seeded schedule is shared"
        await limiter.aclose()

    asyncio.run(scenario())
    records = [r for r in caplog.records if r.name == LOGGER]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ConnectionError" in warnings[0]
    assert [r for r in records if r.levelno == logging.INFO and "back" in r.getMessage()]


def test_reservations_queued_in_redis_are_not_admitted_again_by_the_local_limits(
    redis_server: RedisServer,
) -> None:
    clock = FakeClock()
    limiter = RedisRateLimiter(redis_server.url, flow="test", retry_seconds=60, clock=clock)
    rate = Rate("queued", 60, 60.0, burst_seconds=1.0)  # 1 per second, one at once

    async def scenario() -> list[float | None]:
        queued = [await limiter.reserve([(rate, 1)], max_wait=10) for _ in range(5)]
        assert queued == pytest.approx([0, 1, 2, 3, 4], abs=0.05), "queued in Redis"
        redis_server.stop()
        after = [await limiter.reserve([(rate, 1)], max_wait=10) for _ in range(2)]
        await limiter.aclose()
        return after

    after = asyncio.run(scenario())
    assert not limiter.shared
    # a fresh local limiter would admit one at once; this one queues after the 5 in Redis
    assert after == pytest.approx([5, 6], abs=0.05)


def test_the_first_reservation_after_an_outage_merges_what_was_admitted_locally(
    redis_server: RedisServer,
) -> None:
    clock = FakeClock()
    limiter = RedisRateLimiter(
        redis_server.url, flow="test", timeout_seconds=0.2, retry_seconds=1, clock=clock
    )
    rate = Rate("merged", 60, 60.0, burst_seconds=1.0)
    other = RedisRateLimiter(redis_server.url, flow="test")

    async def scenario() -> tuple[list[float | None], float | None]:
        first = await limiter.reserve([(rate, 1)], max_wait=10)
        with redis.Redis.from_url(redis_server.url) as client:
            client.client_pause(600)  # Redis keeps its state but does not answer in time
            local = [await limiter.reserve([(rate, 1)], max_wait=10) for _ in range(4)]
            assert not limiter.shared
        await asyncio.sleep(0.7)  # the pause is over
        clock.now += 1
        merged = await limiter.reserve([(rate, 1)], max_wait=10)
        assert limiter.shared
        shared = await other.reserve([(rate, 1)], max_wait=10)
        await limiter.aclose()
        await other.aclose()
        return [first, *local, merged], shared

    seen, shared = asyncio.run(scenario())
    assert seen[:5] == pytest.approx([0, 1, 2, 3, 4], abs=0.05)
    # Redis still holds only the first unit (due again by now); after 1 s on the limiter's clock
    # the 4 admitted locally still stand, so the next unit waits 4 s, not 0
    assert seen[5] == pytest.approx(4, abs=0.3)
    assert shared is not None and shared == pytest.approx(seen[5] + 1, abs=0.1), "shared again"


def test_build_limiter_picks_the_backend_from_settings() -> None:
    local = build_limiter(embedded_settings(), flow="test")
    assert isinstance(local, LocalRateLimiter) and not local.shared and gauge() == 0
    url = f"redis://127.0.0.1:{free_port()}/0"
    remote = build_limiter(embedded_settings(redis_url=url), flow="test")
    assert isinstance(remote, RedisRateLimiter) and remote.shared and gauge() == 1


def test_provider_and_budget_costs_follow_the_settings() -> None:
    settings = embedded_settings(
        llm_requests_per_minute=500,
        llm_tokens_per_minute=90_000,
        llm_budget_tokens_per_minute=20_000,
        llm_budget_usd_per_minute=0.5,
        llm_rate_burst_seconds=2.0,
    )
    assert provider_costs(settings.llm, "gpt-4o-mini", 700) == [
        (Rate("rpm:gpt-4o-mini", 500, burst_seconds=2.0), 1.0),
        (Rate("tpm:gpt-4o-mini", 90_000, burst_seconds=2.0), 700.0),
    ]
    tokens, usd = budget_costs(settings.llm, "shipments", 700, 0.000125)
    assert tokens == (Rate("budget:shipments:tokens", 20_000), 700.0)
    assert usd[0] == Rate("budget:shipments:usd", 500_000) and usd[1] == pytest.approx(125.0)
    off = embedded_settings()
    assert provider_costs(off.llm, "m", 700) == [] and budget_costs(off.llm, "f", 700, 0.1) == []


def test_a_short_burst_admits_its_share_then_paces(backend: Backend, ns: str) -> None:
    rate = Rate(f"{ns}:rpm", 60, 60.0, burst_seconds=3.0)  # 1 per second, bursts of 3 s

    async def scenario() -> list[float | None]:
        return [await backend.limiter.reserve([(rate, 1)], max_wait=0) for _ in range(5)] + [
            await backend.limiter.reserve([(rate, 1)], max_wait=2)
        ]

    *burst, paced = backend.run(scenario)
    assert burst == [0.0, 0.0, 0.0, None, None]  # a burst of 3 s at 1 per second
    assert paced == pytest.approx(1.0, abs=0.1)
