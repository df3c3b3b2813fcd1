"""`parse_record`: every kind of bad input becomes a dead letter with a readable reason."""

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import model_validator

import schemas.shipments as shipment_schemas
import schemas.tickets as ticket_schemas
from operators.runtime.records import RawRecord, Valid
from operators.runtime.validate import (
    Limits,
    fast_path,
    json_depth,
    parse_record,
    parse_records,
    within_depth,
)
from operators.shipments.surge import shipment_surge
from operators.tickets.surge import ticket_surge
from schemas import DeadLetter, ShipmentEvent, TicketMessage
from schemas.common import TimeBounds
from tests.flows.flow_runs import embedded_settings
from tests.support.bad_records import SHIPMENT, SHIPMENT_BAD, TICKET, TICKET_BAD

GOOD = SHIPMENT


def parse(value: bytes, key: str | None = None, limits: Limits | None = None):
    raw = RawRecord(value=value, key=key, topic="shipments.events", partition=3, offset=99)
    return parse_record(
        raw,
        ShipmentEvent,
        key_field="shipment_id",
        flow="shipments",
        step="validate",
        limits=limits or Limits(),
    )


def with_(**change) -> bytes:
    return json.dumps({**GOOD, **change}).encode()


def test_valid_record_keeps_its_source() -> None:
    result = parse(json.dumps(GOOD).encode(), key="SHP-1")
    assert isinstance(result, Valid)
    assert result.model.shipment_id == "SHP-1"
    assert (result.source.topic, result.source.partition, result.source.offset) == (
        "shipments.events",
        3,
        99,
    )


@pytest.mark.parametrize("name", sorted(SHIPMENT_BAD))
def test_bad_input_becomes_dead_letter(name: str) -> None:
    value, error_type, words = SHIPMENT_BAD[name]
    result = parse(value)
    assert isinstance(result, DeadLetter), name
    assert result.error_type == error_type
    assert words in result.error
    assert result.flow == "shipments" and result.step == "validate"
    assert (result.source.partition, result.source.offset) == (3, 99)
    assert base64.b64decode(result.raw_base64) == value[:4096]
    assert result.raw_size == len(value)


def test_validation_errors_are_listed_field_by_field() -> None:
    result = parse(with_(delay_minutes="abc", scan_type="nope"))
    assert isinstance(result, DeadLetter)
    assert {e.loc for e in result.errors} == {"delay_minutes", "scan_type"}


def test_key_mismatch_is_dead_lettered() -> None:
    result = parse(json.dumps(GOOD).encode(), key="SHP-2")
    assert isinstance(result, DeadLetter)
    assert result.error_type == "key_mismatch"
    assert result.key == "SHP-2"


def test_dead_letter_key_comes_from_the_record_when_transport_has_none() -> None:
    result = parse(with_(scan_type="nope"))
    assert isinstance(result, DeadLetter) and result.key == "SHP-1"


def test_size_and_depth_limits_are_configurable() -> None:
    assert isinstance(parse(json.dumps(GOOD).encode(), limits=Limits(max_bytes=1024)), Valid)
    tight = parse(with_(note="z" * 2000), limits=Limits(max_bytes=1024))
    assert isinstance(tight, DeadLetter) and tight.error_type == "too_large"


def test_json_depth() -> None:
    assert json_depth({"a": 1}, 10) == 1
    assert json_depth({"a": {"b": [1, {"c": 2}]}}, 10) == 4
    assert json_depth(json.loads("[" * 50 + "]" * 50), 10) == 11


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '{"a": "[[[[[[{{{{{{"}',  # brackets inside strings: counted, then walked
        '{"a": [[[[1]]]]}',
        '{"a": [[[[[1]]]]]}',
        "[" * 6 + "]" * 6,
        '{"a": [[], [], [], [], [], []]}',  # many brackets, shallow
    ],
)
def test_within_depth_agrees_with_a_full_scan(text: str) -> None:
    obj = json.loads(text)
    for bound in range(8):
        assert within_depth(text.encode(), obj, bound) == (json_depth(obj, bound) <= bound)


def test_tickets_validate_with_their_own_key_field() -> None:
    message = {
        "message_id": "M-1",
        "session_id": "S-9",
        "channel": "email",
        "sender": "a@example.com",
        "body": "Where is ORD-123456?",
        "sent_at": "2026-11-27T10:00:00Z",
    }
    raw = RawRecord(value=json.dumps(message).encode(), key="S-9", topic="tickets.messages")
    result = parse_record(raw, TicketMessage, key_field="session_id", flow="tickets", step="v")
    assert isinstance(result, Valid) and result.model.session_id == "S-9"


@pytest.mark.parametrize("name", sorted(TICKET_BAD))
def test_bad_ticket_becomes_dead_letter(name: str) -> None:
    value, error_type, words = TICKET_BAD[name]
    raw = RawRecord(value=value, topic="tickets.messages", partition=1, offset=7)
    result = parse_record(raw, TicketMessage, key_field="session_id", flow="tickets", step="v")
    assert isinstance(result, DeadLetter), name
    assert (result.error_type, result.source.offset) == (error_type, 7)
    assert words in result.error


def test_transport_errors_are_dead_lettered_before_parsing() -> None:
    raw = RawRecord(
        value=json.dumps(GOOD).encode(), topic="t", partition=0, offset=5,
        error="Kafka consumer error: broker down", error_type="consumer_error",
    )  # fmt: skip
    result = parse_record(
        raw, ShipmentEvent, key_field="shipment_id", flow="shipments", step="validate"
    )
    assert isinstance(result, DeadLetter)
    assert (result.error_type, result.error) == ("consumer_error", raw.error)


WALL = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def parse_at(value: bytes, now: datetime = WALL, limits: Limits | None = None):
    raw = RawRecord(value=value, topic="shipments.events", partition=0, offset=1)
    return parse_record(
        raw,
        ShipmentEvent,
        key_field="shipment_id",
        flow="shipments",
        step="validate",
        limits=limits or Limits(),
        now=now,
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"occurred_at": "9999-12-31T23:30:00Z", "shipped_at": "9999-12-31T23:00:00Z"},
            "occurred_at",
        ),
        ({"occurred_at": "2101-01-01T00:00:00Z"}, "occurred_at"),
        (
            {"occurred_at": "0001-01-01T00:30:00Z", "shipped_at": "0001-01-01T00:00:00Z"},
            "shipped_at",
        ),
        ({"shipped_at": "1999-12-31T23:59:59Z"}, "shipped_at"),
        ({"eta": "9999-12-31T23:59:59Z"}, "eta"),
        ({"eta": "1970-01-01T00:00:00Z"}, "eta"),
        ({"occurred_at": "9999-12-31T23:59:59-12:00"}, "occurred_at"),  # past datetime.max in UTC
        ({"shipped_at": "0001-01-01T00:00:00+05:00"}, "shipped_at"),  # before datetime.min in UTC
        ({"occurred_at": "2026-11-28T12:00:01Z"}, "occurred_at"),  # over a day ahead of WALL
    ],
)
def test_timestamps_outside_the_sane_range_are_validation_errors(change, field) -> None:
    result = parse_at(with_(**change))
    assert isinstance(result, DeadLetter), change
    assert result.error_type == "validation_error"
    assert field in result.error
    assert any(e.loc == field for e in result.errors)


def test_forecasts_may_be_ahead_of_the_wall_clock_but_event_times_only_by_the_skew() -> None:
    ahead = with_(occurred_at="2026-11-28T11:00:00Z", eta="2027-01-15T00:00:00Z")
    assert isinstance(parse_at(ahead), Valid)
    tight = Limits(max_ahead=timedelta(minutes=30))
    assert isinstance(parse_at(ahead, limits=tight), DeadLetter)
    assert isinstance(parse_at(ahead, now=WALL + timedelta(days=1)), Valid)


def test_the_range_is_settable() -> None:
    limits = Limits.from_settings(
        embedded_settings(
            event_time_min="2026-01-01T00:00:00Z",
            event_time_max="2027-01-01T00:00:00Z",
            max_future_skew_hours=1,
        ).io
    )
    assert isinstance(parse_at(with_(), limits=limits), Valid)
    early = parse_at(with_(shipped_at="2025-12-31T23:00:00Z"), limits=limits)
    assert isinstance(early, DeadLetter) and "2026-01-01" in early.error
    assert isinstance(
        parse_at(with_(occurred_at="2026-11-27T13:30:00Z"), limits=limits), DeadLetter
    )


@pytest.mark.parametrize(
    "sent_at", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2026-11-29T00:00:00Z"]
)
def test_ticket_times_are_bounded_too(sent_at: str) -> None:
    value = json.dumps({**TICKET, "sent_at": sent_at}).encode()
    raw = RawRecord(value=value, topic="tickets.messages")
    result = parse_record(
        raw, TicketMessage, key_field="session_id", flow="tickets", step="validate", now=WALL
    )
    assert isinstance(result, DeadLetter) and result.error_type == "validation_error"
    assert "sent_at" in result.error


def test_delay_minutes_is_bounded() -> None:
    for value in (10**30, -1, 100_001):
        result = parse_at(with_(delay_minutes=value))
        assert isinstance(result, DeadLetter) and result.error_type == "validation_error"


def test_a_validator_raising_another_error_is_a_validation_error_not_a_crash() -> None:
    class Strict(ShipmentEvent):
        @model_validator(mode="after")
        def _overflow(self) -> ShipmentEvent:
            raise OverflowError("date value out of range")

    raw = RawRecord(value=with_(), topic="shipments.events", partition=0, offset=5)
    result = parse_record(raw, Strict, key_field="shipment_id", flow="shipments", step="validate")
    assert isinstance(result, DeadLetter) and result.error_type == "validation_error"
    assert "OverflowError: date value out of range" in result.error and result.key == "SHP-1"


JSONISH = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=30).map(lambda t: json.dumps({"a": t}, ensure_ascii=False).encode()),
    st.lists(
        st.sampled_from(
            [b"{", b"}", b"[", b"]", b'"', b":", b",", b" ", b"\t", b"\n", b"1", b"a", b"NaN",
             b"\xef\xbb\xbf", b"\xed\xa0\x80", b"\xc3\xa9", b"\xff", b"\\ud800", b"\\u00e9",
             b"\x00"]
        ),
        max_size=12,
    ).map(b"".join),
)  # fmt: skip


@settings(max_examples=2000, deadline=None)
@given(JSONISH)
@example(b"\xef\xbb\xbf{}")
@example(b'{"a":"\xed\xa0\x80"}')
@example(b" \n")
def test_json_read_from_bytes_is_what_the_text_gives(value: bytes) -> None:
    """`parse_record` reads JSON straight from the bytes and falls back to decoding them first
    only when that fails: whatever the bytes give, they were valid UTF-8, not blank, and read
    the same as their text (the checks it skips would all have passed)."""
    try:
        from_bytes = orjson.loads(value)
    except orjson.JSONDecodeError:
        return
    text = value.decode("utf-8")
    assert text.strip()
    assert orjson.loads(text) == from_bytes


def _same_outcome(a: object, b: object) -> None:
    assert type(a) is type(b)
    if isinstance(a, Valid) and isinstance(b, Valid):
        assert a.source == b.source
        assert type(a.source) is type(b.source)
        assert list(a.source.__dict__.items()) == list(b.source.__dict__.items())
        assert a.source.model_fields_set == b.source.model_fields_set
        assert (a.source.__pydantic_extra__, a.source.__pydantic_private__) == (
            b.source.__pydantic_extra__, b.source.__pydantic_private__,
        )  # fmt: skip
        assert a.model.__dict__ == b.model.__dict__
        assert a.model.model_fields_set == b.model.model_fields_set
        assert a.model.model_dump_json() == b.model.model_dump_json()
    else:
        assert isinstance(a, DeadLetter) and isinstance(b, DeadLetter)
        assert a.model_dump(exclude={"failed_at"}) == b.model_dump(exclude={"failed_at"})


SURGES: dict[str, list[tuple[str | None, bytes]]] = {
    "shipments": [(r.key, r.value) for r in shipment_surge(steady_events=300, burst_factor=3)],
    "tickets": [(r.key, r.value) for r in ticket_surge(steady_events=300, burst_factor=3)],
}
FAST_PATHS = {
    "shipments": (shipment_schemas, "event_from_common_shape", ShipmentEvent, "shipment_id"),
    "tickets": (ticket_schemas, "message_from_common_shape", TicketMessage, "session_id"),
}


@pytest.mark.parametrize("keyed", [True, False])
@pytest.mark.parametrize("flow", sorted(SURGES))
def test_the_fast_paths_change_no_outcome_of_the_surge(flow: str, keyed: bool) -> None:
    """Every record of a surge (malformed ones included) gives the same `Valid` or dead letter
    with the model's fast path (`ShipmentEvent.from_common_shape`,
    `TicketMessage.from_common_shape`) as with `model_validate` alone."""
    now = datetime(2025, 11, 28, 12, tzinfo=UTC)
    limits = Limits()
    module, name, model, key_field = FAST_PATHS[flow]
    first = json.loads(SURGES[flow][0][1])
    deep = [  # too deep, in a field of the model and in an unknown one
        (SURGES[flow][0][0], json.dumps({**first, field: value}).encode())
        for field in (key_field, "extra")
        for value in ([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],)
    ]
    surge = SURGES[flow] + deep

    def run(pair: tuple[str | None, bytes]) -> object:
        key, value = pair
        raw = RawRecord(value, key if keyed else None, f"{flow}.in", 0, 1)
        return parse_record(
            raw, model, key_field=key_field, flow=flow, step="validate",  # type: ignore[arg-type]
            limits=limits, now=now,
        )  # fmt: skip

    taken = []
    real = getattr(module, name)

    def counted(obj: dict[str, Any], bounds: TimeBounds) -> object:
        made = real(obj, bounds)
        taken.append(made is not None)
        return made

    with mock.patch.object(module, name, counted):
        fast = [run(pair) for pair in surge]
    with mock.patch.object(module, name, lambda obj, b: None):
        slow = [run(pair) for pair in surge]
    valid = sum(isinstance(r, Valid) for r in fast)
    assert valid > len(surge) // 2
    assert sum(taken) == valid  # every valid record of the surge took the fast path
    assert sum(isinstance(r, DeadLetter) and r.error_type == "too_deep" for r in fast) == 2
    for a, b in zip(fast, slow, strict=True):
        _same_outcome(a, b)


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_a_flat_record_on_the_fast_path_meets_the_depth_limit_as_before(depth: int) -> None:
    """The fast path accepts flat objects only (one level), so a record it accepts skips the
    depth check; with a limit under one level it is not taken, and the record is too deep."""
    result = parse(json.dumps(GOOD).encode(), limits=Limits(max_depth=depth))
    if depth == 0:
        assert isinstance(result, DeadLetter) and result.error_type == "too_deep"
    else:
        assert isinstance(result, Valid)
    nested = parse(with_(note={"a": [1]}), limits=Limits(max_depth=depth))
    assert isinstance(nested, DeadLetter)
    assert nested.error_type == "too_deep"


def test_a_model_s_fast_path_is_looked_up_once() -> None:
    assert fast_path(TicketMessage) == TicketMessage.from_common_shape
    assert fast_path(ShipmentEvent) == ShipmentEvent.from_common_shape
    assert fast_path(ShipmentEvent) is fast_path(ShipmentEvent)
    assert fast_path(DeadLetter) is None


def _records(flow: str, keyed: bool) -> list[RawRecord]:
    """A surge's records, the known bad ones and transport errors, as a source gives them."""
    bad = TICKET_BAD if flow == "tickets" else SHIPMENT_BAD
    pairs = list(SURGES[flow]) + [(None, value) for value, _, _ in bad.values()]
    records = [
        RawRecord(value, key if keyed else None, f"{flow}.in", i % 3, i)
        for i, (key, value) in enumerate(pairs)
    ]
    good = SURGES[flow][0]
    records += [
        RawRecord(good[1], "another-key", f"{flow}.in", 0, 7),  # key mismatch
        RawRecord(good[1], good[0], f"{flow}.in", None, None),  # no coordinates
        RawRecord(good[1], good[0], f"{flow}.in", 0, 8, error="Kafka consumer error: x"),
        RawRecord(good[1] + b" " * 600, good[0], f"{flow}.in", 0, 9),  # over a small limit
        RawRecord(good[1], good[0], " padded ", 0, 10),  # a topic validation strips
    ]
    return records


@pytest.mark.parametrize(
    "limits", [Limits(), Limits(max_bytes=600, max_depth=3), Limits(max_depth=0)]
)
@pytest.mark.parametrize("keyed", [True, False])
@pytest.mark.parametrize("flow", sorted(SURGES))
def test_parse_records_is_parse_record_of_each(flow: str, keyed: bool, limits: Limits) -> None:
    """`parse_records` (the `validate` step's batch, its common case in one loop) gives what
    `parse_record` gives each record: the same `Valid`s (model, source) and dead letters."""
    _, _, model, key_field = FAST_PATHS[flow]
    bounds = limits.time_bounds(datetime(2025, 11, 28, 12, tzinfo=UTC)).context()
    records = _records(flow, keyed)
    options: dict[str, Any] = {
        "key_field": key_field, "flow": flow, "step": "validate", "limits": limits,
        "bounds": bounds,
    }  # fmt: skip
    batched = parse_records(records, model, **options)
    each = [parse_record(raw, model, **options) for raw in records]
    assert sum(isinstance(r, Valid) for r in each) > (len(records) // 2 if limits.max_depth else -1)
    assert len(batched) == len(each)
    for a, b in zip(batched, each, strict=True):
        _same_outcome(a, b)


def test_a_fast_path_that_raises_gives_parse_record_s_dead_letter_or_stops_the_flow() -> None:
    records = _records("tickets", True)[:20]
    options: dict[str, Any] = {
        "key_field": "session_id", "flow": "tickets", "step": "validate", "limits": Limits(),
        "bounds": Limits().time_bounds(datetime(2025, 11, 28, 12, tzinfo=UTC)).context(),
    }  # fmt: skip

    def overflows(obj: dict[str, Any], bounds: TimeBounds) -> object:
        raise OverflowError("date value out of range")

    with mock.patch.object(ticket_schemas, "message_from_common_shape", overflows):
        batched = parse_records(records, TicketMessage, **options)
        each = [parse_record(raw, TicketMessage, **options) for raw in records]
    assert all(isinstance(r, DeadLetter) and "OverflowError" in r.error for r in batched)
    for a, b in zip(batched, each, strict=True):
        _same_outcome(a, b)

    def out_of_memory(obj: dict[str, Any], bounds: TimeBounds) -> object:
        raise MemoryError

    with (
        mock.patch.object(ticket_schemas, "message_from_common_shape", out_of_memory),
        pytest.raises(MemoryError),
    ):
        parse_records(records, TicketMessage, **options)
