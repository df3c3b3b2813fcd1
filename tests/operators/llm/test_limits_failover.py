"""The provider's request limit through a Redis failover, measured at the loopback server.

A steady overload of chat calls runs through the real `OpenAIService` against a limit of
`RATE` requests per second shared in a Redis of the test's own; mid-run Redis is killed, and
later restarted empty on the same port. The server's request log (arrival times) gives the rate
the provider saw: it must stay within 10% of the limit over every 5-second window, so neither
the reservations queued in Redis before it died nor a fresh in-process limiter, nor a fresh
Redis after it comes back, may add a burst of their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

import scripts.redis_server
from operators.config.settings import Settings
from operators.llm.service import OpenAIService
from operators.llm.types import LLMError
from scripts.redis_server import RedisServer
from tests.operators.llm.service_calls import classify, run
from tests.support.openai_server import CHAT_PATH, OpenAITestServer

pytestmark = pytest.mark.redis

RATE = 10.0
"""Requests per second allowed (600 per minute): fine enough that the jitter of arrivals at the
server stays inside the 10% tolerance of a 5-second window (50 requests, 55 allowed)."""
WINDOW_SECONDS = 5.0
TOLERANCE = 0.10
CALLERS = 48
"""More callers than the limit admits within the limiter wait: the limit is the bottleneck."""


def worst_window_rate(arrivals: list[float], window: float = WINDOW_SECONDS) -> float:
    """The highest requests/second over any window [t, t + window) of the arrival times."""
    times = sorted(arrivals)
    worst, end = 0, 0
    for start, at in enumerate(times):
        end = max(end, start)
        while end < len(times) and times[end] < at + window:
            end += 1
        worst = max(worst, end - start)
    return worst / window


def test_worst_window_rate_counts_half_open_windows() -> None:
    assert worst_window_rate([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]) == 1.0
    assert worst_window_rate([0.0, 0.1, 0.2, 9.0], window=1.0) == 3.0
    assert worst_window_rate([]) == 0.0


def test_request_rate_holds_through_a_redis_kill_and_an_empty_restart(
    openai_server: OpenAITestServer,
    llm_settings: Callable[..., Settings],
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="operators.llm")
    settings = llm_settings(
        redis_url=redis_server.url,
        llm_requests_per_minute=int(RATE * 60),
        llm_rate_burst_seconds=0.01,
        llm_max_limiter_wait_seconds=3.0,
        llm_max_concurrency=64,
        llm_max_retries=0,
        redis_retry_seconds=1.0,
    )
    service = OpenAIService(settings, flow="failover")
    port = redis_server.port
    monkeypatch.setattr(scripts.redis_server, "free_port", lambda: port)
    shared: dict[str, bool] = {}
    moments: dict[str, float] = {}

    async def caller(index: int, stop_at: float) -> None:
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            try:
                await classify(service, f"caller {index} note {n}")
            except LLMError:
                await asyncio.sleep(0.1)  # the limit would wait too long: try again soon

    async def work() -> None:
        started = time.monotonic()
        callers = [asyncio.create_task(caller(i, started + 13.0)) for i in range(CALLERS)]
        await asyncio.sleep(4.0)
        shared["before"] = service.limiter.shared
        moments["killed"] = time.time()
        await asyncio.to_thread(redis_server.stop)  # killed with reservations queued in it
        await asyncio.sleep(4.0)
        shared["during"] = service.limiter.shared
        await asyncio.to_thread(redis_server.start)  # back on the same port, empty
        moments["restarted"] = time.time()
        await asyncio.gather(*callers)
        shared["after"] = service.limiter.shared

    run(service, work)
    arrivals = [r.at for r in openai_server.requests if r.path.endswith(CHAT_PATH)]
    worst = worst_window_rate(arrivals)
    killed, restarted = moments["killed"], moments["restarted"]
    near_kill = [t for t in arrivals if killed - WINDOW_SECONDS <= t < restarted]
    near_restart = [t for t in arrivals if t >= restarted - WINDOW_SECONDS]
    print(
        f"requests {len(arrivals)}; worst {WINDOW_SECONDS:g}-s window {worst:.2f}/s "
        f"(around the kill {worst_window_rate(near_kill):.2f}/s, around the restart "
        f"{worst_window_rate(near_restart):.2f}/s) against a limit of {RATE:g}/s"
    )
    assert shared == {"before": True, "during": False, "after": True}, shared
    assert len(arrivals) >= 0.8 * RATE * 13.0, "the load kept the limit busy"
    assert worst <= RATE * (1 + TOLERANCE), f"worst 5-s window {worst:.2f}/s against {RATE}/s"
    # the backends' transitions are logged once each way: down (WARNING), back (INFO)
    logged = [(r.levelno, r.getMessage()) for r in caplog.records]
    for down, back in [
        ("rate limits kept per process", "rate limits shared again"),
        ("using the in-process front only", "Redis cache at"),
    ]:
        assert len([m for level, m in logged if level == logging.WARNING and down in m]) == 1
        assert [m for level, m in logged if level == logging.INFO and back in m and "back" in m]
