"""The tickets flow over the loopback server when its LLM calls fail: every response says why in
its enrichments, and tokens paid for unusable answers are in the output and the metrics."""

from __future__ import annotations

from collections import Counter
from functools import partial

import pytest

from flows.tickets import build_flow as build_tickets
from operators.config.settings import Settings
from operators.llm.metrics import PROVIDER
from operators.tickets.lexical import ROUTES
from operators.tickets.surge import iter_ticket_surge
from schemas import TicketResponse
from tests.flows.flow_runs import run_flow
from tests.operators.llm.service_calls import sample
from tests.support.openai_server import CHAT_PATH, OpenAITestServer

pytestmark = pytest.mark.dataflow

ROUTE_MODEL = "route-model"
REPLY_MODEL = "reply-model"


def chat_tokens(model: str, kind: str) -> float:
    return sample(
        "gen_ai_client_token_usage_sum",
        flow="tickets", gen_ai_operation_name="chat", gen_ai_provider_name=PROVIDER,
        gen_ai_request_model=model, gen_ai_token_type=kind,
    )  # fmt: skip


def test_failed_router_fallback_and_unusable_replies_are_named_and_paid(
    openai_server: OpenAITestServer, llm_settings
) -> None:
    openai_server.fail_model(ROUTE_MODEL, status=500)  # the router's LLM path fails
    openai_server.usage = (50, 25)
    openai_server.responder = lambda body: "Sure, happy to help!"  # replies that are no JSON
    settings: Settings = llm_settings(
        llm_model_route=ROUTE_MODEL, llm_model_reply=REPLY_MODEL, llm_model_fallback="",
        llm_route_models=dict.fromkeys(ROUTES, REPLY_MODEL),
        llm_breaker_failures=2, router_confidence_threshold=1.0,
    )  # fmt: skip
    before = (chat_tokens(REPLY_MODEL, "input"), chat_tokens(REPLY_MODEL, "output"))
    generated = partial(iter_ticket_surge, seed=5, steady_events=12, burst_factor=2)
    run = run_flow(build_tickets, settings, generated)
    responses = [TicketResponse.model_validate(r) for r in run.by_topic["tickets.responses"]]
    assert responses

    lexical = [r for r in responses if r.route_method == "lexical"]
    assert lexical, Counter(r.route_method for r in responses)
    reasons = Counter(r.route_enrichment.fallback_reason for r in lexical if r.route_enrichment)
    assert sum(reasons.values()) == len(lexical), "every failed fallback is named"
    assert set(reasons) <= {"call_error", "breaker_open"} and reasons["call_error"] > 0, reasons
    for r in lexical:
        assert r.route_enrichment is not None and r.route_enrichment.outcome == "fallback"

    replies = Counter((r.enrichment.fallback_reason, r.enrichment.tokens_in) for r in responses)
    paid = [r.enrichment for r in responses if r.enrichment.tokens_in]
    assert replies[("invalid_output", 100)] > 0, replies
    assert all((e.tokens_in, e.tokens_out, e.model) == (100, 50, REPLY_MODEL) for e in paid)
    assert openai_server.count(CHAT_PATH) > 0
    after = (chat_tokens(REPLY_MODEL, "input"), chat_tokens(REPLY_MODEL, "output"))
    # what the metrics counted for the replies is what the outputs carry (no call was merged)
    assert after[0] - before[0] == sum(e.tokens_in for e in paid)
    assert after[1] - before[1] == sum(e.tokens_out for e in paid)
