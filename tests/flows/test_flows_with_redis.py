"""Both flows with Redis as the LLM cache, against the loopback OpenAI-compatible server.

Each run builds a fresh flow (a fresh service and front cache), so a second run can only be
answered by Redis. Each test has a `redis-server` of its own, empty at the start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from bytewax.dataflow import Dataflow
from prometheus_client import REGISTRY

from flows.shipments import build_flow as build_shipments
from flows.tickets import build_flow as build_tickets
from operators.config.settings import Settings
from operators.shipments.surge import iter_shipment_surge
from operators.surge.engine import Generated
from operators.tickets.surge import iter_ticket_surge
from scripts.redis_server import RedisServer
from tests.flows.flow_runs import FlowRun, run_flow
from tests.support.openai_server import OpenAITestServer

pytestmark = [pytest.mark.dataflow, pytest.mark.redis]

LOGGER = "operators.llm.redis_cache"

VOLATILE = {"decided_at", "responded_at", "enrichment", "route_enrichment"}
"""Output fields that differ between two runs of the same input (clock times, provenance)."""


@dataclass(frozen=True)
class FlowCase:
    build: Callable[..., Dataflow]
    surge: Callable[..., Iterator[Generated]]
    topic: str
    dlq: str
    id_field: str
    latency: float
    """Server latency when Redis is stopped mid-run: the run lasts a few seconds."""


CASES = {
    "shipments": FlowCase(
        build_shipments,
        iter_shipment_surge,
        "shipments.decisions",
        "shipments.dlq",
        "decision_id",
        0.2,
    ),
    "tickets": FlowCase(
        build_tickets, iter_ticket_surge, "tickets.responses", "tickets.dlq", "response_id", 0.05
    ),
}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def cache_samples(flow: str) -> dict[str, float]:
    """The cache series of `flow` (each counts under the flow whose service looked up)."""
    return {
        "get_errors": sample("surgeflow_cache_errors_total", flow=flow, operation="get"),
        "set_errors": sample("surgeflow_cache_errors_total", flow=flow, operation="set"),
        "redis_hits": sample(
            "surgeflow_cache_lookups_total", flow=flow, backend="redis", result="hit"
        ),
        "redis_misses": sample(
            "surgeflow_cache_lookups_total", flow=flow, backend="redis", result="miss"
        ),
    }


def by_id(run: FlowRun, case: FlowCase) -> dict[str, dict[str, Any]]:
    return {out[case.id_field]: out for out in run.by_topic[case.topic]}


def stable(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if k not in VOLATILE}


def sources(out: dict[str, Any]) -> list[str]:
    enrichments = (out["enrichment"], out.get("route_enrichment"))
    return [e["source"] for e in enrichments if e is not None]


def accounted(run: FlowRun, case: FlowCase, generated: list[Generated]) -> int:
    """Inputs covered by the run's outputs and dead letters (each counted once)."""
    outputs, dead = run.by_topic[case.topic], run.by_topic[case.dlq]
    if case.topic == "tickets.responses":
        return len(outputs) + len(dead)
    covered = {e for d in outputs for e in d["event_ids"]}
    assert sum(len(d["event_ids"]) for d in outputs) == len(covered), "an event in two decisions"
    return len(covered) + sum(d["duplicate_events"] for d in outputs) + len(dead)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_second_run_is_answered_by_redis_alone(
    name: str,
    openai_server: OpenAITestServer,
    llm_settings: Callable[..., Settings],
    redis_server: RedisServer,
) -> None:
    case = CASES[name]
    settings = llm_settings(
        redis_url=redis_server.url, kafka_bootstrap_servers=None, cache_front_entries=0
    )  # no in-process front: the process's front would answer the second run by itself
    generated = partial(case.surge, seed=3, steady_events=60, burst_factor=4)
    redis_before = cache_samples(name)["redis_hits"]

    first = run_flow(case.build, settings, generated)
    after_first = openai_server.count()
    second = run_flow(case.build, settings, generated)

    assert after_first > 0
    assert openai_server.count() == after_first, "the second run made requests"
    assert cache_samples(name)["redis_hits"] > redis_before
    one, two = by_id(first, case), by_id(second, case)
    assert one and one.keys() == two.keys()
    assert len(first.by_topic[case.dlq]) == len(second.by_topic[case.dlq])
    answered_by_llm = 0
    for out_id, out in one.items():
        again = two[out_id]
        assert stable(again) == stable(out), out_id
        expected = ["cache" if s == "llm" else s for s in sources(out)]
        assert sources(again) == expected, out_id
        answered_by_llm += "llm" in sources(out)
    assert answered_by_llm > 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_redis_stopped_mid_run_costs_only_cache_hits(
    name: str,
    openai_server: OpenAITestServer,
    llm_settings: Callable[..., Settings],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    case = CASES[name]
    settings = llm_settings(
        redis_url=redis_server.url, kafka_bootstrap_servers=None, redis_retry_seconds=1.0
    )
    generated = partial(case.surge, seed=4, steady_events=60, burst_factor=4)
    openai_server.latency = case.latency
    before = cache_samples(name)
    done, stopped_at = threading.Event(), []

    def stop_redis_once_calls_are_made() -> None:
        while not done.wait(0.01):
            if openai_server.count() >= 10:
                redis_server.stop()
                stopped_at.append(openai_server.count())
                return

    stopper = threading.Thread(target=stop_redis_once_calls_are_made, daemon=True)
    stopper.start()
    try:
        run = run_flow(case.build, settings, generated)
    finally:
        done.set()
        stopper.join(10)

    assert stopped_at and not redis_server.running
    assert openai_server.count() > stopped_at[0], "the run went on after Redis stopped"
    assert accounted(run, case, list(generated())) == len(list(generated()))
    assert all(set(sources(o)) <= {"llm", "cache", "rules"} for o in run.by_topic[case.topic])
    after = cache_samples(name)
    errors = after["get_errors"] - before["get_errors"] + after["set_errors"] - before["set_errors"]
    assert errors > 0
    assert after["redis_misses"] > before["redis_misses"]
    assert sample("surgeflow_cache_backend_up", flow=name) == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == LOGGER]
    assert len(warnings) == 1 and "Redis cache" in warnings[0].getMessage(), "one line per outage"
