"""`decision_json` (a decision's `json_bytes`) writes the bytes pydantic writes.

Hypothesis draws decisions the ways the flow makes them (`ShipmentDecision(...)`, which normalises
time zones and numbers; `decision_from_rules`; `with_enrichment` and `model_copy` with an
enrichment, as the agent step does) with wild text (control, non-ASCII and escaped characters),
wild floats (tiny, huge, with many digits) and enrichments of every outcome. The JSON must be
byte for byte `__pydantic_serializer__.to_json`, which `to_out_record` wrote before.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone
from typing import Any, Optional
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import schemas.shipments as shipments
from schemas.shipments import (
    ShipmentDecision,
    ShipmentEnrichment,
    decision_from_rules,
    decision_json,
    with_enrichment,
)
from tests.schemas.json_checks import SPECIAL, TEXT, assert_same_json, enrichments, rss_growth
from tests.schemas.test_decision_from_rules import RULES, fields

REASON = st.text(alphabet=st.one_of(st.characters(), SPECIAL), max_size=40).map(str.strip)
"""Reasons, as the rules hand them over unvalidated: lone surrogates too (no JSON encodes them)."""
ENRICHMENT = enrichments(
    ShipmentEnrichment,
    prompt_versions=["v1", "shipments-rules-v1", "ü-2"],
    outcomes=[None, "success", "cache_hit", "fallback", "policy_blocked"],
    violations=["link_domain", "refund_promise", "category_unsupported"],
    category=st.sampled_from(["none", "damaged", "other"]),
    message_draft=TEXT,
)


def _decision(values: dict[str, Any], how: str) -> Optional[ShipmentDecision]:
    try:
        if how == "validated":
            return ShipmentDecision(**values)
        return decision_from_rules(**values)
    except ValidationError:
        return None


@settings(max_examples=600, deadline=None)
@given(
    fields(("several",)),
    st.sampled_from(["validated", "rules"]),
    st.one_of(st.none(), ENRICHMENT),
    st.sampled_from(["with_enrichment", "model_copy"]),
    st.lists(REASON.filter(bool).map(lambda t: t[:300]), max_size=3),
    st.floats(min_value=0.0, max_value=1.0),
)
@example(RULES, "rules", None, "with_enrichment", [], 0.5)
@example(RULES, "validated", None, "model_copy", ['a "quoted" \\ reason\x01'], 1e-7)
@example(RULES, "rules", None, "model_copy", ["a lone \ud800 surrogate"], 0.25)
def test_the_json_is_pydantic_s(
    values: dict[str, Any],
    how: str,
    enrichment: Optional[ShipmentEnrichment],
    attach: str,
    reasons: list[str],
    risk: float,
) -> None:
    if reasons:
        values = {**values, "reasons": reasons}
    decision = _decision({**values, "risk": risk}, how)
    if decision is None:
        return
    assert_same_json(decision, decision_json)
    if attach == "with_enrichment":
        enriched = with_enrichment(decision, enrichment)
    else:
        enriched = decision.model_copy(update={"enrichment": enrichment})
    assert_same_json(enriched, decision_json)


def test_decisions_of_other_layouts_are_serialised_by_pydantic() -> None:
    decision = decision_from_rules(**RULES)

    class Sub(ShipmentDecision):
        pass

    sub = Sub(**RULES)
    assert decision_json(sub) == sub.__pydantic_serializer__.to_json(sub)
    reordered = decision_from_rules(**RULES)
    object.__setattr__(reordered, "__dict__", dict(reversed(decision.__dict__.items())))
    assert decision_json(reordered) == reordered.__pydantic_serializer__.to_json(reordered)
    strange = decision_from_rules(**RULES)
    object.__setattr__(strange, "__dict__", {**decision.__dict__, "notes": [object()]})
    with pytest.raises(Exception, match="serializ"):
        strange.__pydantic_serializer__.to_json(strange)  # pydantic's error, not orjson's
    with pytest.raises(Exception, match="serializ"):
        decision_json(strange)


def test_the_enrichment_memo_is_bounded_and_keeps_what_it_names() -> None:
    base = decision_from_rules(**RULES)
    with (
        mock.patch.object(shipments._enrichment_json, "limit", 2),
        mock.patch.dict(shipments._enrichment_json.held, clear=True),
    ):
        for n in range(5):
            enrichment = ShipmentEnrichment(
                source="rules", prompt_version="v1", tokens_in=n, message_draft="x"
            )
            assert_same_json(with_enrichment(base, enrichment), decision_json)
            assert len(shipments._enrichment_json.held) <= 2
        assert all(id(kept) == key for key, (kept, _) in shipments._enrichment_json.held.items())


def test_times_are_written_as_pydantic_writes_them() -> None:
    aware = decision_from_rules(**{**RULES, "decided_at": RULES["window_start"] + timedelta(1)})
    assert b'"decided_at":"2026-12-02T10:00:00Z"' in decision_json(aware)
    zone = timezone(timedelta(hours=2))
    for when in (datetime(2026, 1, 1, 1, 2, 3, 400, tzinfo=zone), datetime(2026, 1, 1, 1, 2)):
        odd = ShipmentDecision.model_construct(**{**aware.__dict__, "decided_at": when})
        assert decision_json(odd) == odd.__pydantic_serializer__.to_json(odd)


@pytest.mark.parametrize(
    "change",
    [{"risk": 1}, {"risk": True}, {"duplicate_events": True}, {"duplicate_events": 1.0}],
)
def test_numbers_of_another_type_are_written_by_pydantic(change: dict[str, Any]) -> None:
    decision = decision_from_rules(**RULES)
    odd = ShipmentDecision.model_construct(**{**decision.__dict__, **change})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic warns of the unexpected type
        assert decision_json(odd) == odd.__pydantic_serializer__.to_json(odd)


@pytest.mark.parametrize(
    "change",
    [{"tokens_in": True}, {"tokens_out": 1.0}, {"cost_usd": 1}, {"latency_ms": 0}],
)
def test_enrichment_numbers_of_another_type_are_written_by_pydantic(
    change: dict[str, Any],
) -> None:
    enrichment = ShipmentEnrichment(source="rules", prompt_version="v1")
    odd = ShipmentEnrichment.model_construct(**{**enrichment.__dict__, **change})
    decision = with_enrichment(decision_from_rules(**RULES), odd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert decision_json(decision) == decision.__pydantic_serializer__.to_json(decision)


def test_kept_json_holds_no_more_memory_than_pydantic_s() -> None:
    """orjson's bytes were shrunk in place from a buffer of several KB: 20,000 kept records
    grew RSS by about 150 MB against about 18 MB for pydantic's bytes of the same JSON."""
    decision = with_enrichment(
        decision_from_rules(**RULES),
        ShipmentEnrichment(source="rules", prompt_version="v1", message_draft="x" * 300),
    )
    theirs = rss_growth(lambda: decision.__pydantic_serializer__.to_json(decision))
    ours = rss_growth(lambda: decision_json(decision))  # may reuse what pydantic's freed
    assert ours < 2 * theirs + 8 * 2**20, (ours, theirs)
