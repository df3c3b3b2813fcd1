"""The compact pickle of a `ParsedGroup` (what crosses to another process in the tickets flow)
gives back exactly the pairs that were pickled, models' fields sets included; a group it cannot
write that way pickles as a list."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from operators.runtime.records import source_ref
from operators.tickets.domain import (
    ContextTicket,
    EnrichedTicket,
    ParsedGroup,
    ParsedTicket,
    _parsed_group,
    made,
)
from operators.tickets.parse import parse_tickets
from schemas.common import TimeBounds, trusted
from schemas.dead_letter import SourceRef
from schemas.tickets import Entities, TicketMessage, message_from_common_shape
from tests.operators.shipments.test_crossing_pickle import assert_same_model, sources

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,20}", fullmatch=True)
zones = st.sampled_from([UTC, timezone(timedelta(hours=5)), timezone(-timedelta(hours=8))])
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=zones
)
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
"""Any text, non-ASCII and whitespace included."""
names = st.lists(words, max_size=4)


@st.composite
def messages(draw: st.DrawFn) -> TicketMessage:
    """A valid message, validated by pydantic or built as the flow's fast path builds it, with
    its optional fields set, set to null or left unset."""
    fields: dict[str, Any] = {
        "message_id": draw(ids), "session_id": draw(ids),
        "channel": draw(st.sampled_from(["email", "chat", "it"])), "sender": draw(words),
        "body": draw(words),
    }  # fmt: skip
    for name, values in (
        ("subject", st.none() | words),
        ("customer_tier", st.sampled_from(["standard", "gold", "platinum"])),
    ):
        if draw(st.booleans()):
            fields[name] = draw(values)
    sent = draw(times)
    if draw(st.booleans()):  # the common shape: JSON text, UTC
        shape = {**fields, "sent_at": sent.astimezone(UTC).isoformat()}
        now = datetime(2100, 1, 1, tzinfo=UTC)
        fast = message_from_common_shape(shape, TimeBounds(datetime(1990, 1, 1, tzinfo=UTC), now))
        if fast is not None:
            return fast
    try:
        return TicketMessage(**fields, sent_at=sent)
    except ValidationError:  # text that stripping leaves empty or too long
        plain = {**fields, "sender": "s", "body": "b", "subject": None}
        return TicketMessage(**plain, sent_at=sent)


@st.composite
def entities(draw: st.DrawFn) -> Entities:
    """Entities as the parser builds them (none named: all fields unset; some: all set), or with
    any of their fields set."""
    kind = draw(st.sampled_from(["none", "parser", "some"]))
    if kind == "none":
        return Entities()
    values = {"order_ids": draw(names), "emails": draw(names), "products": draw(names)}
    if kind == "parser":
        return trusted(Entities, values, set(values))
    chosen = draw(st.sets(st.sampled_from(sorted(values))))
    return Entities(**{name: values[name] for name in chosen})


@st.composite
def parsed_tickets(draw: st.DrawFn) -> ParsedTicket:
    """A parsed message whose text is its body (the same string or an equal one) or another."""
    message = draw(messages())
    text = draw(st.sampled_from([message.body, "".join(message.body)]) | st.text(max_size=60))
    return made(
        ParsedTicket, message=message,
        source=draw(sources()) if draw(st.integers(0, 9)) == 0 else flow_source(draw),
        base_priority=draw(st.sampled_from(["low", "normal", "high", "urgent"])),
        response_sla_minutes=draw(st.integers(0, 10_000)), text=text, entities=draw(entities()),
    )  # fmt: skip


def flow_source(draw: st.DrawFn) -> SourceRef:
    """A source as the flow builds it: all three fields set."""
    counts = st.integers(min_value=0, max_value=2**62)
    return source_ref("tickets.messages", draw(counts), draw(counts))


def assert_same(got: ParsedTicket, want: ParsedTicket) -> None:
    assert type(got) is type(want)
    assert got == want
    assert list(got.__dict__) == list(want.__dict__)
    for name in ("message", "source", "entities"):
        assert_same_model(getattr(got, name), getattr(want, name))
    for name, value in want.__dict__.items():
        assert type(got.__dict__[name]) is type(value)
    assert got.message.sent_at.tzinfo is want.message.sent_at.tzinfo


def has_flat_form(item: ParsedTicket) -> bool:
    return type(item) is ParsedTicket and item.source.model_fields_set == {
        "topic", "partition", "offset"
    }  # fmt: skip


class Subclassed(ContextTicket):
    pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(ids, parsed_tickets()), max_size=8), st.booleans(), st.booleans())
def test_a_group_round_trips_exactly_as_a_list(
    pairs: list[tuple[str, ParsedTicket]], shared: bool, odd_one: bool
) -> None:
    """A group unpickles as a plain list of the same pairs, with items that share their entities
    (as the parser's do) or not, and with one item of another class (a `ContextTicket`) among
    them or not."""
    if shared and pairs:
        same = pairs[0][1].entities
        pairs = [(key, replace(item, entities=same)) for key, item in pairs]
    if odd_one and pairs:
        key, first = pairs[0]
        pairs[0] = (key, ContextTicket.from_parsed(first, ()))
    group = ParsedGroup(pairs)
    flat = all(has_flat_form(item) for _, item in pairs)
    assert (group.__reduce__()[0] is _parsed_group) == flat
    for protocol in (pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        got = pickle.loads(pickle.dumps(group, protocol))
        assert type(got) is list
        assert [key for key, _ in got] == [key for key, _ in pairs]
        for (_, item), (_, want) in zip(got, pairs, strict=True):
            assert_same(item, want)
        if shared and flat and pairs:
            assert len({id(item.entities) for _, item in got}) == 1


def ticket(**changes: Any) -> ParsedTicket:
    message = TicketMessage(
        message_id="M-1", session_id="S-1", channel="chat", sender="Zoë",
        body="Où est ORD-123456 ?", sent_at=datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
    )  # fmt: skip
    values: dict[str, Any] = {
        "message": message, "source": source_ref("tickets.messages", 1, 7),
        "base_priority": "normal", "response_sla_minutes": 30, "text": message.body,
        "entities": Entities(order_ids=["ORD-123456"]),
    }  # fmt: skip
    return made(ParsedTicket, **{**values, **changes})


class NotedMessage(TicketMessage):
    note: Optional[str] = None


@pytest.mark.parametrize(
    "odd",
    [
        ContextTicket.from_parsed(ticket(), ()),
        Subclassed.from_parsed(ticket(), ()),
        ticket(source=SourceRef(topic="tickets.messages")),
        ticket(message=NotedMessage(**ticket().message.model_dump(), note="n")),
        ticket(message=TicketMessage.model_construct({"extra"}, **ticket().message.model_dump())),
        ticket(message=TicketMessage.model_construct(message_id="M-1", session_id="S-1")),
        ticket(entities=trusted(Entities, {"order_ids": ["ORD-123456"]}, {"order_ids"})),
        ticket(message=ContextTicket),
    ],
    ids=[
        "another stage",
        "a subclass",
        "unset source fields",
        "message subclass",
        "odd fields",
        "message missing values",
        "entities missing values",
        "not a message",
    ],
)
def test_a_group_with_an_item_it_cannot_flatten_pickles_as_a_list(odd: ParsedTicket) -> None:
    group = ParsedGroup([("S-0", ticket()), ("S-1", odd)])
    assert group.__reduce__()[0] is list
    got = pickle.loads(pickle.dumps(group, pickle.HIGHEST_PROTOCOL))
    assert type(got) is list
    assert got == [("S-0", ticket()), ("S-1", odd)]
    assert type(got[1][1]) is type(odd)
    if isinstance(odd.message, TicketMessage):
        assert got[1][1].message.model_fields_set == odd.message.model_fields_set


def test_the_flows_parsed_messages_take_the_flat_form_and_fewer_bytes() -> None:
    """Messages as the flow parses them (shared entities of messages that name nothing, or the
    same text) cross in the flat form, in fewer bytes than a list of them takes."""
    sent = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    bodies = ["Where is ORD-123456? Write to a@b.io", "Hello", "Hello", "Ça ne marche pas"]
    enriched = [
        EnrichedTicket(
            TicketMessage(
                message_id=f"M-{i}", session_id=f"S-{i % 2}", channel="email", sender="x",
                subject=None if i % 2 else "Re: help", body=body, sent_at=sent,
            ),
            source_ref("tickets.messages", i % 4, i), "high", 60,
        )
        for i, body in enumerate(bodies)
    ]  # fmt: skip
    parsed = parse_tickets(enriched, products=("AeroBlend 3000",))
    group = ParsedGroup((t.message.session_id, t) for t in parsed)
    assert group.__reduce__()[0] is _parsed_group
    compact = pickle.dumps(group, pickle.HIGHEST_PROTOCOL)
    assert len(compact) < 0.85 * len(pickle.dumps(list(group), pickle.HIGHEST_PROTOCOL))
    got = pickle.loads(compact)
    assert [key for key, _ in got] == ["S-0", "S-1", "S-0", "S-1"]
    for (_, item), want in zip(got, parsed, strict=True):
        assert_same(item, want)
