"""Scaling out changes where keys live, not what is decided: the shipments flow over one
4-partition topic writes the same decisions and dead letters as 1 process, as 2 processes
(`-i 0/1 -a host:port;host:port`, on free loopback ports) and as 1 process of 2 workers (`-w 2`).

Each run is `python -m bytewax.run flows.shipments` to the end of the topic, with output topics of
its own. The one difference allowed is documented: at the end of a bounded input each process
judges quiet shipments stuck by its own stream clock (`operators.runtime.clock`), so an end-of-input
stuck report may differ for a shipment whose stuck time falls between the partitions' latest
event times.

The tickets flow, whose parsed messages cross to their session's worker in `ParsedGroup`s, writes
the same responses and dead letters as 2 processes as 1 process (all but the time of writing and
the measured latency of each reply).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from operators.config.settings import Settings
from operators.shipments.surge import iter_shipment_surge
from operators.surge.engine import Generated
from operators.tickets.surge import iter_ticket_surge
from tests.flows.kafka_runs import kafka_settings, keyed, produce_raw, with_topics
from tests.flows.recovery_checks import (
    Outputs,
    by_id,
    clock_spread,
    differences,
    events_in_two_decisions,
    unaccounted_inputs,
)
from tests.flows.recovery_runs import (
    TopicFollower,
    flow_env,
    start_flow,
    wait_all,
    with_outputs,
)

pytestmark = [pytest.mark.kafka, pytest.mark.dataflow]

T = TypeVar("T")

SCALES = {"1 process": {}, "2 processes": {"processes": 2}, "2 workers": {"workers": 2}}


def run_to_end(
    settings: Settings,
    logs: Path,
    flow: str = "shipments",
    read: Callable[[Settings], T] = Outputs.read,  # type: ignore[assignment]
    **scale: int,
) -> T:
    """Run `flow` at `scale` to the end of its input, on output topics of its own, and `read`
    what it wrote."""
    run_settings = with_outputs(settings, flow)
    wait_all(start_flow(flow, flow_env(run_settings), logs, **scale), timeout=120)
    return read(run_settings)


def produce_on_every_partition(
    settings: Settings, topic: str, generated: list[Generated]
) -> list[tuple[int, int]]:
    """Produce the surge keyed by its flow keys; it must land on all 4 partitions, so every
    worker of every scale reads some of it."""
    placed = produce_raw(settings, topic, keyed(generated))
    assert len({partition for partition, _ in placed}) == 4
    return placed


@pytest.mark.timeout(180)
def test_two_processes_and_two_workers_write_what_one_process_writes(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap), "shipments")
    generated = list(iter_shipment_surge(seed=17, steady_events=100, burst_factor=6))
    placed = produce_on_every_partition(settings, settings.topics.shipments_events, generated)

    logs = tmp_path / "logs"
    runs = {name: run_to_end(settings, logs, **scale) for name, scale in SCALES.items()}

    spread = clock_spread(generated, placed)
    for name, out in runs.items():
        assert out.copies == 0, f"{name}: a record was written twice without any restart"
        assert unaccounted_inputs(generated, placed, out.decisions, out.dead) == [], name
        assert events_in_two_decisions(out.decisions) == [], name
        assert differences(runs["1 process"], out, spread) == [], name
    assert len(runs["1 process"].decisions) > 500


VARYING = ("responded_at", "enrichment", "route_enrichment", "failed_at")
"""Fields a rerun may change: when a response or dead letter was written, the measured latency of
a reply."""


def ticket_outputs(settings: Settings) -> dict[str, list[dict]]:
    """Responses and dead letters by id, each without its `VARYING` fields (the enrichments'
    source and prompt version kept)."""
    topics = [settings.topics.tickets_responses, settings.topics.tickets_dlq]
    with TopicFollower(settings, topics) as follower:
        records = follower.read_to_end()
    out: dict[str, list[dict]] = {}
    for topic, id_field in zip(topics, ("response_id", "dead_letter_id"), strict=True):
        for record_id, copies in by_id([r for r in records if r.topic == topic], id_field).items():
            out[record_id] = [
                {
                    **{k: v for k, v in copy.items() if k not in VARYING},
                    "replied_by": (copy.get("enrichment") or {}).get("source"),
                }
                for copy in copies
            ]
    return out


@pytest.mark.timeout(180)
def test_two_processes_answer_tickets_as_one_process_does(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap), "tickets")
    generated = list(iter_ticket_surge(seed=19, steady_events=60, burst_factor=6))
    produce_on_every_partition(settings, settings.topics.tickets_messages, generated)

    runs = {
        name: run_to_end(settings, tmp_path / "logs", "tickets", ticket_outputs, **scale)
        for name, scale in {"1 process": {}, "2 processes": {"processes": 2}}.items()
    }

    one, two = runs["1 process"], runs["2 processes"]
    assert sum(len(copies) for copies in one.values()) == len(generated)
    assert two == one
    assert sum(1 for copies in one.values() if "response_id" in copies[0]) > 300
