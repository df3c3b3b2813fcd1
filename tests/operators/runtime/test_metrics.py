"""The flows count what they read, write, dead-letter and enrich in prometheus-client's registry."""

from __future__ import annotations

import threading
from functools import partial

import pytest
from prometheus_client import REGISTRY

from flows import tickets
from flows.shipments import build_flow
from operators.config.settings import Settings
from operators.runtime.metrics import RECORDS_OUT, Children, LiveKeys, live_keys, live_state_keys
from operators.shipments.surge import iter_shipment_surge
from operators.tickets.surge import iter_ticket_surge
from tests.flows.flow_runs import run_flow

pytestmark = pytest.mark.dataflow


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_shipments_flow_updates_its_counters(settings: Settings) -> None:
    before = {
        "in": sample("surgeflow_records_in_total", flow="shipments"),
        "out": sample("surgeflow_records_out_total", flow="shipments", topic="shipments.decisions"),
        "dead": sample("surgeflow_dead_letters_total", flow="shipments", reason="validation_error"),
        "rules": sample("surgeflow_enrichments_total", flow="shipments", source="rules"),
    }
    generated = partial(iter_shipment_surge, seed=5, steady_events=100, burst_factor=10)
    run = run_flow(build_flow, settings, generated)
    decisions = len(run.by_topic["shipments.decisions"])
    assert sample("surgeflow_records_in_total", flow="shipments") - before["in"] == 1100
    out = sample("surgeflow_records_out_total", flow="shipments", topic="shipments.decisions")
    assert out - before["out"] == decisions
    rules = sample("surgeflow_enrichments_total", flow="shipments", source="rules")
    assert rules - before["rules"] == decisions
    invalid = sum(d["error_type"] == "validation_error" for d in run.by_topic["shipments.dlq"])
    dead = sample("surgeflow_dead_letters_total", flow="shipments", reason="validation_error")
    assert dead - before["dead"] == invalid > 0


def actions(flow: str, metric: str, label: str, values: set[str]) -> dict[str, float]:
    return {v: sample(metric, flow=flow, **{label: v}) for v in values}


def test_decisions_are_counted_by_action_and_responses_by_route(settings: Settings) -> None:
    """The spec's output count: each published output once, under its own action / route."""
    for build, surge, topic, metric, label in (
        (build_flow, iter_shipment_surge, "shipments.decisions", "surgeflow_decisions_total",
         "action"),
        (tickets.build_flow, iter_ticket_surge, "tickets.responses", "surgeflow_responses_total",
         "route"),
    ):  # fmt: skip
        flow = topic.split(".")[0]
        generated = partial(surge, seed=6, steady_events=60, burst_factor=4)
        values = {str(o[label]) for o in run_flow(build, settings, generated).by_topic[topic]}
        before = actions(flow, metric, label, values)
        run = run_flow(build, settings, generated)
        outputs = run.by_topic[topic]
        assert len(values) >= 2, values
        for value in values:
            expected = sum(str(o[label]) == value for o in outputs)
            assert sample(metric, flow=flow, **{label: value}) - before[value] == expected > 0


def test_children_are_the_metrics_own_children_resolved_once() -> None:
    out = Children(RECORDS_OUT, "children-test")
    child = out("a.topic")
    assert child is RECORDS_OUT.labels("children-test", "a.topic")
    assert out("a.topic") is child and out("b.topic") is not child
    before = sample("surgeflow_records_out_total", flow="children-test", topic="a.topic")
    child.inc(3)
    assert (
        sample("surgeflow_records_out_total", flow="children-test", topic="a.topic") == before + 3
    )


def test_live_keys_are_exact_across_threads_and_read_by_the_gauge_when_scraped() -> None:
    """Four threads open 5,000 keys each and close 3,000 of them at once: the count and the
    `surgeflow_live_state_keys` sample read at scrape time are both exactly 8,000; a close with
    no key open leaves the count at 0."""
    live = live_keys("live-keys-test", "step")
    assert live_keys("live-keys-test", "step") is live

    def churn() -> None:
        for n in range(5_000):
            live.opened()
            if n % 5 < 3:
                live.closed()

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert live.count == live_state_keys("live-keys-test", "step") == 8_000
    assert sample("surgeflow_live_state_keys", flow="live-keys-test", step="step") == 8_000
    for _ in range(8_000):
        live.closed()
    assert sample("surgeflow_live_state_keys", flow="live-keys-test", step="step") == 0
    live.closed()
    assert live.count == 0
    assert sample("surgeflow_live_state_keys", flow="live-keys-test", step="step") == 0
    other = LiveKeys("live-keys-test", "other")
    other.opened()
    assert sample("surgeflow_live_state_keys", flow="live-keys-test", step="other") == 1
