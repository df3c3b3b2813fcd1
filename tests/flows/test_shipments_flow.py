"""The shipments flow end to end on the embedded transports, with 1 and 2 workers.

Accounting: every input record ends as exactly one of: an event id covered by one decision, a
duplicate counted by the decision of its window, or one dead letter (found by its offset).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from flows.shipments import build_flow
from operators.config.settings import Settings
from operators.shipments.surge import iter_shipment_surge
from schemas import DeadLetter, ShipmentDecision
from tests.flows.flow_runs import FlowRun, embedded_settings, run_flow, surge_for

pytestmark = pytest.mark.dataflow


@pytest.fixture(scope="module")
def small() -> Settings:
    return embedded_settings(surge_steady_events=150)


def surge(settings: Settings):
    return surge_for(iter_shipment_surge, settings)


@pytest.fixture(scope="module")
def one_worker(small: Settings) -> FlowRun:
    return run_flow(build_flow, small, surge(small))


@pytest.fixture(scope="module")
def two_workers(small: Settings) -> FlowRun:
    return run_flow(build_flow, small, surge(small), workers=2)


def decisions_of(run: FlowRun) -> list[ShipmentDecision]:
    return [ShipmentDecision.model_validate(d) for d in run.by_topic["shipments.decisions"]]


def dead_letters_of(run: FlowRun) -> list[DeadLetter]:
    return [DeadLetter.model_validate(d) for d in run.by_topic["shipments.dlq"]]


def test_every_input_is_accounted_for_exactly_once(small: Settings, one_worker: FlowRun) -> None:
    generated = list(surge(small)())
    decisions, dead = decisions_of(one_worker), dead_letters_of(one_worker)
    covered = Counter(e for d in decisions for e in d.event_ids)
    dead_at = Counter(d.source.offset for d in dead)
    assert not [e for e, n in covered.items() if n > 1], "an event is in two decisions"
    assert not [o for o, n in dead_at.items() if n > 1], "an input has two dead letters"
    for g in generated:
        offset = g.record.offset
        if g.kind.startswith("malformed") or g.kind == "unknown_reference":
            assert dead_at[offset] == 1, f"no dead letter for {g.kind} at {offset}"
        elif g.kind == "valid":
            event_id = json.loads(g.record.value)["event_id"]
            assert covered[event_id] + dead_at[offset] == 1, f"valid event {event_id} lost"
    duplicates = sum(d.duplicate_events for d in decisions)
    assert sum(covered.values()) + duplicates + len(dead) == len(generated)


def test_dead_letters_say_why(one_worker: FlowRun) -> None:
    dead = dead_letters_of(one_worker)
    reasons = Counter(d.error_type for d in dead)
    assert {"validation_error", "invalid_json", "unknown_reference", "late_event"} <= set(reasons)
    assert {"decode_error", "too_deep"} & set(reasons)
    for d in dead:
        assert d.error and d.source.topic == "shipments.events" and d.source.offset is not None
        assert d.step in {
            f"shipments.{s}" for s in ("validate", "enrich_with_carrier_and_hub", "late_events")
        }


def test_decisions_cover_every_action_and_are_keyed(one_worker: FlowRun) -> None:
    decisions = decisions_of(one_worker)
    assert len({d.decision_id for d in decisions}) == len(decisions)
    assert {"ok", "notify_customer", "escalate", "expedite"} <= {d.action for d in decisions}
    assert {"window_closed", "end_of_input", "stuck_timer"} & {d.trigger for d in decisions}
    assert any(d.trigger == "stuck_timer" or "stuck" in " ".join(d.reasons) for d in decisions)
    keys = {
        (r.key, json.loads(r.value)["shipment_id"])
        for r in one_worker.records
        if r.topic == "shipments.decisions"
    }
    assert all(k == s for k, s in keys)
    for d in decisions:
        assert d.enrichment is not None and d.enrichment.source == "rules"
        assert d.window_start < d.window_end
        assert d.enrichment.message_draft


def test_two_workers_give_the_same_output(one_worker: FlowRun, two_workers: FlowRun) -> None:
    def summary(run: FlowRun) -> set:
        decided = {(d.decision_id, d.action, tuple(d.event_ids)) for d in decisions_of(run)}
        dead = {(d.dead_letter_id, d.error_type) for d in dead_letters_of(run)}
        return decided | dead

    assert summary(one_worker) == summary(two_workers)


def test_replay_reproduces_ids(small: Settings, one_worker: FlowRun) -> None:
    again = run_flow(build_flow, small, surge(small))
    assert {d.decision_id for d in decisions_of(again)} == {
        d.decision_id for d in decisions_of(one_worker)
    }
