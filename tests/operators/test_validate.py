"""`parse_record`: every kind of bad input becomes a dead letter with a readable reason."""

import base64
import json

import pytest

from operators.domain import Valid
from operators.records import RawRecord
from operators.validate import Limits, json_depth, parse_record
from schemas import DeadLetter, ShipmentEvent, TicketMessage
from tests.support.bad_records import SHIPMENT, SHIPMENT_BAD, TICKET_BAD

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
