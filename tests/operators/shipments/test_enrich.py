"""Polars joins of scan batches with carriers and hubs, and reference-file checks."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from operators.runtime.records import Valid
from operators.runtime.reference import ReferenceDataError
from operators.shipments.domain import EnrichedEvent
from operators.shipments.enrich import enrich_with_carrier_and_hub, join_shipments
from operators.shipments.reference import ShipmentReference
from schemas import DeadLetter, ShipmentEvent, SourceRef

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
SRC = SourceRef(topic="shipments.events", partition=0, offset=7)


def scan(i: int, carrier: str = "CAR-A", hub: str = "HUB-1") -> Valid[ShipmentEvent]:
    event = ShipmentEvent(
        event_id=f"E-{i}",
        shipment_id=f"S-{i}",
        carrier_id=carrier,
        hub_id=hub,
        scan_type="arrived_hub",
        occurred_at=T0 + timedelta(hours=1),
        shipped_at=T0,
    )
    return Valid(model=event, source=SRC)


def test_join_keeps_batch_order_and_fills_reference(data_dir: Path) -> None:
    ref = ShipmentReference.load(data_dir)
    batch = [
        scan(i, carrier="CAR-B" if i % 2 else "CAR-A", hub=f"HUB-{1 + i % 2}") for i in range(50)
    ]
    out = join_shipments(batch, ref, step="enrich")
    assert [o.event.event_id for o in out] == [f"E-{i}" for i in range(50)]
    first, second = out[0], out[1]
    assert isinstance(first, EnrichedEvent) and isinstance(second, EnrichedEvent)
    assert (first.carrier_name, first.sla_hours, first.region) == ("Alpha", 48.0, "eu-west")
    assert first.sla_due_at == T0 + timedelta(hours=48)
    assert (second.carrier_reliability, second.hub_congestion) == (0.8, 0.9)
    assert second.source == SRC


def test_unknown_carrier_or_hub_is_dead_lettered(data_dir: Path) -> None:
    ref = ShipmentReference.load(data_dir)
    out = join_shipments([scan(1, carrier="CAR-Z"), scan(2), scan(3, hub="HUB-9")], ref, step="j")
    assert [type(o) for o in out] == [DeadLetter, EnrichedEvent, DeadLetter]
    assert out[0].error_type == "unknown_reference" and "CAR-Z" in out[0].error
    assert "HUB-9" in out[2].error and out[2].key == "S-3" and out[2].source == SRC


def test_empty_batch(data_dir: Path) -> None:
    assert join_shipments([], ShipmentReference.load(data_dir), step="j") == []


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("carriers.csv", "carrier_id,name,sla_hours\nCAR-A,A,48\n", "lacks columns"),
        ("carriers.csv", "carrier_id,name,sla_hours,reliability\nA,A,48,1.5\n", "reliability"),
        (
            "carriers.csv",
            "carrier_id,name,sla_hours,reliability\nA,A,48,0.9\nA,B,4,0.9\n",
            "unique",
        ),
        ("hubs.csv", "hub_id,name,region,congestion\nH,H,,0.5\n", "empty cells"),
    ],
)
def test_broken_reference_files_fail_clearly(
    data_dir: Path, name: str, text: str, words: str
) -> None:
    (data_dir / name).write_text(text)
    with pytest.raises(ReferenceDataError, match=words):
        ShipmentReference.load(data_dir)


def test_missing_reference_file(tmp_path: Path) -> None:
    with pytest.raises(ReferenceDataError, match="does not exist"):
        ShipmentReference.load(tmp_path)


def test_a_scan_whose_sla_deadline_overflows_is_dead_lettered_alone(data_dir: Path) -> None:
    """Past validation's bounds (here skipped), shipped_at + SLA is beyond the calendar: the
    guarded operator dead-letters that scan and enriches the rest of its batch."""
    poison = Valid(
        model=ShipmentEvent.model_validate(
            {
                "event_id": "E-P",
                "shipment_id": "S-P",
                "carrier_id": "CAR-A",
                "hub_id": "HUB-1",
                "scan_type": "arrived_hub",
                "occurred_at": "9999-12-31T23:30:00Z",
                "shipped_at": "9999-12-31T23:00:00Z",
            }
        ),
        source=SRC,
    )
    reference = ShipmentReference.load(data_dir)
    with pytest.raises(OverflowError):
        join_shipments([poison], reference, step="enrich")
    enriched, dead = [], []
    flow = Dataflow("enrich_test")
    up = op.input("in", flow, TestingSource([scan(1), poison, scan(2)], batch_size=3))
    out = enrich_with_carrier_and_hub("enrich", up, reference=reference)
    op.output("ok", out.enriched, TestingSink(enriched))
    op.output("dead", out.dead_letters, TestingSink(dead))
    run_main(flow)
    assert [e.event.event_id for e in enriched] == ["E-1", "E-2"]
    (letter,) = dead
    assert letter.error_type == "processing_error" and letter.key == "S-P"
    assert "enrich_test.enrich.join" in letter.error and "OverflowError" in letter.error
    assert letter.source == SRC
