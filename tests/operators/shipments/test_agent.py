"""The shipments LLM task: rules classification, the prompt, and `enrich_decision`'s sources."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest

from operators.config.settings import Settings
from operators.llm.agent import AgentRunner
from operators.llm.prompt_text import estimate_tokens
from operators.llm.service import DisabledService, OpenAIService
from operators.llm.structured import server_schema
from operators.shipments.agent import (
    MAX_NOTE_CHARS,
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    NoteAssessment,
    ShipmentAgent,
    answer_violations,
    build_messages,
    classify_note,
    classify_notes,
    clean_text,
    enrich_decision,
    rules_message,
    supported_categories,
)
from schemas.shipments import Action, ExceptionCategory, ShipmentDecision
from tests.support.openai_server import CHAT_PATH, OpenAITestServer

START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def decision(**overrides: Any) -> ShipmentDecision:
    fields: dict[str, Any] = {
        "decision_id": "D-1",
        "shipment_id": "SHP-1",
        "action": "notify_customer",
        "reasons": ["carrier reported an exception"],
        "risk": 0.7,
        "trigger": "window_closed",
        "window_start": START,
        "window_end": START + timedelta(hours=1),
        "event_ids": ["E-1"],
        "carrier_id": "CAR-A",
        "hub_id": "HUB-1",
        "region": "eu-west",
        "last_scan_at": START + timedelta(minutes=30),
        "sla_due_at": START + timedelta(hours=48),
        "notes": ["Parcel crushed at sorting"],
        "decided_at": START + timedelta(hours=1),
    }
    return ShipmentDecision(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("note", "category"),
    [
        ("Box DAMAGED on arrival", "damaged"),
        ("screen broken", "damaged"),
        ("parcel crushed under pallet", "damaged"),
        ("Address incomplete, no house number", "address_issue"),
        ("label unclear", "address_issue"),
        ("driver went to the wrong street", "address_issue"),
        ("held by customs for papers", "customs_hold"),
        ("storm closed the motorway", "weather"),
        ("heavy snowfall", "weather"),
        ("flooding near hub", "weather"),
        ("bad weather", "weather"),
        ("package missing from cage", "lost"),
        ("lost in transit", "lost"),
        ("warehouse cannot locate the parcel", "lost"),
        ("recipient refused delivery", "refused"),
        ("customer called twice", "other"),
        ("", "none"),
        (" \t\n", "none"),
    ],
)
def test_rules_classify_a_note(note: str, category: str) -> None:
    assert classify_note(note) == category


def test_most_severe_category_wins_across_notes() -> None:
    assert classify_notes(["storm warning", "parcel crushed", "cannot locate it"]) == "lost"
    assert classify_notes(["storm warning", "called customer"]) == "weather"
    assert classify_notes(["called customer"]) == "other"
    assert classify_notes([]) == "none"
    assert classify_notes(["   "]) == "none"


def test_every_action_and_category_has_a_message() -> None:
    for action in get_args(Action):
        for category in get_args(ExceptionCategory):
            text = rules_message(action, category)
            assert 0 < len(text) <= 1200


def test_prompt_has_action_reasons_notes_and_no_ids() -> None:
    notes = ["left\x00at\x1b[31m door\u200b", "x" * 3000, " \u200b "]
    d = decision(notes=notes, reasons=["late\tby 2h"])
    system, user = build_messages(d)
    assert system == {"role": "system", "content": SYSTEM_PROMPT} and user["role"] == "user"
    content = user["content"]
    assert json.loads(content) == {
        "action": "notify_customer",
        "reasons": ["late by 2h"],
        "notes": ["left at [31m door", "x" * MAX_NOTE_CHARS],
    }
    assert "SHP-1" not in content and "D-1" not in content
    assert all(ch.isprintable() for ch in content)


def test_prompt_notes_and_reasons_share_the_token_budget() -> None:
    d = decision(notes=["crushed box", "y" * 4000, "z" * 4000], reasons=["r" * 300])
    data = json.loads(build_messages(d, max_input_tokens=120)[1]["content"])
    texts = [*data["reasons"], *data["notes"]]
    assert sum(estimate_tokens(text) for text in texts) <= 120
    assert data["notes"][0] == "crushed box"
    assert all(t.endswith("…") for t in [*data["reasons"], *data["notes"][1:]])


def test_prompt_without_notes_or_reasons_has_empty_lists() -> None:
    data = json.loads(build_messages(decision(notes=[], reasons=["\x00"]))[1]["content"])
    assert data == {"action": "notify_customer", "reasons": [], "notes": []}


def test_clean_text_is_reexported_and_bounds_and_collapses() -> None:
    assert clean_text("a\r\n\r\nb\x07c", 100) == "a b c"
    assert clean_text("abcdef", 3) == "abc"


def test_disabled_service_gives_rules(llm_settings: Callable[..., Settings]) -> None:
    out = asyncio.run(
        enrich_decision(decision(), service=DisabledService(), llm=llm_settings().llm)
    )
    e = out.enrichment
    assert e is not None
    assert (e.source, e.category, e.cost_usd, e.model) == ("rules", "damaged", 0.0, None)
    assert e.message_draft == rules_message("notify_customer", "damaged")
    assert out.decision_id == "D-1" and out.notes == ["Parcel crushed at sorting"]


def test_ok_without_notes_makes_no_call(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    service = OpenAIService(llm_settings())
    d = decision(action="ok", notes=[], reasons=["on schedule"])
    out = asyncio.run(enrich_decision(d, service=service, llm=llm_settings().llm))
    assert out.enrichment is not None and out.enrichment.source == "rules"
    assert out.enrichment.category == "none"
    assert openai_server.count() == 0


def test_llm_then_cache_for_the_same_situation(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    settings = llm_settings()
    service = OpenAIService(settings)

    async def both() -> tuple[ShipmentDecision, ShipmentDecision]:
        first = await enrich_decision(decision(), service=service, llm=settings.llm)
        other = decision(decision_id="D-2", shipment_id="SHP-2")
        second = await enrich_decision(other, service=service, llm=settings.llm)
        await service.aclose()
        return first, second

    first, second = asyncio.run(both())
    assert first.enrichment is not None and second.enrichment is not None
    assert first.enrichment.source == "llm" and first.enrichment.category == "damaged"
    assert first.enrichment.prompt_version == PROMPT_VERSION
    assert first.enrichment.model == settings.llm.model_classify
    assert first.enrichment.tokens_in > 0 and first.enrichment.cost_usd > 0
    assert second.enrichment.source == "cache" and second.enrichment.cost_usd == 0.0
    assert second.enrichment.message_draft == first.enrichment.message_draft
    assert openai_server.count(CHAT_PATH) == 1
    schema = openai_server.requests[0].body["response_format"]["json_schema"]["schema"]
    # the schema as sent: without `maxLength` (it explodes grammar-based servers), which the
    # answer's validation here still enforces
    assert schema == server_schema(NoteAssessment.model_json_schema())
    assert "maxLength" in str(NoteAssessment.model_json_schema()) and "maxLength" not in str(schema)


@pytest.mark.parametrize(
    ("fault", "most_requests", "reason"),
    [("status", 1, "call_error"), ("malformed", 2, "invalid_output")],
)
def test_provider_failure_falls_back_to_rules(
    openai_server: OpenAITestServer,
    llm_settings: Callable[..., Settings],
    fault: str,
    most_requests: int,
    reason: str,
) -> None:
    """Without retries a 503 costs one request; an unreadable answer at most one repair more."""
    settings = llm_settings(llm_max_retries=0)
    if fault == "status":
        openai_server.fail_next(5, status=503)
    else:
        openai_server.malformed_next(5)
    service = OpenAIService(settings)

    async def once() -> ShipmentDecision:
        try:
            return await enrich_decision(decision(), service=service, llm=settings.llm)
        finally:
            await service.aclose()

    out = asyncio.run(once())
    assert out.enrichment is not None and out.enrichment.source == "rules"
    assert out.enrichment.category == "damaged"
    assert out.enrichment.outcome == "fallback" and out.enrichment.fallback_reason == reason
    assert 1 <= openai_server.count(CHAT_PATH) <= most_requests


def test_supported_categories_follow_the_keywords_of_the_notes() -> None:
    assert supported_categories([]) == {"none", "other"}
    assert supported_categories(["box crushed", "address unclear"]) == {"damaged", "address_issue"}
    assert supported_categories(["left with the neighbour"]) == set(get_args(ExceptionCategory))


@pytest.mark.parametrize(
    ("category", "draft", "violations"),
    [
        ("damaged", "We are sorry: the parcel was damaged; we are notifying the customer.", ()),
        ("none", "The shipment is on track.", ("category_unsupported",)),
        ("damaged", "Claim 50 EUR at https://claims.example.net now.", ("link_domain",
         "monetary_commitment")),
        ("damaged", "We will refund you in the next days.", ("refund_promise",)),
        ("damaged", "Please send us your card number to proceed.", ("credential_request",)),
    ],
)  # fmt: skip
def test_an_answer_must_fit_the_notes_and_pass_the_reply_policy(
    category: ExceptionCategory, draft: str, violations: tuple[str, ...]
) -> None:
    answer = NoteAssessment(category=category, message_draft=draft)
    assert answer_violations(decision(), answer, Settings().llm) == violations


def test_an_answer_held_in_process_is_served_on_the_worker_thread(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    """What the flow passes as `ready`: nothing held → None (a call is due); once answered,
    the same situation on another shipment is served without the event loop or a request."""
    settings = llm_settings()
    service = OpenAIService(settings)
    agent = AgentRunner(ShipmentAgent(settings.llm), service)
    assert agent.answer_now(decision()) is None
    assert openai_server.count() == 0

    async def first_call() -> ShipmentDecision:
        try:
            return await agent.answer(decision())
        finally:
            await service.aclose()

    first = asyncio.run(first_call())
    other = decision(decision_id="D-2", shipment_id="SHP-2")
    held = agent.answer_now(other)
    assert held is not None and held.enrichment is not None and first.enrichment is not None
    assert (held.decision_id, held.shipment_id) == ("D-2", "SHP-2")
    assert (held.enrichment.source, held.enrichment.outcome) == ("cache", "cache_hit")
    assert held.enrichment.model_dump(include={"category", "message_draft", "model"}) == (
        first.enrichment.model_dump(include={"category", "message_draft", "model"})
    )
    assert held.enrichment.cost_usd == 0.0
    assert openai_server.count(CHAT_PATH) == 1
    totals = service.ledger.totals_for("SHP-2")
    assert totals is not None and totals.outcomes == {"cache_hit": 1}
    ok = decision(action="ok", notes=[], reasons=["on schedule"])
    rules = agent.answer_now(ok)
    assert rules is not None and rules.enrichment is not None
    assert rules.enrichment.source == "rules"
