"""What a dead letter keeps of its raw input, over a real broker: tickets keep no text by default.

A malformed ticket carrying a card number lands in `tickets.dlq` with its sha256 and length, not
its bytes; shipments keep the first 4 KiB as before; `SURGEFLOW_DEAD_LETTER_RAW` chooses.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from flows import shipments, tickets
from schemas.dead_letter import RAW_BOUND, DeadLetter, SourceRef
from tests.flows.kafka_runs import io_topics, kafka_settings, run_over_kafka, with_topics
from tests.support.bad_records import SHIPMENT, TICKET

pytestmark = [pytest.mark.kafka, pytest.mark.dataflow]

CARD = "4111 1111 1111 1111"
MALFORMED_TICKET = json.dumps(
    {**TICKET, "channel": "fax", "body": f"Please charge my card {CARD}, exp 12/29"}
).encode()


def card_digits_in(raw: bytes) -> bool:
    return CARD.replace(" ", "") in raw.replace(b" ", b"").decode("utf-8", "replace")


@pytest.mark.parametrize("policy", [None, "none"])
def test_a_card_number_in_a_malformed_ticket_does_not_reach_the_dlq(
    kafka_bootstrap: str, policy: str | None
) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap, dead_letter_raw=policy), "tickets")
    run = run_over_kafka(
        tickets.build_flow, settings, topics=io_topics(settings, "tickets"),
        messages=[(b"S-1", MALFORMED_TICKET)],
    )  # fmt: skip
    [record] = run.dead_letters
    assert not card_digits_in(record.value)  # was there in full, as base64 of the first 4 KiB
    letter = record.json()
    assert not card_digits_in(base64.b64decode(letter["raw_base64"]))
    assert letter["error_type"] == "validation_error" and letter["raw_base64"] == ""
    assert letter["raw_size"] == len(MALFORMED_TICKET) and letter["raw_truncated"]
    expected = {None: hashlib.sha256(MALFORMED_TICKET).hexdigest(), "none": None}[policy]
    assert letter["raw_policy"] == (policy or "hash") and letter["raw_sha256"] == expected


def test_shipments_keep_the_bounded_raw_record_by_default(kafka_bootstrap: str) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap), "shipments")
    bad = json.dumps({**SHIPMENT, "scan_type": "teleported"}).encode()
    run = run_over_kafka(
        shipments.build_flow, settings, topics=io_topics(settings, "shipments"),
        messages=[(b"SHP-1", bad)],
    )  # fmt: skip
    [letter] = [r.json() for r in run.dead_letters]
    assert base64.b64decode(letter["raw_base64"]) == bad and letter["raw_policy"] == "bounded"
    assert letter["raw_sha256"] == hashlib.sha256(bad).hexdigest()


def test_a_policy_only_ever_removes_raw_input() -> None:
    raw = b"x" * (RAW_BOUND + 10)
    letter = DeadLetter.build(
        flow="tickets", step="validate", error_type="too_large", error="too large", raw=raw,
        source=SourceRef(topic="tickets.messages", partition=0, offset=1),
    )  # fmt: skip
    assert letter.raw_policy == "bounded" and len(base64.b64decode(letter.raw_base64)) == RAW_BOUND
    hashed = letter.kept("hash")
    assert (hashed.raw_base64, hashed.raw_sha256) == ("", hashlib.sha256(raw).hexdigest())
    assert hashed.raw_size == len(raw) and hashed.dead_letter_id == letter.dead_letter_id
    nothing = hashed.kept("none")
    assert (nothing.raw_base64, nothing.raw_sha256, nothing.raw_size) == ("", None, len(raw))
    assert nothing.kept("bounded") is nothing and letter.kept("bounded") is letter
