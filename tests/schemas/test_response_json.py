"""`response_json` (a `TicketResponse`'s `json_bytes`) writes the bytes pydantic writes.

Hypothesis draws responses with wild text (control, non-ASCII and escaped characters), wild
floats (confidences, costs and latencies: tiny, huge, with many digits), timestamps in any time
zone (validated: normalised to UTC) or left as given (`model_construct`), entities, and
enrichments of every outcome, shared or not, with and without a route enrichment. The JSON must
be byte for byte `__pydantic_serializer__.to_json`, which `to_out_record` wrote before.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Optional
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import schemas.tickets as tickets
from schemas.enrichment import Enrichment
from schemas.tickets import Entities, TicketResponse, response_json
from tests.schemas.json_checks import TEXT, assert_same_json, enrichments, rss_growth

PROBABILITY = st.one_of(
    st.floats(min_value=0.0, max_value=1.0), st.sampled_from([0.0, 1.0, 1e-7, 5e-324])
)
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)
TIME = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=ZONES
)
ENRICHMENT = enrichments(
    Enrichment,
    prompt_versions=["v1", "refund.v2", "ü-2"],
    outcomes=[None, "success", "cache_hit", "merged", "fallback", "policy_blocked"],
    violations=["link_domain", "refund_promise", "credential_request"],
)
ENTITIES = st.builds(
    Entities,
    order_ids=st.lists(TEXT, max_size=3),
    emails=st.lists(TEXT, max_size=3),
    products=st.lists(TEXT, max_size=3),
)
SHARED = Enrichment(source="rules", prompt_version="refund.v2", outcome="fallback",
                    fallback_reason="disabled")  # fmt: skip


def _fields(**change: Any) -> dict[str, Any]:
    return {
        "response_id": "0123456789abcdef0123456789abcdef", "session_id": "SES-1",
        "message_id": "MSG-1", "channel": "email", "route": "refund", "route_method": "lexical",
        "confidence": 0.8076033465814436, "route_conflict": False, "entities": Entities(),
        "priority": "normal", "reply": "Hi,\n\nThanks.", "escalated": False, "history_size": 0,
        "received_at": datetime(2025, 11, 28, tzinfo=UTC),
        "responded_at": datetime(2026, 12, 6, 19, 31, 0, 566693, tzinfo=UTC),
        "enrichment": SHARED, "route_enrichment": None, **change,
    }  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    TEXT,
    st.one_of(TEXT, st.text(max_size=30)),
    PROBABILITY,
    ENTITIES,
    st.integers(min_value=0, max_value=2**70),
    TIME,
    TIME,
    st.one_of(st.just(SHARED), ENRICHMENT),
    st.one_of(st.none(), ENRICHMENT),
    st.booleans(),
    st.sampled_from(["validated", "constructed"]),
)
@example(
    'Hi \x00 \x1f "é"', "", 0.5, Entities(), 0, datetime(2025, 1, 1, tzinfo=UTC),
    datetime(2025, 1, 1, 0, 0, 0, 500000, tzinfo=UTC), SHARED, None, True, "validated",
)  # fmt: skip
def test_the_json_is_pydantic_s(
    reply: str,
    subject_like: str,
    confidence: float,
    entities: Entities,
    history: int,
    received: datetime,
    responded: datetime,
    enrichment: Enrichment,
    route_enrichment: Optional[Enrichment],
    flags: bool,
    how: str,
) -> None:
    fields = _fields(
        reply=(reply + subject_like)[:4000], confidence=confidence, entities=entities,
        history_size=history, received_at=received, responded_at=responded,
        enrichment=enrichment, route_enrichment=route_enrichment, route_conflict=flags,
        escalated=not flags,
    )  # fmt: skip
    if how == "validated":
        try:
            response = TicketResponse(**fields)
        except ValidationError:
            return
    else:  # as given: time zones other than UTC, text that is not stripped
        response = TicketResponse.model_construct(**fields)
    assert_same_json(response, response_json)


def test_a_shared_enrichment_is_encoded_once_and_the_memo_is_bounded() -> None:
    with (
        mock.patch.object(tickets._enrichment_json, "limit", 2),
        mock.patch.dict(tickets._enrichment_json.held, clear=True),
    ):
        assert_same_json(TicketResponse(**_fields()), response_json)
        assert_same_json(TicketResponse(**_fields(reply="Other")), response_json)
        assert list(tickets._enrichment_json.held) == [id(SHARED)]
        for n in range(5):
            enrichment = Enrichment(source="llm", prompt_version="v1", tokens_in=n)
            assert_same_json(TicketResponse(**_fields(route_enrichment=enrichment)), response_json)
            assert len(tickets._enrichment_json.held) <= 2
        assert all(id(kept) == key for key, (kept, _) in tickets._enrichment_json.held.items())


@pytest.mark.parametrize(
    "change",
    [
        {"confidence": 1}, {"confidence": True}, {"history_size": True},
        {"history_size": 1.0}, {"received_at": datetime(2026, 1, 1, 1, 2)},
        {"responded_at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(seconds=30)))},
        {"responded_at": "2026-01-01T00:00:00Z"}, {"reply": "a lone \ud800 surrogate"},
        {"entities": {"order_ids": [], "emails": [], "products": []}},
        {"enrichment": {"source": "rules", "prompt_version": "v1"}},
        {"route_enrichment": Enrichment.model_construct(source="llm", prompt_version="v1",
                                                        cost_usd=1)},
        {"enrichment": Enrichment.model_construct(source="llm", prompt_version="v1",
                                                  tokens_in=True)},
        {"history_size": 2**70},
    ],
)  # fmt: skip
def test_values_of_another_type_or_layout_are_written_by_pydantic(change: dict[str, Any]) -> None:
    odd = TicketResponse.model_construct(**_fields(**change))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic warns of the unexpected type
        assert_same_json(odd, response_json)


def test_responses_of_other_layouts_are_serialised_by_pydantic() -> None:
    class Sub(TicketResponse):
        pass

    assert_same_json(Sub(**_fields()), response_json)
    reordered = TicketResponse(**_fields())
    object.__setattr__(reordered, "__dict__", dict(reversed(reordered.__dict__.items())))
    assert response_json(reordered) == reordered.__pydantic_serializer__.to_json(reordered)
    entities = Entities(order_ids=["ORD-1"])
    object.__setattr__(entities, "__dict__", dict(reversed(entities.__dict__.items())))
    assert_same_json(TicketResponse.model_construct(**_fields(entities=entities)), response_json)
    extra = TicketResponse.model_construct(**_fields())
    object.__setattr__(extra, "__pydantic_extra__", {"more": 1})
    assert response_json(extra) == extra.__pydantic_serializer__.to_json(extra)


def test_kept_json_holds_no_more_memory_than_pydantic_s() -> None:
    """orjson's bytes are shrunk in place from a buffer of several KB: kept as they are, each
    of 20,000 responses of about 1 KB held about 8 KB of RSS; copied, about pydantic's 1 KB."""
    response = TicketResponse(**_fields(reply="x" * 700))
    theirs = rss_growth(lambda: response.__pydantic_serializer__.to_json(response))
    ours = rss_growth(lambda: response_json(response))  # may reuse what pydantic's freed
    assert ours < 2 * theirs + 8 * 2**20, (ours, theirs)
