"""`OpenAIService`'s guards through the real client, the loopback server and real Redis.

Budgets (fallback model, then the rules; no overshoot under concurrency), merging of identical
calls in flight, the provider's request/token limits, micro-batched embeddings, a Redis stopped
mid-run, and the metrics as Prometheus' default registry exposes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from operators.config.settings import Settings
from operators.llm.admission import estimate_prompt_tokens
from operators.llm.cache import canonical_json
from operators.llm.limits import LocalRateLimiter
from operators.llm.service import OpenAIService
from operators.llm.structured import response_format
from operators.llm.types import BudgetExhausted, LLMCallError, RateLimitWait
from scripts.redis_server import RedisServer
from tests.operators.llm.service_calls import (
    MODEL,
    StandingClock,
    Verdict,
    classify,
    gather_outcomes,
    messages,
    run,
    sample,
)
from tests.support.openai_server import CHAT_PATH, EMBEDDINGS_PATH, OpenAITestServer

PRICES = {MODEL: (1000.0, 1000.0), "cheap-model": (0.01, 0.01)}
"""An expensive configured model and a cheap fallback (USD per 1M tokens)."""


def reserved_tokens(note: str, max_tokens: int) -> int:
    """What the service reserves for `classify(note)`: its prompt estimate plus `max_tokens`."""
    schema = canonical_json(response_format(Verdict))
    return estimate_prompt_tokens(messages(note), schema) + max_tokens


def test_spent_budget_moves_calls_to_the_fallback_model_then_to_the_rules(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    settings = llm_settings(
        llm_prices=PRICES, llm_model_fallback="cheap-model", llm_budget_usd_per_minute=0.05
    )
    service = OpenAIService(settings, flow="budget-fallback")
    result = run(service, lambda: classify(service, key="SHP-7"))
    e = result.enrichment
    assert (e.source, e.model, e.outcome, e.fallback_reason) == (
        "llm",
        "cheap-model",
        "fallback",
        "budget",
    )
    assert [r.body["model"] for r in openai_server.requests] == ["cheap-model"]

    tight = llm_settings(llm_model_fallback="cheap-model", llm_budget_tokens_per_minute=100)
    broke = OpenAIService(tight, flow="budget-rules")
    with pytest.raises(BudgetExhausted) as raised:
        run(broke, lambda: classify(broke))
    assert raised.value.reason == "budget"
    assert openai_server.count(CHAT_PATH) == 1, "nothing was sent for the denied call"


def test_concurrent_calls_never_reserve_more_than_the_budget(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.latency = 0.2
    notes = [f"The box number {i} arrived crushed." for i in range(10)]
    worst = max(reserved_tokens(note, 300) for note in notes)
    settings = llm_settings(
        llm_model_fallback=None, llm_max_tokens=300, llm_budget_tokens_per_minute=int(3.5 * worst)
    )
    service = OpenAIService(settings, flow="budget-race")

    async def work():
        outcomes = await gather_outcomes(*(classify(service, note) for note in notes))
        later = await classify(service, "Another box arrived crushed.")
        return outcomes, later

    outcomes, later = run(service, work)
    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(answered) == 3 and openai_server.peak_in_flight == 3
    assert all(isinstance(o, BudgetExhausted) for o in outcomes if o not in answered)
    assert later.enrichment.source == "llm", "unused reservations were given back"
    assert openai_server.count(CHAT_PATH) == 4


def test_identical_calls_in_flight_make_one_provider_call(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.latency = 0.2
    service = OpenAIService(llm_settings(), flow="merging")
    results = run(service, lambda: asyncio.gather(*(classify(service) for _ in range(8))))
    assert openai_server.count(CHAT_PATH) == 1
    outcomes = sorted((r.enrichment.source, r.enrichment.outcome) for r in results)
    assert outcomes == [("cache", "merged")] * 7 + [("llm", "success")]
    paid = next(r.enrichment.cost_usd for r in results if r.enrichment.source == "llm")
    assert all(r.enrichment.cost_usd == 0 for r in results if r.enrichment.source == "cache")
    totals = service.ledger.totals("merging")
    assert totals.cost_usd == pytest.approx(paid)
    assert totals.cost_saved_usd == pytest.approx(7 * paid)
    assert totals.outcomes == {"success": 1, "merged": 7}


def test_a_merged_failure_reaches_every_caller_once(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.latency = 0.1
    openai_server.fail_next(5, status=500)
    service = OpenAIService(llm_settings(llm_max_retries=0))
    outcomes = run(service, lambda: gather_outcomes(*(classify(service) for _ in range(5))))
    assert all(isinstance(o, LLMCallError) for o in outcomes)
    assert openai_server.count(CHAT_PATH) == 1


def test_cancelled_caller_leaves_its_call_running_for_the_cache(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.latency = 0.3
    service = OpenAIService(llm_settings())

    async def work() -> None:
        loop, me = asyncio.get_running_loop(), asyncio.current_task()
        deadline = loop.time() + 10.0
        task = asyncio.ensure_future(classify(service))
        while openai_server.count(CHAT_PATH) == 0 and loop.time() < deadline:
            await asyncio.sleep(0.01)  # until the call reaches the server (answered in 0.3 s)
        task.cancel()
        # the call goes on without its caller: wait for it (no sleep that must be long enough)
        while any(t is not me for t in asyncio.all_tasks()) and loop.time() < deadline:
            await asyncio.sleep(0.01)

    run(service, work)
    assert run(service, lambda: classify(service)).enrichment.source == "cache"
    assert openai_server.count(CHAT_PATH) == 1


def test_request_limit_paces_calls_and_sends_the_rest_to_the_rules(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    settings = llm_settings(
        llm_requests_per_minute=120,  # one every 0.5 s
        llm_rate_burst_seconds=0.5,  # one at once
        llm_max_limiter_wait_seconds=0.75,
    )
    # The limiter's clock stands still: the three reservations are planned 0, 0.5 and 1.0 s
    # ahead whatever the load; the third would wait over 0.75 s and goes to the rules.
    clock = StandingClock()
    service = OpenAIService(settings, flow="rpm", limiter=LocalRateLimiter(clock=clock))

    async def work():
        return await gather_outcomes(*(classify(service, f"box {i} crushed") for i in range(3)))

    outcomes = run(service, work)
    assert [type(o).__name__ for o in outcomes].count("ChatResult") == 2
    denied = [o for o in outcomes if isinstance(o, RateLimitWait)]
    assert len(denied) == 1 and denied[0].reason == "rate_limit_wait"
    assert len(openai_server.requests) == 2
    # Measured from the second reservation (not from the first request's arrival, which a busy
    # machine delays): the second request is sent only after its 0.5 s, and not long after.
    waited = max(r.at for r in openai_server.requests) - clock.read_at[1]
    assert 0.5 - 0.01 <= waited < 0.5 + 2.0, "the second request waited for its turn"


def test_token_limit_makes_a_call_wait_before_it_is_sent(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    notes = ["box one crushed", "box two crushed", "box six crushed"]
    tokens = [reserved_tokens(note, 300) for note in notes]
    tpm = int(sum(tokens) / 1.01)  # the third call waits about 60 * 0.01 = 0.6 s
    settings = llm_settings(
        llm_tokens_per_minute=tpm, llm_rate_burst_seconds=60, llm_max_limiter_wait_seconds=2.0
    )
    # A standing limiter clock: the first two reservations fit the burst, the third is planned
    # 0.6 s ahead, whatever the load.
    clock = StandingClock()
    service = OpenAIService(settings, flow="tpm", limiter=LocalRateLimiter(clock=clock))
    waited_before = sample("surgeflow_llm_limiter_wait_seconds_sum", flow="tpm")
    run(service, lambda: asyncio.gather(*(classify(service, note) for note in notes)))
    assert len(openai_server.requests) == 3
    last = max(r.at for r in openai_server.requests) - clock.read_at[2]
    assert 0.6 - 0.01 <= last < 0.6 + 2.0, "the third call waited its 0.6 s before it was sent"
    waited = sample("surgeflow_llm_limiter_wait_seconds_sum", flow="tpm") - waited_before
    assert 0.6 - 0.01 <= waited < 0.6 + 0.5, "only the third call waited"


def test_embeddings_of_concurrent_calls_share_one_request(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    service = OpenAIService(llm_settings(embed_batch_wait_seconds=0.05), flow="embed-batch")
    texts = [["late parcel"], ["vpn is down", "late parcel"], ["refund please"]]

    async def work():
        return await asyncio.gather(
            *(service.embed(t, model="text-embedding-3-small", key=f"T-{i}") for i, t in
              enumerate(texts))
        )  # fmt: skip

    results = run(service, work)
    assert openai_server.count(EMBEDDINGS_PATH) == 1
    assert sorted(openai_server.requests[0].body["input"]) == [
        "late parcel",
        "refund please",
        "vpn is down",
    ]
    assert results[1].vectors[1] == results[0].vectors[0]
    sent = [r.enrichment for r in results]
    assert sum(e.tokens_in for e in sent) == 7 and all(e.source in ("llm", "cache") for e in sent)


@pytest.mark.redis
def test_service_keeps_answering_when_redis_stops(
    openai_server: OpenAITestServer,
    llm_settings: Callable[..., Settings],
    redis_server: RedisServer,
) -> None:
    settings = llm_settings(
        redis_url=redis_server.url,
        llm_requests_per_minute=1000,
        llm_tokens_per_minute=1_000_000,
        llm_budget_tokens_per_minute=1_000_000,
        redis_retry_seconds=30,
    )
    service = OpenAIService(settings, flow="redis-outage")

    async def work():
        first = await classify(service)
        shared = service.limiter.shared
        redis_server.stop()
        second = await classify(service, "The parcel is lost.")
        replay = await classify(service)
        return first, shared, second, replay

    first, shared, second, replay = run(service, work)
    assert shared and not service.limiter.shared
    sources = (first.enrichment.source, second.enrichment.source, replay.enrichment.source)
    assert sources == ("llm", "llm", "cache")
    assert openai_server.count(CHAT_PATH) == 2


def test_metrics_are_exposed_in_the_default_registry(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.fail_next(1, status=500)
    service = OpenAIService(
        llm_settings(llm_max_retries=1, llm_retry_initial_seconds=0.01), flow="metrics"
    )

    async def work() -> None:
        await classify(service)
        await classify(service)
        await service.embed(["metrics text"], model="text-embedding-3-small")

    run(service, work)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest().decode())}

    def labels(family: str, **wanted: str) -> list[dict[str, str]]:
        found = [s.labels for s in families[family].samples]
        return [s for s in found if all(s.get(k) == v for k, v in wanted.items())]

    chat = {"flow": "metrics", "gen_ai_operation_name": "chat", "gen_ai_request_model": MODEL}
    assert labels("gen_ai_client_operation_duration_seconds", **chat, error_type="500")
    assert labels("gen_ai_client_operation_duration_seconds", **chat, error_type="")
    assert labels("gen_ai_client_token_usage", **chat, gen_ai_token_type="output")
    assert labels("gen_ai_client_token_usage", flow="metrics", gen_ai_operation_name="embeddings")
    assert labels("surgeflow_llm_calls", flow="metrics", operation="chat", outcome="success")
    assert labels("surgeflow_llm_calls", flow="metrics", operation="chat", outcome="cache_hit")
    assert labels("surgeflow_llm_calls", flow="metrics", operation="embeddings")
    assert labels("surgeflow_llm_retries", flow="metrics", operation="chat", reason="server_error")
    assert labels("surgeflow_llm_cost_usd", flow="metrics", gen_ai_request_model=MODEL)
    assert labels("surgeflow_llm_cost_saved_usd", flow="metrics", gen_ai_request_model=MODEL)
    assert labels("surgeflow_llm_concurrency_limit", flow="metrics")
    assert labels("surgeflow_llm_in_flight", flow="metrics")
    assert labels("surgeflow_llm_limiter_wait_seconds", flow="metrics")
    assert labels("surgeflow_llm_limiter_backend_up", flow="metrics")
    assert labels("surgeflow_llm_breaker_state", flow="metrics", gen_ai_request_model=MODEL)
    assert labels("surgeflow_cache_lookups", flow="metrics", backend="memory", result="hit")
