"""`decision_json` (a decision's `json_bytes`) writes the bytes pydantic writes.

Hypothesis draws decisions the ways the flow makes them (`ShipmentDecision(...)`, which normalises
time zones and numbers; `decision_from_rules`; `with_enrichment` and `model_copy` with an
enrichment, as the agent step does) with wild text (control, non-ASCII and escaped characters),
wild floats (tiny, huge, with many digits) and enrichments of every outcome. The JSON must be
byte for byte `__pydantic_serializer__.to_json`, which `to_out_record` wrote before.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Optional
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import schemas.shipments as shipments
from operators.runtime.records import to_out_record
from schemas.shipments import (
    ShipmentDecision,
    ShipmentEnrichment,
    decision_from_rules,
    decision_json,
    with_enrichment,
)
from tests.schemas.test_decision_from_rules import RULES, fields

SPECIAL = st.sampled_from(['"', "\\", "/", "\x00", "\x1f", "\x7f", "\u2028", "é"])
TEXT = st.text(
    alphabet=st.one_of(st.characters(blacklist_categories=("Cs",)), SPECIAL), max_size=40
).map(str.strip)
REASON = st.text(alphabet=st.one_of(st.characters(), SPECIAL), max_size=40).map(str.strip)
"""Reasons, as the rules hand them over unvalidated: lone surrogates too (no JSON encodes them)."""
COST = st.one_of(
    st.floats(min_value=0.0, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1e-7, 5e-324, 1e16, 1e22, 0.1 + 0.2, 123456789.0]),
)
ENRICHMENT = st.builds(
    ShipmentEnrichment,
    source=st.sampled_from(["llm", "cache", "rules"]),
    model=st.one_of(st.none(), TEXT.map(lambda t: t[:100])),
    prompt_version=st.sampled_from(["v1", "shipments-rules-v1", "ü-2"]),
    tokens_in=st.integers(min_value=0, max_value=2**40),
    tokens_out=st.integers(min_value=0, max_value=500),
    cost_usd=COST,
    latency_ms=COST,
    outcome=st.sampled_from([None, "success", "cache_hit", "fallback", "policy_blocked"]),
    fallback_reason=st.sampled_from([None, "disabled", "timeout"]),
    policy_violations=st.lists(
        st.sampled_from(["link_domain", "refund_promise", "category_unsupported"]),
        max_size=3,
        unique=True,
    ).map(tuple),
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


def _same_json(decision: ShipmentDecision) -> None:
    try:
        expected = decision.__pydantic_serializer__.to_json(decision)
    except ValueError as exc:  # pydantic's error, raised again by `decision_json`
        with pytest.raises(type(exc), match=re.escape(str(exc))):
            decision_json(decision)
        return
    assert decision_json(decision) == expected
    assert decision.json_bytes() == expected
    assert to_out_record("t", "k", decision).value == expected
    assert decision_json(decision) == expected  # the second time, from the enrichment memo


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
    _same_json(decision)
    if attach == "with_enrichment":
        enriched = with_enrichment(decision, enrichment)
    else:
        enriched = decision.model_copy(update={"enrichment": enrichment})
    _same_json(enriched)


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
            _same_json(with_enrichment(base, enrichment))
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


def _rss_growth(make: Callable[[], bytes], count: int = 20_000) -> float:
    """RSS growth (bytes) while `count` results of `make` are kept."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * page

    before = rss()
    kept = [make() for _ in range(count)]
    grown = rss() - before
    del kept
    return grown


def test_kept_json_holds_no_more_memory_than_pydantic_s() -> None:
    """orjson's bytes were shrunk in place from a buffer of several KB: 20,000 kept records
    grew RSS by about 150 MB against about 18 MB for pydantic's bytes of the same JSON."""
    decision = with_enrichment(
        decision_from_rules(**RULES),
        ShipmentEnrichment(source="rules", prompt_version="v1", message_draft="x" * 300),
    )
    theirs = _rss_growth(lambda: decision.__pydantic_serializer__.to_json(decision))
    ours = _rss_growth(lambda: decision_json(decision))  # may reuse what pydantic's freed
    assert ours < 2 * theirs + 8 * 2**20, (ours, theirs)
