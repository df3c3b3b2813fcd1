"""A poison scan cannot stop the shipments flow (issue 10, finding 1).

Scans that are schema-valid but carry timestamps at the end of the calendar made the flow raise
`OverflowError` (the SLA deadline in enrichment, the decision window's end, its stuck timer):
`python -m bytewax.run flows.shipments` exited 1 before writing anything, and did so again on
every restart. Here the same scans sit among a surge on a real broker, one of them on a key
that has other scans: the flow ends with exit code 0, each poison scan is one
`validation_error` dead letter naming its timestamp field, and every other input of every key is
decided or dead-lettered as before.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from operators.records import RawRecord
from operators.surge import Generated, iter_shipment_surge
from tests.flows.kafka_runs import kafka_settings, keyed, produce_raw, with_topics
from tests.flows.recovery_checks import Outputs, events_in_two_decisions, unaccounted_inputs
from tests.flows.recovery_runs import flow_env, start_flow

pytestmark = [pytest.mark.kafka, pytest.mark.dataflow]

END = "9999-12-31T23:30:00Z"
"""Half an hour before the end of the calendar: any window, timer or SLA added overflows."""


def poison_scans() -> dict[str, dict]:
    """The scans of the issue, by the step each one made raise `OverflowError`."""
    scan = {
        "carrier_id": "CAR-FASTSHIP",
        "hub_id": "HUB-AMS1",
        "scan_type": "arrived_hub",
        "delay_minutes": 0,
    }
    return {
        # shipped_at + the carrier's 24 h SLA is past datetime.max
        "sla_enrichment": {**scan, "occurred_at": END, "shipped_at": "9999-12-31T23:00:00Z"},
        # the decision window [23:00, 24:00) ends past datetime.max
        "decision_window": {**scan, "occurred_at": END, "shipped_at": "2025-11-27T22:00:00Z"},
        # the window closes in time, but notify_at (last scan + 6 h stuck timer) overflows
        "notify_at": {
            **scan,
            "occurred_at": "9999-12-31T20:00:00Z",
            "shipped_at": "2025-11-27T22:00:00Z",
            "eta": "9999-12-31T23:59:59Z",
        },
        # on a key with other scans, which must still be decided
        "shared_key": {**scan, "occurred_at": END, "shipped_at": "2025-11-27T22:00:00Z"},
    }


def as_generated(name: str, fields: dict, shipment_id: str) -> Generated:
    value = {"event_id": f"EVT-POISON-{name}", "shipment_id": shipment_id, **fields}
    record = RawRecord(value=json.dumps(value).encode(), key=shipment_id, topic="poison")
    return Generated(record=record, kind=f"poison:{name}")


@pytest.mark.timeout(180)
def test_poison_scans_are_dead_lettered_and_every_other_key_is_decided(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap), "shipments")
    surge = list(iter_shipment_surge(seed=11, steady_events=120, burst_factor=3))
    shared = next(g.record.key for g in surge if g.kind == "valid")
    poison = [
        as_generated(name, fields, shared if name == "shared_key" else f"SHP-POISON-{name}")
        for name, fields in poison_scans().items()
    ]
    half = len(surge) // 2
    generated = surge[:half] + poison + surge[half:]
    placed = produce_raw(settings, settings.topic_shipments_events, keyed(generated))

    (process,) = start_flow("shipments", flow_env(settings), tmp_path / "logs")
    code = process.wait(120)
    assert code == 0, f"the flow exited with {code}:\n{process.log_tail()}"

    out = Outputs.read(settings)
    assert unaccounted_inputs(generated, placed, out.decisions, out.dead) == []
    assert events_in_two_decisions(out.decisions) == []
    dead_at = {
        (copies[0]["source"]["partition"], copies[0]["source"]["offset"]): copies[0]
        for copies in out.dead.values()
    }
    for g, where in zip(generated, placed, strict=True):
        if g.kind.startswith("poison:"):
            letter = dead_at[where]
            assert letter["error_type"] == "validation_error", letter["error"]
            assert "outside the accepted range" in letter["error"], letter["error"]
            assert {e["loc"] for e in letter["errors"]} & {"occurred_at", "shipped_at", "eta"}
    shared_decisions = [c[0] for c in out.decisions.values() if c[0]["shipment_id"] == shared]
    assert [d for d in shared_decisions if d["event_ids"]], "the poisoned key's scans are decided"
    assert len(out.decisions) > 50
