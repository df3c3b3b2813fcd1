"""`OpenAIService` through the real `openai` client against the loopback compatible server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pytest

from operators.config.settings import DEFAULT_PRICES, Settings
from operators.llm.cache import InProcessCache
from operators.llm.pricing import PriceTable
from operators.llm.retry import RetryPolicy
from operators.llm.service import DisabledService, OpenAIService, build_service
from operators.llm.structured import server_schema
from operators.llm.types import LLMCallError, LLMInvalidOutput, LLMUnavailable, Tab
from operators.runtime.runner import call_bound_seconds
from tests.operators.llm.service_calls import RecordingSleep, Verdict, run
from tests.support.fake_outputs import embed_text
from tests.support.openai_server import CHAT_PATH, EMBEDDINGS_PATH, OpenAITestServer

R = TypeVar("R")
MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"
MESSAGES = [
    {"role": "system", "content": "Classify the note."},
    {"role": "user", "content": "The box arrived crushed."},
]


def classify(service: OpenAIService, messages: list[dict[str, str]] = MESSAGES):
    return service.chat_structured(
        messages=messages, response_model=Verdict, model=MODEL, prompt_version="test-v1"
    )


def test_structured_output_usage_and_cost(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    service = OpenAIService(llm_settings())
    result = run(service, lambda: classify(service))
    assert result.value.category == "damaged"
    e = result.enrichment
    assert (e.source, e.model, e.prompt_version) == ("llm", MODEL, "test-v1")
    assert e.tokens_in > 0 and e.tokens_out > 0 and e.latency_ms > 0
    price_in, price_out = DEFAULT_PRICES[MODEL]
    assert e.cost_usd == pytest.approx((e.tokens_in * price_in + e.tokens_out * price_out) / 1e6)
    sent = openai_server.requests[0].body
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Verdict",
            "schema": server_schema(Verdict.model_json_schema()),
            "strict": False,
        },
    }
    assert sent["max_tokens"] == llm_settings().llm.max_tokens
    assert openai_server.requests[0].headers["authorization"] == "Bearer not-needed"


def test_repeat_is_served_from_cache_without_a_request(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    service = OpenAIService(llm_settings())
    first = run(service, lambda: classify(service))
    reordered = [{"content": m["content"], "role": m["role"]} for m in MESSAGES]
    second = run(service, lambda: classify(service, reordered))
    assert openai_server.count(CHAT_PATH) == 1
    assert second.value == first.value
    e = second.enrichment
    assert (e.source, e.outcome, e.tokens_in, e.tokens_out, e.cost_usd) == (
        "cache",
        "cache_hit",
        0,
        0,
        0.0,
    )
    totals = service.ledger.totals()
    assert totals.outcomes == {"success": 1, "cache_hit": 1}
    assert totals.cost_saved_usd == pytest.approx(first.enrichment.cost_usd)
    assert totals.cost_saved_usd > 0


def test_other_prompt_version_is_a_new_call(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    service = OpenAIService(llm_settings())

    async def both() -> None:
        await classify(service)
        await service.chat_structured(
            messages=MESSAGES, response_model=Verdict, model=MODEL, prompt_version="test-v2"
        )

    run(service, both)
    assert openai_server.count(CHAT_PATH) == 2


def test_embeddings_batched_and_cached_per_text(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    service = OpenAIService(llm_settings())
    texts = ["late parcel refund", "vpn is down", "late parcel refund"]
    first = run(service, lambda: service.embed(texts, model=EMBED_MODEL))
    assert openai_server.count(EMBEDDINGS_PATH) == 1
    sent = openai_server.requests[0].body
    assert sent["input"] == ["late parcel refund", "vpn is down"]
    assert sent["encoding_format"] == "base64"
    assert len(first.vectors) == 3 and first.vectors[0] == first.vectors[2]
    assert first.vectors[1] == pytest.approx(embed_text("vpn is down"), abs=1e-6)
    assert first.enrichment.source == "llm" and first.enrichment.tokens_in == 6

    second = run(service, lambda: service.embed(["vpn is down", "new text"], model=EMBED_MODEL))
    assert openai_server.count(EMBEDDINGS_PATH) == 2
    assert openai_server.requests[1].body["input"] == ["new text"]
    assert second.vectors[0] == first.vectors[1]

    third = run(service, lambda: service.embed(["new text", "vpn is down"], model=EMBED_MODEL))
    assert openai_server.count(EMBEDDINGS_PATH) == 2
    assert third.enrichment.source == "cache" and third.enrichment.cost_usd == 0.0
    assert third.vectors == [second.vectors[1], second.vectors[0]]


def test_server_embeddings_are_normalised_and_similar_for_similar_texts(
    openai_server: OpenAITestServer,
) -> None:
    as_float = openai_server.embeddings_response({"input": "a b", "encoding_format": "float"})
    assert as_float["data"][0]["embedding"] == embed_text("a b")
    assert sum(x * x for x in embed_text("a b")) == pytest.approx(1.0)

    def cosine(a: str, b: str) -> float:
        return sum(x * y for x, y in zip(embed_text(a), embed_text(b), strict=True))

    refund = "I want a refund for my order"
    assert cosine(refund, "please refund my order") > cosine(refund, "the vpn server is down")


def test_rate_limit_with_retry_after_then_success(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.rate_limit_next(1, retry_after=0.2)
    settings, sleep = llm_settings(), RecordingSleep()
    service = OpenAIService(settings, retry=RetryPolicy.from_settings(settings.llm, sleep=sleep))
    result = run(service, lambda: classify(service))
    assert sleep.pauses == [0.2], "the retry waited what Retry-After asked"
    assert result.enrichment.source == "llm"
    assert [r.status for r in openai_server.requests] == [429, 200]
    assert (openai_server.calls(CHAT_PATH), openai_server.retries(CHAT_PATH)) == (1, 1)


def test_server_errors_exhausting_retries_raise_call_error(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.fail_next(2, status=500, retry_after=0.01)
    service = OpenAIService(llm_settings(llm_max_retries=1))
    with pytest.raises(LLMCallError, match="500"):
        run(service, lambda: classify(service))
    assert openai_server.count(CHAT_PATH) == 2


def test_malformed_body_gets_one_repair_request(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.malformed_next(1)
    service = OpenAIService(llm_settings())
    result = run(service, lambda: classify(service))
    assert result.value.category == "damaged" and result.enrichment.source == "llm"
    first, repair = openai_server.requests
    assert first.status == 200 and first.fault == "malformed"
    assert repair.body["messages"][: len(MESSAGES)] == MESSAGES
    assert repair.body["messages"][-1]["role"] == "user"
    assert "previous answer" in repair.body["messages"][-1]["content"]


@pytest.mark.parametrize(
    "content",
    ['{"category": "exploded", "message_draft": "x"}', "Sure! It is damaged.", '{"category": 1}'],
)
def test_content_violating_the_schema_twice_is_invalid_and_not_cached(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings], content: str
) -> None:
    openai_server.responder = lambda body: content
    service = OpenAIService(llm_settings())
    for _ in range(2):
        with pytest.raises(LLMInvalidOutput, match="after a repair"):
            run(service, lambda: classify(service))
    assert openai_server.count(CHAT_PATH) == 4, "each call: the answer and one repair"
    repair = openai_server.requests[1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": content}


def test_hung_server_times_out_within_the_bound(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    settings = llm_settings(llm_timeout_seconds=0.3, llm_max_retries=1)
    openai_server.hang_next(2, seconds=5)
    service = OpenAIService(settings)
    started = time.perf_counter()
    with pytest.raises(LLMCallError):
        run(service, lambda: classify(service))
    assert time.perf_counter() - started < call_bound_seconds(settings.llm) + 0.5
    assert openai_server.count(CHAT_PATH) == 2


class BrokenCache:
    """A cache backend that is down."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        raise ConnectionError("cache down")

    async def set_many(self, items: Mapping[str, bytes], ttl_seconds: int) -> None:
        raise ConnectionError("cache down")


def test_failing_cache_degrades_to_uncached_calls(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    service = OpenAIService(llm_settings(), cache=BrokenCache())
    for _ in range(2):
        assert run(service, lambda: classify(service)).enrichment.source == "llm"
    assert openai_server.count(CHAT_PATH) == 2


def test_shared_cache_serves_a_second_service(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    cache = InProcessCache(flow="test", max_entries=100, ttl_seconds=60)
    first, second = (
        OpenAIService(llm_settings(), cache=cache),
        OpenAIService(llm_settings(), cache=cache),
    )
    run(first, lambda: classify(first))
    assert run(second, lambda: classify(second)).enrichment.source == "cache"
    assert cache.stats()["hits"] == 1


def test_build_service_picks_by_settings(llm_settings: Callable[..., Settings]) -> None:
    assert isinstance(build_service(llm_settings()), OpenAIService)
    disabled = build_service(llm_settings(openai_base_url=None, openai_api_key=None))
    assert isinstance(disabled, DisabledService) and not disabled.enabled
    with pytest.raises(LLMUnavailable):
        asyncio.run(disabled.embed(["x"], model=EMBED_MODEL))
    with pytest.raises(LLMUnavailable):
        asyncio.run(
            disabled.chat_structured(
                messages=MESSAGES, response_model=Verdict, model=MODEL, prompt_version="v"
            )
        )


def test_price_table_prices_snapshots_and_warns_once_for_unknown_models(
    caplog: pytest.LogCaptureFixture,
) -> None:
    prices = PriceTable({"gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6)})
    assert prices.cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) == pytest.approx(0.15)
    assert prices.cost("gpt-4o", 0, 1_000_000) == pytest.approx(10.0)
    with caplog.at_level(logging.WARNING, logger="operators.llm.pricing"):
        assert prices.cost("local-model", 1000, 1000) == 0.0
        assert prices.cost("local-model", 1000, 1000) == 0.0
    assert len([r for r in caplog.records if "local-model" in r.getMessage()]) == 1


def test_server_latency_is_configurable(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.latency = lambda: 0.15
    service = OpenAIService(llm_settings())
    result = run(service, lambda: classify(service))
    assert result.enrichment.latency_ms >= 150


def test_an_answer_held_in_process_is_served_on_the_calling_thread(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    """`chat_cached_now` needs no event loop: a miss says None, a held answer is a free hit."""
    service = OpenAIService(llm_settings())
    request: dict[str, Any] = dict(
        messages=MESSAGES, response_model=Verdict, model=MODEL, prompt_version="test-v1"
    )
    assert service.chat_cached_now(**request) is None
    first = run(service, lambda: classify(service))
    held = service.chat_cached_now(**request, key="shipment-1")
    assert held is not None and held.value == first.value
    assert held.enrichment.source == "cache" and held.enrichment.outcome == "cache_hit"
    assert held.enrichment.cost_usd == 0.0
    totals = service.ledger.totals_for("shipment-1")
    assert totals is not None and totals.cost_saved_usd == pytest.approx(first.enrichment.cost_usd)
    assert service.chat_cached_now(**{**request, "prompt_version": "test-v2"}) is None
    assert openai_server.count(CHAT_PATH) == 1
    assert DisabledService().chat_cached_now(**request) is None


def test_embeddings_held_in_process_are_served_on_the_calling_thread(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    """`embed_cached_now` answers only when every text is held; its result is `embed`'s."""
    service = OpenAIService(llm_settings())
    texts = ["vpn is down", "printer jam", "vpn is down"]
    assert service.embed_cached_now(texts, model=EMBED_MODEL) is None
    first = run(service, lambda: service.embed(texts, model=EMBED_MODEL))
    held = service.embed_cached_now(texts, model=EMBED_MODEL, key="session-1")
    assert held is not None and held.vectors == first.vectors
    assert (held.enrichment.source, held.enrichment.outcome) == ("cache", "cache_hit")
    assert held.enrichment.cost_usd == 0.0
    totals = service.ledger.totals_for("session-1")
    assert totals is not None and totals.outcomes == {"cache_hit": 1}
    assert totals.cost_saved_usd > 0
    assert service.embed_cached_now([*texts, "new text"], model=EMBED_MODEL) is None
    assert service.embed_cached_now(texts, model="other-model") is None
    assert openai_server.count(EMBEDDINGS_PATH) == 1
    assert DisabledService().embed_cached_now(texts, model=EMBED_MODEL) is None


def test_answers_served_on_a_tab_are_accounted_when_it_is_settled(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    service = OpenAIService(llm_settings())
    run(service, lambda: classify(service))
    request: dict[str, Any] = dict(
        messages=MESSAGES, response_model=Verdict, model=MODEL, prompt_version="test-v1"
    )
    tab = Tab()
    held = service.chat_cached_now(**request, key="shipment-2", tab=tab)
    assert held is not None and held.enrichment.outcome == "cache_hit"
    assert service.ledger.totals_for("shipment-2") is None and len(tab.records) == 1
    service.settle(tab)
    totals = service.ledger.totals_for("shipment-2")
    assert totals is not None and totals.outcomes == {"cache_hit": 1} and tab.records == []
