"""Tokens of failed calls: an answer the provider was paid for but that could not be used reaches
the ledger, the GenAI token metrics and the output's enrichment (loopback server, real client)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from operators.config.settings import Settings
from operators.llm.metrics import PROVIDER
from operators.llm.service import OpenAIService
from operators.shipments.agent import PROMPT_VERSION, enrich_decision
from operators.tickets.workers import draft_reply, workers_of
from tests.operators.llm.service_calls import sample
from tests.operators.shipments.test_agent import decision
from tests.operators.tickets.test_workers import routed
from tests.support.openai_server import CHAT_PATH, OpenAITestServer

USAGE = (50, 25)
"""What the server reports for each answer: the first and its repair make 100 in, 50 out."""


def tokens(flow: str, model: str, kind: str) -> float:
    """Sum of `gen_ai_client_token_usage` of `flow`'s chat calls of `model`."""
    return sample(
        "gen_ai_client_token_usage_sum",
        flow=flow, gen_ai_operation_name="chat", gen_ai_provider_name=PROVIDER,
        gen_ai_request_model=model, gen_ai_token_type=kind,
    )  # fmt: skip


@pytest.mark.parametrize(
    "answer",
    [
        '{"category": "exploded", "message_draft": "x"}',  # JSON outside the schema
        '{"category": "damaged", "message_dr',  # cut mid-JSON, as at max_tokens
    ],
    ids=["invalid", "cut"],
)
def test_an_invalid_answer_is_paid_in_the_ledger_the_metrics_and_the_decision(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings], answer: str
) -> None:
    openai_server.usage = USAGE
    openai_server.responder = lambda body: answer
    settings = llm_settings()
    flow = f"paid-invalid-{len(answer)}"
    service = OpenAIService(settings, flow=flow)
    model = settings.llm.model_classify
    before = (tokens(flow, model, "input"), tokens(flow, model, "output"))

    async def enrich():  # type: ignore[no-untyped-def]
        try:
            return await enrich_decision(decision(), service=service, llm=settings.llm)
        finally:
            await service.aclose()

    enriched = asyncio.run(enrich())
    assert openai_server.count(CHAT_PATH) == 2, "the answer and its repair"
    e = enriched.enrichment
    assert e is not None
    assert (e.source, e.outcome, e.fallback_reason) == ("rules", "fallback", "invalid_output")
    assert (e.tokens_in, e.tokens_out, e.model) == (100, 50, model)
    price_in, price_out = settings.llm.prices[model]
    assert e.cost_usd == pytest.approx((100 * price_in + 50 * price_out) / 1e6)
    assert e.prompt_version != PROMPT_VERSION, "the text is the rules', not the prompt's"
    totals = service.ledger.totals_for("SHP-1")
    assert totals is not None and (totals.tokens_in, totals.tokens_out) == (100, 50)
    assert totals.cost_usd == pytest.approx(e.cost_usd) and totals.outcomes == {"failure": 1}
    after = (tokens(flow, model, "input"), tokens(flow, model, "output"))
    assert (after[0] - before[0], after[1] - before[1]) == (100, 50)


def test_an_invalid_reply_is_paid_in_the_ticket_enrichment(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.usage = USAGE
    openai_server.responder = lambda body: "Sure! Here is your reply."  # no JSON at all
    settings = llm_settings()
    service = OpenAIService(settings, flow="paid-reply")
    ticket = routed("order_status", "Where is my order 12345?")

    async def drafted():  # type: ignore[no-untyped-def]
        try:
            return await draft_reply(ticket, service=service, llm=settings.llm)
        finally:
            await service.aclose()

    e = asyncio.run(drafted()).enrichment
    assert (e.source, e.fallback_reason, e.tokens_in, e.tokens_out) == (
        "rules", "invalid_output", 100, 50,
    )  # fmt: skip
    assert e.model == workers_of(settings.llm)["order_status"].model


def test_a_caller_that_joined_a_failed_call_is_not_charged_for_it(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    """Identical decisions in flight make one call: its invalid answer is paid once."""
    openai_server.usage = USAGE
    openai_server.latency = 0.2
    openai_server.responder = lambda body: '{"category": "exploded", "message_draft": "x"}'
    settings = llm_settings()
    service = OpenAIService(settings, flow="paid-joined")

    async def both():  # type: ignore[no-untyped-def]
        try:
            return await asyncio.gather(
                enrich_decision(decision(), service=service, llm=settings.llm),
                enrich_decision(decision(decision_id="D-2"), service=service, llm=settings.llm),
            )
        finally:
            await service.aclose()

    paid = sorted((d.enrichment.tokens_in, d.enrichment.tokens_out) for d in asyncio.run(both()))
    assert openai_server.count(CHAT_PATH) == 2
    assert paid == [(0, 0), (100, 50)]
    totals = service.ledger.totals("paid-joined")
    assert (totals.tokens_in, totals.tokens_out) == (100, 50)


def test_a_repair_that_fails_still_bills_the_answer_it_repaired(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.usage = USAGE
    openai_server.violate_schema_next(1, content='{"category": "exploded"}')
    openai_server.fail_next(2, status=500)  # the repair and its retry
    settings = llm_settings()
    service = OpenAIService(settings, flow="paid-repair-failed")

    async def enrich():  # type: ignore[no-untyped-def]
        try:
            return await enrich_decision(decision(), service=service, llm=settings.llm)
        finally:
            await service.aclose()

    e = asyncio.run(enrich()).enrichment
    assert openai_server.count(CHAT_PATH) == 3
    assert e is not None
    assert (e.source, e.fallback_reason, e.tokens_in, e.tokens_out) == (
        "rules", "call_error", 50, 25,
    )  # fmt: skip


def test_a_valid_reply_the_agent_refuses_is_billed_in_the_template_reply(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    """A blank reply validates (`min_length=1`) but is no answer: the template stands in, paid."""
    openai_server.usage = USAGE
    openai_server.responder = lambda body: '{"reply": "   "}'
    settings = llm_settings()
    service = OpenAIService(settings, flow="paid-blank-reply")
    ticket = routed("order_status", "Where is my order 12345?")

    async def drafted():  # type: ignore[no-untyped-def]
        try:
            return await draft_reply(ticket, service=service, llm=settings.llm)
        finally:
            await service.aclose()

    e = asyncio.run(drafted()).enrichment
    assert openai_server.count(CHAT_PATH) == 1
    assert (e.source, e.fallback_reason, e.tokens_in, e.tokens_out) == (
        "rules", "invalid_output", 50, 25,
    )  # fmt: skip
