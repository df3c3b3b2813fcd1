"""Catalogues of malformed input, per flow, with the dead letter each must become.

Each entry maps a name to `(value, error_type, words)`: the record bytes, the `error_type` of its
dead letter and words its readable `error` must contain. `KAFKA_ONLY` adds what only a Kafka
message can carry (a key that is not UTF-8 or too long, a key that differs from the record's, a
tombstone without a value): `(key, value, error_type, words)`.
"""

from __future__ import annotations

import json
from typing import Any, Optional

Entry = tuple[bytes, str, str]

SHIPMENT = {
    "event_id": "E-1",
    "shipment_id": "SHP-1",
    "carrier_id": "CAR-1",
    "hub_id": "HUB-1",
    "scan_type": "arrived_hub",
    "occurred_at": "2026-11-27T10:00:00Z",
    "shipped_at": "2026-11-27T07:00:00Z",
}

TICKET = {
    "message_id": "M-1",
    "session_id": "S-1",
    "channel": "email",
    "sender": "a@example.com",
    "subject": "Order",
    "body": "Where is ORD-123456?",
    "sent_at": "2026-11-27T10:00:00Z",
}


def _with(good: dict[str, Any], **change: Any) -> bytes:
    return json.dumps({**good, **change}).encode()


def _without(good: dict[str, Any], field: str) -> bytes:
    return json.dumps({k: v for k, v in good.items() if k != field}).encode()


def _any_record(good: dict[str, Any]) -> dict[str, Entry]:
    """Defects that do not depend on the model."""
    nested = json.loads("[" * 40 + "]" * 40)
    return {
        "broken_json": (b'{"id": "E-1", ', "invalid_json", "not valid JSON"),
        "trailing_garbage": (json.dumps(good).encode() + b"}", "invalid_json", "not valid JSON"),
        "empty": (b"", "invalid_json", "empty"),
        "whitespace": (b"   \n", "invalid_json", "empty"),
        "null": (b"null", "validation_error", "JSON object"),
        "array": (b"[1, 2]", "validation_error", "JSON object"),
        "number": (b"42", "validation_error", "JSON object"),
        "non_utf8": (b'{"id": "\xff\xfe"}', "decode_error", "UTF-8"),
        "nan": (b'{"delay_minutes": NaN}', "invalid_json", "not valid JSON"),
        "unknown_field": (_with(good, priority="high"), "validation_error", "priority"),
        "deep_nesting": (_with(good, extra=nested), "too_deep", "nested"),
        "very_deep_nesting": (b"[" * 5000 + b"]" * 5000, "too_deep", "nested"),
        "too_large": (_with(good, extra="y" * 300_000), "too_large", "over the"),
    }


def _keyed(good: dict[str, Any], key: str) -> dict[str, Entry]:
    """Defects of the flow key."""
    return {
        "missing_key": (_without(good, key), "validation_error", key),
        "null_key": (_with(good, **{key: None}), "validation_error", key),
        "empty_key": (_with(good, **{key: ""}), "validation_error", key),
        "control_chars_in_key": (_with(good, **{key: "K\x00\x07"}), "validation_error", key),
    }


SHIPMENT_BAD: dict[str, Entry] = {
    **_any_record(SHIPMENT),
    **_keyed(SHIPMENT, "shipment_id"),
    "wrong_type": (_with(SHIPMENT, delay_minutes="abc"), "validation_error", "delay_minutes"),
    "naive_timestamp": (
        _with(SHIPMENT, occurred_at="2026-11-27T10:00:00"), "validation_error", "timezone"
    ),
    "bad_timestamp": (_with(SHIPMENT, occurred_at="yesterday"), "validation_error", "occurred_at"),
    "unknown_enum": (_with(SHIPMENT, scan_type="teleported"), "validation_error", "scan_type"),
    "negative": (_with(SHIPMENT, delay_minutes=-1), "validation_error", "delay_minutes"),
    "huge_note": (_with(SHIPMENT, note="x" * 5000), "validation_error", "note"),
    "scan_before_ship": (
        _with(SHIPMENT, occurred_at="2026-11-27T06:00:00Z"), "validation_error", "before shipped_at"
    ),
}  # fmt: skip

TICKET_BAD: dict[str, Entry] = {
    **_any_record(TICKET),
    **_keyed(TICKET, "session_id"),
    "wrong_type": (_with(TICKET, customer_tier=5), "validation_error", "customer_tier"),
    "naive_timestamp": (
        _with(TICKET, sent_at="2026-11-27T10:00:00"), "validation_error", "timezone"
    ),
    "bad_timestamp": (_with(TICKET, sent_at="last tuesday"), "validation_error", "sent_at"),
    "unknown_enum": (_with(TICKET, channel="pigeon"), "validation_error", "channel"),
    "empty_body": (_with(TICKET, body=""), "validation_error", "body"),
    "null_body": (_with(TICKET, body=None), "validation_error", "body"),
    "huge_body": (_with(TICKET, body="z" * 9000), "validation_error", "body"),
    "missing_message_id": (_without(TICKET, "message_id"), "validation_error", "message_id"),
}  # fmt: skip

KafkaEntry = tuple[Optional[bytes], Optional[bytes], str, str]


def kafka_only(good: dict[str, Any], key_field: str) -> dict[str, KafkaEntry]:
    """Defects of the Kafka message itself around an otherwise valid record."""
    value = json.dumps(good).encode()
    return {
        "non_utf8_message_key": (b"\xff\xfeK", value, "decode_error", "key is not valid UTF-8"),
        "overlong_message_key": (b"K" * 300, value, "validation_error", "over the 256 limit"),
        "message_key_mismatch": (b"OTHER-KEY", value, "key_mismatch", key_field),
        "tombstone": (good[key_field].encode(), None, "invalid_json", "empty"),
    }
