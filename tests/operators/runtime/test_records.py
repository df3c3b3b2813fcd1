"""`to_out_record`: the JSON bytes and headers of a topic model."""

from __future__ import annotations

from datetime import UTC, datetime

from operators.runtime.records import CONTENT_TYPE, _json_bytes, to_out_record
from operators.shipments.agent import rules_enrichment
from schemas.common import SCHEMA_VERSION
from schemas.dead_letter import DeadLetter, SourceRef
from schemas.shipments import ShipmentDecision

T = datetime(2025, 11, 28, 9, 30, tzinfo=UTC)


def decision() -> ShipmentDecision:
    d = ShipmentDecision(
        decision_id="d" * 32, shipment_id="SHP-1", action="notify_customer",
        reasons=["late — «ETA» moved"], risk=0.75, trigger="window_closed", window_start=T,
        window_end=T, event_ids=["EVT-1", "EVT-2"], carrier_id="CAR-1", hub_id="HUB-1",
        region="eu-west", last_scan_at=T, sla_due_at=T, notes=["box dented 📦", "\u2028"],
        decided_at=T,
    )  # fmt: skip
    return d.model_copy(update={"enrichment": rules_enrichment(d)})


def test_the_value_is_exactly_what_model_dump_json_gives() -> None:
    letter = DeadLetter.build(
        flow="shipments", step="validate", error_type="invalid_json", error="bad \x00 byte",
        raw=b"\xff{not json", source=SourceRef(topic="t", partition=1, offset=2), key="SHP-1",
    )  # fmt: skip
    for model in (decision(), letter):
        out = to_out_record("topic", "SHP-1", model)
        assert out.value == model.model_dump_json().encode("utf-8")
        assert (out.topic, out.key) == ("topic", "SHP-1")


def test_headers_name_the_content_type_schema_version_and_model() -> None:
    headers = dict(to_out_record("topic", None, decision()).headers)
    assert headers == {
        "content-type": CONTENT_TYPE,
        "schema-version": str(SCHEMA_VERSION).encode(),
        "schema": b"ShipmentDecision",
    }


def test_a_model_s_own_json_is_looked_up_once_per_class() -> None:
    assert _json_bytes(DeadLetter) is None
    assert _json_bytes(ShipmentDecision) is ShipmentDecision.json_bytes
    assert _json_bytes(ShipmentDecision) is _json_bytes(ShipmentDecision)
    d = decision()
    assert to_out_record("t", None, d).value == ShipmentDecision.json_bytes(d)
