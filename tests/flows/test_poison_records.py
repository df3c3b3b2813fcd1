"""A poison record cannot stop a flow (issue 10, finding 1).

Scans that are schema-valid but carry timestamps at the end of the calendar made the flow raise
`OverflowError` (the SLA deadline in enrichment, the decision window's end, its stuck timer):
`python -m bytewax.run flows.shipments` exited 1 before writing anything, and did so again on
every restart. Here the same scans sit among a surge on a real broker, one of them on a key
that has other scans: the flow ends with exit code 0, each poison scan is one
`validation_error` dead letter naming its timestamp field, and every other input of every key is
decided or dead-lettered as before. The tickets flow gets messages whose `sent_at` is at the ends
of the calendar with an offset that puts it past them in UTC (validation itself raised
`OverflowError` on those): the same holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from operators.runtime.records import RawRecord
from operators.shipments.surge import iter_shipment_surge
from operators.surge.engine import Generated
from operators.tickets.surge import iter_ticket_surge
from tests.flows.kafka_runs import kafka_settings, keyed, produce_raw, with_topics
from tests.flows.recovery_checks import (
    Outputs,
    by_id,
    events_in_two_decisions,
    unaccounted_inputs,
    unanswered_messages,
)
from tests.flows.recovery_runs import TopicFollower, flow_env, start_flow

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


def as_generated(name: str, value: dict, key: str) -> Generated:
    record = RawRecord(value=json.dumps(value).encode(), key=key, topic="poison")
    return Generated(record=record, kind=f"poison:{name}")


def assert_poison_dead_lettered(
    generated: list[Generated], placed: list[tuple[int, int]], dead: dict[str, list[dict]]
) -> None:
    """Each poison record has one `validation_error` dead letter naming a timestamp field."""
    dead_at = {
        (copies[0]["source"]["partition"], copies[0]["source"]["offset"]): copies[0]
        for copies in dead.values()
    }
    for g, where in zip(generated, placed, strict=True):
        if g.kind.startswith("poison:"):
            letter = dead_at[where]
            assert letter["error_type"] == "validation_error", letter["error"]
            fields = {e["loc"] for e in letter["errors"]}
            assert fields & {"occurred_at", "shipped_at", "eta", "sent_at"}, letter["error"]


@pytest.mark.timeout(180)
def test_poison_scans_are_dead_lettered_and_every_other_key_is_decided(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap), "shipments")
    surge = list(iter_shipment_surge(seed=11, steady_events=120, burst_factor=3))
    shared = next(g.record.key for g in surge if g.kind == "valid")
    poison = []
    for name, fields in poison_scans().items():
        key = shared if name == "shared_key" else f"SHP-POISON-{name}"
        scan = {"event_id": f"EVT-POISON-{name}", "shipment_id": key, **fields}
        poison.append(as_generated(name, scan, key))
    half = len(surge) // 2
    generated = surge[:half] + poison + surge[half:]
    placed = produce_raw(settings, settings.topics.shipments_events, keyed(generated))

    (process,) = start_flow("shipments", flow_env(settings), tmp_path / "logs")
    code = process.wait(120)
    assert code == 0, f"the flow exited with {code}:\n{process.log_tail()}"

    out = Outputs.read(settings)
    assert unaccounted_inputs(generated, placed, out.decisions, out.dead) == []
    assert events_in_two_decisions(out.decisions) == []
    assert_poison_dead_lettered(generated, placed, out.dead)
    shared_decisions = [c[0] for c in out.decisions.values() if c[0]["shipment_id"] == shared]
    assert [d for d in shared_decisions if d["event_ids"]], "the poisoned key's scans are decided"
    assert len(out.decisions) > 50


@pytest.mark.timeout(180)
def test_poison_messages_are_dead_lettered_and_every_other_message_answered(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap), "tickets")
    surge = list(iter_ticket_surge(seed=11, steady_events=60, burst_factor=3))
    shared = next(g.record.key for g in surge if g.kind == "valid")
    message = {"channel": "chat", "sender": "sam", "body": "where is ORD-123456?"}
    sent = {
        "after_the_end": "9999-12-31T23:59:59-12:00",  # past datetime.max in UTC
        "before_the_start": "0001-01-01T00:00:00+14:00",  # before datetime.min in UTC
        "end_of_calendar": "9999-12-31T23:30:00Z",
    }
    poison = [
        as_generated(
            name,
            {"message_id": f"MSG-POISON-{name}", "session_id": shared, "sent_at": at, **message},
            shared,
        )
        for name, at in sent.items()
    ]
    half = len(surge) // 2
    generated = surge[:half] + poison + surge[half:]
    placed = produce_raw(settings, settings.topics.tickets_messages, keyed(generated))

    (process,) = start_flow("tickets", flow_env(settings), tmp_path / "logs")
    code = process.wait(120)
    assert code == 0, f"the flow exited with {code}:\n{process.log_tail()}"

    with TopicFollower(settings, [settings.topics.tickets_responses]) as follower:
        responses = by_id(follower.read_to_end(), "response_id")
    with TopicFollower(settings, [settings.topics.tickets_dlq]) as follower:
        dead = by_id(follower.read_to_end(), "dead_letter_id")
    assert unanswered_messages(generated, placed, responses, dead) == []
    assert_poison_dead_lettered(generated, placed, dead)
    assert [r for r in responses.values() if r[0]["session_id"] == shared]
