"""The flows count what they read, write, dead-letter and enrich in prometheus-client's registry."""

from __future__ import annotations

from functools import partial

import pytest
from prometheus_client import REGISTRY

from flows.shipments import build_flow
from operators.config.settings import Settings
from operators.shipments.surge import iter_shipment_surge
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
