"""Both flows against the loopback OpenAI-compatible server through the real openai client."""

from __future__ import annotations

from collections import Counter
from functools import partial

import pytest

from flows.shipments import build_flow as build_shipments
from flows.tickets import build_flow as build_tickets
from operators.config.settings import Settings
from operators.shipments.surge import iter_shipment_surge
from operators.tickets.surge import iter_ticket_surge
from schemas import ShipmentDecision, TicketResponse
from tests.flows.flow_runs import run_flow
from tests.support.openai_server import CHAT_PATH, EMBEDDINGS_PATH, OpenAITestServer

pytestmark = pytest.mark.dataflow


def test_shipments_decisions_are_enriched_by_the_llm_and_the_cache(
    openai_server: OpenAITestServer, llm_settings
) -> None:
    settings: Settings = llm_settings(
        surge_steady_events=60, kafka_bootstrap_servers=None, redis_url=None
    )
    generated = partial(iter_shipment_surge, seed=3, steady_events=60, burst_factor=10)
    run = run_flow(build_shipments, settings, generated)
    decisions = [ShipmentDecision.model_validate(d) for d in run.by_topic["shipments.decisions"]]
    sources = Counter(d.enrichment.source for d in decisions)
    assert sources["llm"] > 0 and sources["rules"] > 0
    calls = openai_server.count(CHAT_PATH)
    assert 0 < calls == sources["llm"], "one provider call per llm-sourced decision"
    for d in decisions:
        if d.enrichment.source == "llm":
            assert d.enrichment.model and d.enrichment.tokens_in > 0 and d.enrichment.cost_usd > 0
            assert d.action != "ok" or d.notes
        if d.enrichment.source == "rules":
            assert d.enrichment.tokens_in == 0 and d.enrichment.cost_usd == 0
    assert sources["cache"] > 0, "identical situations should be served from the cache"


def test_tickets_are_routed_and_answered_through_the_llm(
    openai_server: OpenAITestServer, llm_settings
) -> None:
    settings: Settings = llm_settings(kafka_bootstrap_servers=None, redis_url=None)
    generated = partial(iter_ticket_surge, seed=3, steady_events=30, burst_factor=4)
    run = run_flow(build_tickets, settings, generated)
    responses = [TicketResponse.model_validate(r) for r in run.by_topic["tickets.responses"]]
    assert len(responses) + len(run.by_topic["tickets.dlq"]) == 150
    methods = Counter(r.route_method for r in responses)
    assert methods["embedding"] + methods["llm"] == len(responses), methods
    assert {r.enrichment.source for r in responses} <= {"llm", "cache"}
    assert openai_server.count(EMBEDDINGS_PATH) >= 1 and openai_server.count(CHAT_PATH) >= 1
    routed = [r for r in responses if r.route_enrichment is not None]
    assert routed and all(r.route_enrichment.tokens_in >= 0 for r in routed)
    llm_replies = [r for r in responses if r.enrichment.source == "llm"]
    assert llm_replies and all(r.enrichment.tokens_in > 0 for r in llm_replies)
