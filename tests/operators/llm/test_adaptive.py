"""AIMD concurrency: cuts, growth, pauses, FIFO slots, timeouts, and pressure shared through Redis.

The AIMD rules run with an injected clock (and, for refresh counting, a recording pressure);
shared pressure runs on the session's Redis under a scope of the test's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from prometheus_client import REGISTRY

from operators.llm.adaptive import AdaptiveConcurrency
from operators.llm.pressure import RedisSharedPressure, SharedPressure
from scripts.redis_server import free_port
from tests.flows.flow_runs import embedded_settings

LIMITS_LOGGER = "operators.llm.redis_scripts"
"""Where Redis outages of the shared pressure are logged (its `ScriptRunner`)."""


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingPressure:
    """A `SharedPressure` that records what is published and answers `read` with `state`."""

    def __init__(self) -> None:
        self.cuts: list[int] = []
        self.pauses: list[float] = []
        self.reads = 0
        self.state: tuple[int | None, float] = (None, 0.0)

    async def publish_cut(self, limit: int) -> None:
        self.cuts.append(limit)

    async def publish_pause(self, seconds: float) -> None:
        self.pauses.append(seconds)

    async def read(self) -> tuple[int | None, float]:
        self.reads += 1
        return self.state


def make(
    initial: int = 10,
    minimum: int = 1,
    maximum: int = 10,
    *,
    clock: Callable[[], float] = time.monotonic,
    pressure: SharedPressure | None = None,
) -> AdaptiveConcurrency:
    """An `AdaptiveConcurrency` from 10 down to 1 unless told otherwise."""
    return AdaptiveConcurrency(
        initial=initial, minimum=minimum, maximum=maximum, clock=clock, pressure=pressure,
        flow="test",
    )  # fmt: skip


async def hold(limiter: AdaptiveConcurrency, stack: contextlib.AsyncExitStack, n: int) -> None:
    """Take `n` slots until `stack` closes."""
    for _ in range(n):
        await stack.enter_async_context(limiter.slot(timeout=1))


async def settle() -> None:
    """Let every ready task run."""
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
def scope(redis_url: str) -> Iterator[str]:
    """A pressure scope of this test's own; its hash is deleted afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    yield name
    with redis.Redis.from_url(redis_url) as client:
        client.delete(f"surgeflow:v1:pressure:{name}")


def test_a_drop_cuts_by_a_tenth_once_per_interval() -> None:
    clock = FakeClock()
    limiter = make(initial=20, maximum=20, clock=clock)
    limiter.on_drop(None)
    assert limiter.limit == 18
    for _ in range(5):
        limiter.on_drop(None)
    clock.now += 0.99
    limiter.on_drop(None)
    assert limiter.limit == 18, "a storm of drops within one interval is one cut"
    clock.now += 0.01
    limiter.on_drop(None)
    assert limiter.limit == 16
    labels = limiter.metric_labels
    assert REGISTRY.get_sample_value("surgeflow_llm_concurrency_limit", labels) == 16
    other = make(initial=20, maximum=20, clock=clock)
    assert other.metric_labels["loop"] != labels["loop"], "one series per loop"
    assert REGISTRY.get_sample_value("surgeflow_llm_concurrency_limit", labels) == 16


def test_cuts_stop_at_the_minimum() -> None:
    clock = FakeClock()
    limiter = make(initial=5, minimum=3, clock=clock)
    seen = []
    for _ in range(4):
        limiter.on_drop(None)
        seen.append(limiter.limit)
        clock.now += 1
    assert seen == [4, 3, 3, 3]


def test_growth_needs_half_the_limit_in_use_and_stops_at_the_maximum() -> None:
    limiter = make(initial=4, maximum=6, clock=FakeClock())

    async def scenario() -> list[int]:
        seen = []
        for _ in range(50):
            limiter.on_success()  # nothing in flight
        async with contextlib.AsyncExitStack() as stack:
            await hold(limiter, stack, 1)
            for _ in range(50):
                limiter.on_success()  # 1 of 4 in use
            seen.append(limiter.limit)
            await hold(limiter, stack, 1)
            for _ in range(4):
                seen.append(limiter.limit)
                limiter.on_success()  # 2 of 4: four successes add one
            seen.append(limiter.limit)
            for _ in range(20):
                limiter.on_success()  # 2 of 5 is under half
            seen.append(limiter.limit)
            await hold(limiter, stack, 1)
            for _ in range(30):
                limiter.on_success()
            seen.append(limiter.limit)
        return seen

    assert asyncio.run(scenario()) == [4, 4, 4, 4, 4, 5, 5, 6]


def test_never_above_the_maximum_nor_below_the_minimum() -> None:
    limiter = make(initial=50, minimum=2, maximum=8, clock=FakeClock())
    assert limiter.limit == 8
    with pytest.raises(ValueError):
        make(minimum=5, maximum=4)


def test_growth_wakes_a_waiter() -> None:
    limiter = make(initial=1, maximum=2, clock=FakeClock())

    async def scenario() -> None:
        async with limiter.slot(timeout=1):
            waiter = asyncio.create_task(enter(limiter))
            await settle()
            assert not waiter.done() and limiter.waiting == 1
            limiter.on_success()  # 1 of 1 in use: one success adds one
            await asyncio.wait_for(waiter, 1)
            assert limiter.limit == 2

    asyncio.run(scenario())


async def enter(limiter: AdaptiveConcurrency, timeout: float = 5.0) -> float:
    """Take and release a slot; returns when it was entered (loop time)."""
    async with limiter.slot(timeout=timeout):
        return asyncio.get_running_loop().time()


def test_a_pause_holds_new_slots_until_it_ends() -> None:
    clock = FakeClock()
    limiter = make(clock=clock)

    async def scenario() -> None:
        limiter.on_drop(retry_after=5.0)
        assert limiter.pause_remaining == 5.0 and limiter.limit == 9
        waiter = asyncio.create_task(enter(limiter))
        await asyncio.sleep(0.25)
        assert not waiter.done() and limiter.in_flight == 0
        clock.now += 5.0
        await asyncio.wait_for(waiter, 1)

    asyncio.run(scenario())


def test_a_pause_on_the_real_clock_lasts_retry_after() -> None:
    limiter = make()

    async def scenario() -> float:
        start = time.monotonic()
        limiter.on_drop(retry_after=0.3)
        async with limiter.slot(timeout=2):
            return time.monotonic() - start

    assert 0.29 <= asyncio.run(scenario()) < 0.3 + 1.5  # a sleep it must do: load only lengthens it


def test_waiters_get_slots_in_fifo_order() -> None:
    limiter = make(initial=1, maximum=1, clock=FakeClock())
    order: list[int] = []

    async def waiter(i: int) -> None:
        async with limiter.slot(timeout=5):
            order.append(i)
            await asyncio.sleep(0)

    async def scenario() -> None:
        async with limiter.slot(timeout=1):
            tasks = []
            for i in range(6):
                tasks.append(asyncio.create_task(waiter(i)))
                await settle()
            assert limiter.waiting == 6
        await asyncio.wait_for(asyncio.gather(*tasks), 2)

    asyncio.run(scenario())
    assert order == [0, 1, 2, 3, 4, 5]


def test_a_timeout_raises_and_leaves_no_waiter_behind() -> None:
    clock = FakeClock()
    limiter = make(initial=1, maximum=1, clock=clock)

    async def scenario() -> None:
        async with limiter.slot(timeout=1):
            with pytest.raises(TimeoutError):
                async with limiter.slot(timeout=0.05):
                    pytest.fail("entered a full limiter")
            assert limiter.waiting == 0 and limiter.in_flight == 1
        limiter.on_drop(retry_after=60)
        with pytest.raises(TimeoutError):
            await enter(limiter, timeout=0.05)
        clock.now += 60
        await enter(limiter, timeout=0.05)
        assert limiter.in_flight == 0 and limiter.waiting == 0

    asyncio.run(scenario())


def test_a_cut_below_in_flight_admits_nobody_until_enough_calls_end() -> None:
    limiter = make(initial=2, maximum=2, clock=FakeClock())

    async def scenario() -> None:
        first, second = limiter.slot(timeout=1), limiter.slot(timeout=1)
        await first.__aenter__()
        await second.__aenter__()
        limiter.on_drop(None)
        assert limiter.limit == 1
        waiter = asyncio.create_task(enter(limiter))
        await first.__aexit__(None, None, None)
        await settle()
        assert not waiter.done(), "one call still in flight fills a limit of one"
        await second.__aexit__(None, None, None)
        await asyncio.wait_for(waiter, 1)

    asyncio.run(scenario())


def test_pressure_is_read_at_most_every_quarter_second_and_obeyed() -> None:
    clock, pressure = FakeClock(), RecordingPressure()
    limiter = make(clock=clock, pressure=pressure)

    async def scenario() -> None:
        for _ in range(3):
            await enter(limiter)
        assert pressure.reads == 1
        pressure.state = (12, 0.0)
        clock.now += 0.25
        await enter(limiter)
        assert pressure.reads == 2 and limiter.limit == 10, "a higher shared limit is ignored"
        pressure.state = (6, 30.0)
        clock.now += 0.25
        waiter = asyncio.create_task(enter(limiter))
        await asyncio.sleep(0.15)
        assert limiter.limit == 6 and not waiter.done(), "the shared pause holds the slot"
        limiter.on_drop(None)
        assert limiter.limit == 6, "an adopted cut counts as this loop's cut"
        clock.now += 30
        await asyncio.wait_for(waiter, 1)

    asyncio.run(scenario())


def test_cuts_and_pauses_are_published() -> None:
    clock, pressure = FakeClock(), RecordingPressure()
    limiter = make(clock=clock, pressure=pressure)

    async def scenario() -> None:
        limiter.on_drop(retry_after=3.0)
        limiter.on_drop(retry_after=2.0)
        limiter.on_drop(None)
        await limiter.flush()

    asyncio.run(scenario())
    assert pressure.cuts == [9] and pressure.pauses == [3.0, 2.0]


def test_from_settings() -> None:
    settings = embedded_settings(llm_max_concurrency=8, llm_min_concurrency=3)
    limiter = AdaptiveConcurrency.from_settings(settings, scope="shipments", flow="test")
    assert limiter.limit == 8 and limiter.pressure is None
    url = f"redis://127.0.0.1:{free_port()}/0"
    shared = AdaptiveConcurrency.from_settings(
        embedded_settings(redis_url=url), scope="tickets", flow="test"
    )
    assert isinstance(shared.pressure, RedisSharedPressure)
    assert shared.pressure.key == "surgeflow:v1:pressure:tickets"


@pytest.mark.redis
def test_a_drop_on_one_instance_cuts_and_pauses_the_other(redis_url: str, scope: str) -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    a = make(clock=clock_a, pressure=RedisSharedPressure(redis_url, scope))
    b = make(clock=clock_b, pressure=RedisSharedPressure(redis_url, scope))

    async def scenario() -> None:
        await enter(b)  # b has read the shared state
        a.on_drop(retry_after=30.0)
        await a.flush()
        await enter(b)
        assert b.limit == 10, "b has not refreshed yet"
        clock_b.now += 0.25
        waiter = asyncio.create_task(enter(b))
        deadline = asyncio.get_running_loop().time() + 5.0
        while b.limit != 9 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # b reads the shared state from Redis
        assert b.limit == 9 and not waiter.done(), "b adopted the cut and obeys the pause"
        assert 29 < b.pause_remaining <= 30
        clock_b.now += 30
        await asyncio.wait_for(waiter, 1)
        await close(a, b)

    asyncio.run(scenario())


@pytest.mark.redis
def test_one_burst_seen_by_many_instances_is_one_shared_cut(redis_url: str, scope: str) -> None:
    clocks = [FakeClock() for _ in range(3)]
    small = make(clock=clocks[0], pressure=RedisSharedPressure(redis_url, scope))
    big, late = (
        make(initial=20, maximum=20, clock=c, pressure=RedisSharedPressure(redis_url, scope))
        for c in clocks[1:]
    )

    async def scenario() -> None:
        small.on_drop(None)
        await small.flush()
        big.on_drop(None)  # the same burst, before big refreshed
        await big.flush()
        assert (small.limit, big.limit) == (9, 18)
        await enter(late)
        assert late.limit == 9, "the second cut of the burst was not shared"
        clocks[1].now += 0.25
        await enter(big)
        assert big.limit == 9
        await close(small, big, late)

    asyncio.run(scenario())
    with redis.Redis.from_url(redis_url) as client:
        key = f"surgeflow:v1:pressure:{scope}"
        assert client.hget(key, "limit") == b"9"
        assert 0 < client.pttl(key) <= 3000, "kept for the hold time, plus one second"


@pytest.mark.redis
def test_a_shared_cut_is_news_for_the_hold_time(redis_url: str, scope: str) -> None:
    pressure = RedisSharedPressure(redis_url, scope, hold_seconds=0.2)

    async def scenario() -> list[tuple[int | None, float]]:
        seen = [await pressure.read()]
        await pressure.publish_cut(7)
        await pressure.publish_pause(5.0)
        seen.append(await pressure.read())
        await asyncio.sleep(0.25)
        seen.append(await pressure.read())
        await pressure.aclose()
        return seen

    (nothing, pause0), (cut, pause1), (stale, pause2) = asyncio.run(scenario())
    assert nothing is None and pause0 == 0.0
    # the pause outlives the cut's hold; wide margins below (a busy machine only delays reads)
    assert cut == 7 and 5.0 - 1.5 < pause1 <= 5.0
    assert stale is None and 5.0 - 2.5 < pause2 <= 5.0 - 0.25


def test_pressure_on_a_dead_redis_carries_on_locally(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LIMITS_LOGGER)
    pressure = RedisSharedPressure(f"redis://127.0.0.1:{free_port()}/0", "down")
    limiter = make(pressure=pressure)

    async def scenario() -> None:
        limiter.on_drop(retry_after=0.05)
        await limiter.flush()
        await enter(limiter, timeout=1)
        limiter.on_success()
        assert limiter.limit == 9 and not pressure.shared
        await pressure.aclose()

    asyncio.run(scenario())
    warnings = [
        r for r in caplog.records if r.name == LIMITS_LOGGER and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1 and "concurrency pressure" in warnings[0].getMessage()


async def close(*limiters: AdaptiveConcurrency) -> None:
    for limiter in limiters:
        await limiter.flush()
        if isinstance(limiter.pressure, RedisSharedPressure):
            await limiter.pressure.aclose()


def test_a_quiet_spell_after_a_cut_lets_every_success_add_one_at_any_load() -> None:
    clock = FakeClock()
    limiter = make(16, 1, 16, clock=clock)
    for _ in range(6):
        limiter.on_drop(None)
        clock.now += 1.0  # a cut per second: 16 -> 7, as a long stall makes it
    assert limiter.limit == 7

    async def light_load(successes: int) -> None:
        for _ in range(successes):
            async with limiter.slot(timeout=1):
                limiter.on_success()  # one call at a time: far below half the limit

    asyncio.run(light_load(5))
    assert limiter.limit == 7, "no growth at low load while drops are recent"
    clock.now += 4.0  # 5 s after the last drop
    asyncio.run(light_load(20))
    assert limiter.limit == 16, "the limit returns to the maximum once the provider answers"
    limiter.on_drop(None)
    asyncio.run(light_load(5))
    assert limiter.limit == 14, "a new drop ends the quiet spell"


def test_a_waiter_gives_up_when_its_stop_says_so() -> None:
    limiter = make(1, 1, 1)
    stopped = asyncio.Event()

    def stop() -> None:
        if stopped.is_set():
            raise RuntimeError("breaker opened")

    async def scenario() -> float:
        async with contextlib.AsyncExitStack() as stack:
            await hold(limiter, stack, 1)
            waiter = asyncio.create_task(_slot(limiter, stop))
            await asyncio.sleep(0.15)
            assert not waiter.done() and limiter.waiting == 1
            stopped.set()
            started = time.monotonic()
            with pytest.raises(RuntimeError, match="breaker opened"):
                await waiter
            assert limiter.waiting == 0 and limiter.in_flight == 1
            return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.0, "within a poll or two, not the 5 s timeout"


async def _slot(limiter: AdaptiveConcurrency, stop: Callable[[], None]) -> None:
    async with limiter.slot(timeout=5, stop=stop):
        pass
