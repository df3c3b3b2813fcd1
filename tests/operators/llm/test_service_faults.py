"""`OpenAIService` under provider faults, through the real client and the loopback server.

429 storms with `Retry-After`, 5xx bursts, hung requests, unusable answers and the repair, and
the circuit breaker (with a fake clock): each test reads what reached the server from its log.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from operators.config.settings import Settings
from operators.llm.breaker import Breakers, State
from operators.llm.retry import RetryPolicy
from operators.llm.service import OpenAIService
from operators.llm.types import BreakerOpen, LLMCallError, LLMInvalidOutput, LLMTimeout
from tests.operators.llm.service_calls import (
    MODEL,
    FakeClock,
    RecordingSleep,
    classify,
    gather_outcomes,
    run,
    sample,
)
from tests.support.openai_server import CHAT_PATH, OpenAITestServer

FAST_RETRIES = {"llm_retry_initial_seconds": 0.01, "llm_retry_max_seconds": 0.05}


def test_rate_limit_storm_is_paced_by_retry_after_and_cuts_concurrency(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.rate_limit_next(2, retry_after=0.3)
    settings = llm_settings(llm_max_retries=2, llm_retry_max_seconds=1.0, llm_max_concurrency=20)
    sleep = RecordingSleep()
    retry = RetryPolicy.from_settings(settings.llm, sleep=sleep)
    service = OpenAIService(settings, flow="storm", retry=retry)
    retried = sample(
        "surgeflow_llm_retries_total", flow="storm", operation="chat", reason="rate_limited"
    )

    async def work():
        result = await classify(service)
        return result, service.caller.concurrency().limit

    result, limit = run(service, work)
    assert result.enrichment.source == "llm" and result.enrichment.outcome == "success"
    log = openai_server.requests
    assert [r.status for r in log] == [429, 429, 200]
    assert [r.retry_count for r in log] == [0, 1, 2]
    assert sleep.pauses == [0.3, 0.3], "each retry waited what Retry-After asked"
    assert limit < 20, "a 429 cuts the concurrency limit"
    assert sample(
        "surgeflow_llm_retries_total", flow="storm", operation="chat", reason="rate_limited"
    ) == (retried + 2)


def test_rate_limit_storm_longer_than_the_retries_falls_back(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.rate_limit_next(10, retry_after_ms=20, retry_after=None)
    service = OpenAIService(llm_settings(llm_max_retries=2), flow="storm-long")
    with pytest.raises(LLMCallError, match="429"):
        run(service, lambda: classify(service))
    assert openai_server.attempts_per_call(CHAT_PATH) == [3]


def test_retry_after_beyond_the_cap_is_not_waited_for(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.rate_limit_next(1, retry_after=30)
    service = OpenAIService(llm_settings(llm_max_retries=3, llm_retry_max_seconds=1.0))
    started = time.perf_counter()
    with pytest.raises(LLMCallError, match="429"):
        run(service, lambda: classify(service))
    assert time.perf_counter() - started < 1.0
    assert openai_server.count(CHAT_PATH) == 1


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_failing_server_gets_exactly_retries_plus_one_attempts(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings], retries: int
) -> None:
    openai_server.fail_next(20, status=503)
    service = OpenAIService(llm_settings(llm_max_retries=retries, **FAST_RETRIES))
    with pytest.raises(LLMCallError, match="503"):
        run(service, lambda: classify(service))
    assert openai_server.attempts_per_call(CHAT_PATH) == [retries + 1]
    assert [r.retry_count for r in openai_server.requests] == list(range(retries + 1))


def test_server_error_burst_within_the_retries_succeeds(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.fail_next(1, status=502)
    openai_server.fail_next(1, status=500)
    service = OpenAIService(llm_settings(llm_max_retries=2, **FAST_RETRIES))
    failed = sample(
        "gen_ai_client_operation_duration_seconds_count",
        flow="default",
        gen_ai_operation_name="chat",
        gen_ai_provider_name="openai",
        gen_ai_request_model=MODEL,
        error_type="502",
    )
    result = run(service, lambda: classify(service))
    assert result.enrichment.source == "llm"
    assert [r.status for r in openai_server.requests] == [502, 500, 200]
    assert (
        sample(
            "gen_ai_client_operation_duration_seconds_count",
            flow="default",
            gen_ai_operation_name="chat",
            gen_ai_provider_name="openai",
            gen_ai_request_model=MODEL,
            error_type="502",
        )
        == failed + 1
    )


def test_hung_attempt_times_out_and_the_retry_answers(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.hang_next(1, seconds=5)
    service = OpenAIService(
        llm_settings(llm_timeout_seconds=0.3, llm_max_retries=1, **FAST_RETRIES)
    )
    timeouts = sample(
        "surgeflow_llm_retries_total", flow="default", operation="chat", reason="timeout"
    )
    started = time.perf_counter()
    result = run(service, lambda: classify(service))
    elapsed = time.perf_counter() - started
    assert result.enrichment.source == "llm"
    assert elapsed < 0.3 + 2.0, "given up at its timeout, not at the end of the 5 s hang"
    retried = sample(
        "surgeflow_llm_retries_total", flow="default", operation="chat", reason="timeout"
    )
    assert retried == timeouts + 1, "retried because the first attempt timed out"
    assert [r.retry_count for r in openai_server.requests] == [0, 1]


def test_every_attempt_hanging_is_a_timeout_within_the_timeouts(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.hang_next(3, seconds=5)
    service = OpenAIService(
        llm_settings(llm_timeout_seconds=0.3, llm_max_retries=1, **FAST_RETRIES)
    )
    started = time.perf_counter()
    with pytest.raises(LLMTimeout, match=r"no answer within 0\.3 s") as raised:
        run(service, lambda: classify(service))
    assert raised.value.reason == "timeout" and isinstance(raised.value, LLMCallError)
    assert time.perf_counter() - started < 2 * 0.3 + 0.5
    assert openai_server.count(CHAT_PATH) == 2


@pytest.mark.parametrize(
    "content",
    ['{"category": "exploded", "message_draft": "x"}', '{"unexpected": true}', "It is damaged."],
)
def test_unusable_answer_is_repaired_once_and_the_repair_is_cached(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings], content: str
) -> None:
    openai_server.violate_schema_next(1, content=content)
    service = OpenAIService(llm_settings(), flow="repair")
    result = run(service, lambda: classify(service, key="SHP-1"))
    assert result.value.category == "damaged"
    first, repair = openai_server.requests
    sent = repair.body["messages"]
    assert sent[-2] == {"role": "assistant", "content": content}
    assert sent[-1]["role"] == "user" and "JSON object" in sent[-1]["content"]
    e = result.enrichment
    assert e.source == "llm" and e.outcome == "success"
    totals = service.ledger.totals_for("SHP-1")
    assert totals is not None and totals.tokens_in == e.tokens_in and totals.calls == 1
    assert e.tokens_in == sum(_prompt_tokens(r.body) for r in (first, repair)), "both paid"
    replay = run(service, lambda: classify(service))
    assert replay.enrichment.source == "cache" and openai_server.count(CHAT_PATH) == 2


def test_answer_still_invalid_after_the_repair_goes_to_the_rules(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.violate_schema_next(2, content='{"category": "exploded"}')
    service = OpenAIService(llm_settings(), flow="repair-fails")
    before = sample(
        "surgeflow_llm_fallbacks_total",
        flow="repair-fails",
        reason="invalid_output",
        target="rules",
    )
    with pytest.raises(LLMInvalidOutput) as raised:
        run(service, lambda: classify(service, key="SHP-2"))
    assert raised.value.reason == "invalid_output"
    assert openai_server.count(CHAT_PATH) == 2
    totals = service.ledger.totals_for("SHP-2")
    assert totals is not None and totals.outcomes == {"failure": 1}
    assert totals.tokens_in > 0 and totals.cost_usd > 0, "the invalid answers were paid for"
    after = sample(
        "surgeflow_llm_fallbacks_total",
        flow="repair-fails",
        reason="invalid_output",
        target="rules",
    )
    assert after == before + 1


def test_breaker_opens_after_failed_calls_and_half_opens_to_probe(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    clock = FakeClock()
    settings = llm_settings(llm_max_retries=0, llm_breaker_failures=2)
    breakers = Breakers(flow="breaker", failures=2, reset_seconds=30, clock=clock)
    service = OpenAIService(settings, flow="breaker", breakers=breakers)
    openai_server.fail_model(MODEL, status=500)

    async def work() -> None:
        for note in ("one", "two"):
            with pytest.raises(LLMCallError):
                await classify(service, note)
        assert breakers[MODEL].state is State.OPEN
        with pytest.raises(BreakerOpen):
            await classify(service, "three")
        assert openai_server.count(CHAT_PATH) == 2, "an open breaker sends nothing"
        assert (
            sample("surgeflow_llm_breaker_state", flow="breaker", gen_ai_request_model=MODEL) == 2
        )

        clock.advance(30)
        openai_server.clear_model(MODEL)
        openai_server.latency = 0.2
        probe, other = await gather_outcomes(classify(service, "four"), classify(service, "five"))
        assert not isinstance(probe, BaseException) and probe.enrichment.source == "llm"
        assert isinstance(other, BreakerOpen), "only one probe while half-open"
        assert breakers[MODEL].state is State.CLOSED
        assert (await classify(service, "six")).enrichment.source == "llm"

    run(service, work)
    assert openai_server.count(CHAT_PATH) == 4


def test_failed_probe_opens_the_breaker_again(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    clock = FakeClock()
    breakers = Breakers(flow="breaker", failures=1, reset_seconds=10, clock=clock)
    service = OpenAIService(llm_settings(llm_max_retries=0), flow="breaker", breakers=breakers)
    openai_server.fail_model(MODEL, status=503)

    async def work() -> None:
        with pytest.raises(LLMCallError):
            await classify(service, "one")
        clock.advance(10)
        with pytest.raises(LLMCallError):
            await classify(service, "probe")
        assert breakers[MODEL].state is State.OPEN
        clock.advance(5)
        with pytest.raises(BreakerOpen):
            await classify(service, "too early")

    run(service, work)
    assert openai_server.count(CHAT_PATH) == 2


def _prompt_tokens(body: dict) -> int:
    """What the test server charges for a request's prompt (see `fake_outputs`)."""
    text = " ".join(str(m.get("content", "")) for m in body["messages"])
    return max(len(text.split()), 1) + 4 * len(body["messages"])
