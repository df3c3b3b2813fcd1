"""`decision_from_rules` builds exactly the decision `ShipmentDecision(...)` validates.

Hypothesis draws the fields the rules hand over: identifiers as validated scans carry them (the
function's precondition), everything else anywhere, including what validation changes (padded
text, other time zones, ints for floats) or refuses (a risk above 1 or NaN, empty or too long
reasons, too many of them, naive datetimes). Either both raise the same validation errors, or
both give equal models with the same JSON bytes, field values, fields set and time zones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Optional

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.shipments import (
    ShipmentDecision,
    ShipmentEnrichment,
    decision_from_rules,
    with_enrichment,
)

ID = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}\Z")
"""An `Id`, as a validated scan carries it."""
NOTE = st.text(max_size=40).map(str.strip).filter(bool)
"""A scan's note, as a validated scan carries it (stripped, not empty)."""
CLEAN = st.text(min_size=1, max_size=300).map(str.strip).filter(bool)
PAD = st.sampled_from(["", " ", "\t", "\u00a0", "\u2003", "\x1c", "\u200b"])
TEXT = st.builds(lambda a, t, b: a + t + b, PAD, st.text(max_size=320), PAD)
ZONE = st.sampled_from(
    [UTC, timezone(timedelta(0)), timezone(timedelta(hours=2)), timezone(-timedelta(hours=5)), None]
)
WHEN = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2200, 1, 1))
UTC_TIME = WHEN.map(lambda t: t.replace(tzinfo=UTC))
TIME = st.builds(lambda t, z: t.replace(tzinfo=z), WHEN, ZONE)

RULES_LIKE: dict[str, st.SearchStrategy[Any]] = {
    "decision_id": ID,
    "shipment_id": ID,
    "action": st.sampled_from(["ok", "expedite", "reroute", "notify_customer", "escalate"]),
    "reasons": st.lists(CLEAN, min_size=1, max_size=20),
    "risk": st.floats(min_value=0.0, max_value=1.0),
    "trigger": st.sampled_from(["window_closed", "stuck_timer", "end_of_input"]),
    "window_start": UTC_TIME,
    "window_end": UTC_TIME,
    "event_ids": st.lists(ID, max_size=5),
    "duplicate_events": st.integers(min_value=0, max_value=5),
    "carrier_id": ID,
    "hub_id": ID,
    "region": CLEAN.map(lambda t: t[:40].strip() or "unknown"),
    "last_scan_at": UTC_TIME,
    "sla_due_at": UTC_TIME,
    "notes": st.lists(NOTE, max_size=20),
    "decided_at": UTC_TIME,
}
"""Values as the rules make them: the trusted path."""

WILD: dict[str, st.SearchStrategy[Any]] = {
    "action": st.sampled_from(["ok", "stop", "OK", ""]),
    "reasons": st.one_of(st.lists(TEXT, max_size=22), st.lists(CLEAN, min_size=19, max_size=22)),
    "risk": st.one_of(st.floats(), st.integers(min_value=-1, max_value=2)),
    "trigger": st.sampled_from(["window_closed", "timer", ""]),
    "window_start": TIME,
    "window_end": TIME,
    "event_ids": st.lists(ID, min_size=1, max_size=3).map(lambda ids: ids * 3_334),
    "duplicate_events": st.one_of(st.integers(min_value=-2, max_value=2), st.just(1.0)),
    "region": TEXT.map(lambda t: t[:44]),
    "last_scan_at": TIME,
    "sla_due_at": TIME,
    "notes": st.lists(NOTE, min_size=20, max_size=22),
    "decided_at": TIME,
}
"""Values validation changes or refuses, one field at a time or several."""


@st.composite
def fields(draw: st.DrawFn, wild: tuple[str, ...] = ()) -> dict[str, Any]:
    """Rules-like values with the fields `wild` (all of them when "several": up to three
    drawn) drawn from `WILD`."""
    values = {name: draw(strategy) for name, strategy in RULES_LIKE.items()}
    if wild == ("several",):
        wild = tuple(draw(st.lists(st.sampled_from(sorted(WILD)), max_size=3, unique=True)))
    for name in wild:
        values[name] = draw(WILD[name])
    return values


def _errors(exc: ValidationError) -> list[Any]:
    return exc.errors(include_url=False)


T = datetime(2026, 12, 1, 10, tzinfo=UTC)
RULES = {
    "decision_id": "0f" * 16, "shipment_id": "SHP-1", "action": "expedite",
    "reasons": ["SLA breach: ETA 3.0 h past due 2026-12-01 12:00 UTC"], "risk": 0.612,
    "trigger": "window_closed", "window_start": T, "window_end": T + timedelta(minutes=30),
    "event_ids": ["EV-1", "EV-2"], "duplicate_events": 1, "carrier_id": "CAR-1",
    "hub_id": "HUB-1", "region": "eu-west", "last_scan_at": T, "sla_due_at": T,
    "notes": ["box dented"], "decided_at": T,
}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(fields())
@example(RULES)
@example(RULES | {"region": "x" * 39 + " y"})
@example(RULES | {"reasons": [" padded "], "region": " eu "})
@example(RULES | {"risk": float("nan")})
@example(RULES | {"window_start": T.astimezone(timezone(timedelta(hours=1)))})
def test_same_decision_as_validation(values: dict[str, Any]) -> None:
    _same(values)


@pytest.mark.parametrize("wild", [*sorted(WILD), "several"])
def test_same_decision_as_validation_with_odd_values(wild: str) -> None:
    """One field (or several) out of what the rules make."""

    @settings(max_examples=120, deadline=None)
    @given(fields((wild,)))
    def check(values: dict[str, Any]) -> None:
        _same(values)

    check()


def _same(values: dict[str, Any]) -> None:
    try:
        expected = ShipmentDecision(**{k: _copy(v) for k, v in values.items()})
    except ValidationError as exc:
        with pytest.raises(ValidationError) as raised:
            decision_from_rules(**values)
        assert _errors(raised.value) == _errors(exc)
        return
    got = decision_from_rules(**values)
    assert got == expected
    assert got.__pydantic_serializer__.to_json(got) == expected.__pydantic_serializer__.to_json(
        expected
    )
    assert got.__dict__ == expected.__dict__
    assert list(got.__dict__) == list(expected.__dict__)
    assert got.__pydantic_fields_set__ == expected.__pydantic_fields_set__
    for name, value in expected.__dict__.items():
        assert type(got.__dict__[name]) is type(value), name
        if isinstance(value, datetime):
            assert got.__dict__[name].tzinfo is value.tzinfo, name
    assert got.model_copy(update={"duplicate_events": 3}) == expected.model_copy(
        update={"duplicate_events": 3}
    )


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def test_rules_decision_takes_the_trusted_path() -> None:
    """The values the rules make need no validation (the function would still be right if they
    did, but no faster)."""
    made = decision_from_rules(**RULES)
    assert made.reasons is RULES["reasons"]  # validation would have copied the list


ENRICHMENT = st.builds(
    ShipmentEnrichment,
    source=st.sampled_from(["llm", "cache", "rules"]),
    prompt_version=st.sampled_from(["v1", "shipments-rules-v1"]),
    category=st.sampled_from(["none", "damaged", "other"]),
    message_draft=st.text(max_size=30).map(str.strip),
    tokens_in=st.integers(min_value=0, max_value=500),
)


@settings(max_examples=200, deadline=None)
@given(fields(), st.one_of(st.none(), ENRICHMENT), st.booleans())
def test_with_enrichment_is_model_copy(
    values: dict[str, Any], enrichment: Optional[ShipmentEnrichment], validated: bool
) -> None:
    try:
        decision = (ShipmentDecision if validated else decision_from_rules)(**values)
    except ValidationError:
        return
    expected = decision.model_copy(update={"enrichment": enrichment})
    got = with_enrichment(decision, enrichment)
    assert got == expected
    assert got.model_dump_json() == expected.model_dump_json()
    assert got.__dict__ == expected.__dict__ and list(got.__dict__) == list(expected.__dict__)
    assert got.__pydantic_fields_set__ == expected.__pydantic_fields_set__
    assert got.__pydantic_extra__ == expected.__pydantic_extra__
    assert got.__pydantic_private__ == expected.__pydantic_private__
    assert decision.enrichment is None  # the copy changed, not the decision
