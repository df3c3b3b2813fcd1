"""A hung endpoint, through the real client and the loopback server's hang mode.

Every request hangs: the timed-out attempts open the breaker, every item falls back within one
attempt timeout (plus a margin) labelled `timeout` (its own attempt timed out) or `breaker_open`
(it never reached the endpoint), never `rate_limit_wait` when no rate limit is set. When the
endpoint answers again, the breaker's probe closes it and the concurrency limit the timeouts cut
returns to the configured maximum, even under a light load.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

from operators.config.settings import Settings
from operators.llm.breaker import State
from operators.llm.service import OpenAIService
from operators.llm.types import LLMError
from tests.operators.llm.service_calls import MODEL, classify, run
from tests.support.openai_server import CHAT_PATH, OpenAITestServer

TIMEOUT = 1.0
CONCURRENCY = 16
ITEMS = 40
BREAKER_FAILURES = 3
MARGIN = 1.5
"""Scheduling slack on a shared machine, on top of the documented bound."""


def test_a_hung_endpoint_opens_the_breaker_and_the_limit_recovers_after_it(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    settings = llm_settings(
        llm_timeout_seconds=TIMEOUT,
        llm_max_retries=2,
        llm_retry_initial_seconds=0.01,
        llm_retry_max_seconds=0.05,
        llm_max_concurrency=CONCURRENCY,
        llm_breaker_failures=BREAKER_FAILURES,
        llm_breaker_reset_seconds=1.0,
        llm_max_limiter_wait_seconds=10.0,
    )
    service = OpenAIService(settings, flow="hung")
    bound = TIMEOUT + settings.llm.retry_max_seconds + MARGIN

    async def timed(note: str) -> tuple[float, str]:
        started = time.perf_counter()
        try:
            result = await classify(service, note)
            outcome = result.enrichment.source
        except LLMError as exc:
            outcome = exc.reason
        return time.perf_counter() - started, outcome

    async def work() -> dict[str, object]:
        seen: dict[str, object] = {}
        openai_server.hang_next(10_000, seconds=60)
        hung = await asyncio.gather(*(timed(f"hung item {i}") for i in range(ITEMS)))
        concurrency = service.caller.concurrency()
        seen["hung"] = hung
        seen["hung_requests"] = openai_server.count(CHAT_PATH)
        seen["state"] = service.breakers[MODEL].state
        seen["cut_to"] = concurrency.limit

        openai_server.clear_faults()  # the endpoint answers again
        await asyncio.sleep(settings.llm.breaker_reset_seconds)
        limits, outcomes = [], []
        deadline = time.monotonic() + 10.0
        n = 0
        while time.monotonic() < deadline and concurrency.limit < CONCURRENCY:
            n += 1  # a light load: two calls at a time
            pair = await asyncio.gather(timed(f"after {n} a"), timed(f"after {n} b"))
            outcomes += [outcome for _, outcome in pair]
            limits.append(concurrency.limit)
            await asyncio.sleep(0.1)
        seen["recovered_to"] = concurrency.limit
        seen["after"] = Counter(outcomes)
        seen["recovery_seconds"] = 10.0 - (deadline - time.monotonic())
        seen["closed"] = service.breakers[MODEL].state
        return seen

    seen = run(service, work)
    hung = seen["hung"]
    assert isinstance(hung, list)
    reasons = Counter(outcome for _, outcome in hung)
    slowest = max(elapsed for elapsed, _ in hung)
    print(
        f"hung: {dict(reasons)}, slowest item {slowest:.2f} s, {seen['hung_requests']} requests, "
        f"breaker {seen['state']!r}; limit cut to {seen['cut_to']}, back to "
        f"{seen['recovered_to']} after {seen['recovery_seconds']:.1f} s ({dict(seen['after'])})"
    )
    assert set(reasons) <= {"timeout", "breaker_open"} and reasons["timeout"] >= 1, reasons
    assert seen["state"] is State.OPEN
    # the first wave, then at most a retry and a waiter per failure before the breaker opened,
    # and a probe: the breaker stopped the rest
    assert seen["hung_requests"] <= CONCURRENCY + 2 * BREAKER_FAILURES + 1
    assert slowest <= bound, f"an item waited {slowest:.1f} s (bound {bound:.1f} s)"
    assert seen["closed"] is State.CLOSED and seen["after"]["llm"] >= 1
    assert seen["cut_to"] < CONCURRENCY, "the timeouts cut the concurrency limit"
    assert seen["recovered_to"] == CONCURRENCY, "the limit returned to the configured maximum"
