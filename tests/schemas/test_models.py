"""Contract rules of the topic models: aware UTC timestamps, bounded strings, closed enums."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from schemas import DeadLetter, ShipmentEvent, SourceRef, TicketMessage
from schemas.dead_letter import RAW_BOUND

SCAN = {
    "event_id": "E-1",
    "shipment_id": "SHP-1",
    "carrier_id": "CAR-1",
    "hub_id": "HUB-1",
    "scan_type": "arrived_hub",
    "occurred_at": "2026-11-27T10:00:00+02:00",
    "shipped_at": "2026-11-27T07:00:00Z",
}


def test_timestamps_are_normalised_to_utc() -> None:
    event = ShipmentEvent.model_validate(SCAN)
    assert event.occurred_at == datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)


def test_naive_timestamp_is_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        ShipmentEvent.model_validate({**SCAN, "occurred_at": "2026-11-27T10:00:00"})


@pytest.mark.parametrize(
    "change",
    [
        {"scan_type": "teleported"},
        {"shipment_id": "x" * 65},
        {"shipment_id": "bad id\n"},
        {"note": "n" * 4001},
        {"unexpected": 1},
        {"delay_minutes": -5},
        {"occurred_at": "2026-11-27T06:00:00Z"},
    ],
)
def test_bad_scans_are_rejected(change: dict) -> None:
    with pytest.raises(ValidationError):
        ShipmentEvent.model_validate({**SCAN, **change})


def test_unknown_channel_is_rejected() -> None:
    message = {
        "message_id": "M-1",
        "session_id": "S-1",
        "channel": "fax",
        "sender": "a@example.com",
        "body": "hello",
        "sent_at": "2026-11-27T10:00:00Z",
    }
    with pytest.raises(ValidationError, match="channel"):
        TicketMessage.model_validate(message)
    assert TicketMessage.model_validate({**message, "channel": "chat"}).channel == "chat"


def test_dead_letter_bounds_raw_bytes_and_has_stable_id() -> None:
    raw = b"\xff" * (RAW_BOUND + 10)
    ref = SourceRef(topic="shipments.events", partition=2, offset=41)
    first = DeadLetter.build(
        flow="shipments", step="validate", error_type="decode_error", error="x", raw=raw, source=ref
    )
    again = DeadLetter.build(
        flow="shipments", step="validate", error_type="decode_error", error="x", raw=raw, source=ref
    )
    assert first.raw_truncated and first.raw_size == RAW_BOUND + 10
    assert first.dead_letter_id == again.dead_letter_id
    assert first.failed_at.tzinfo is not None
