"""Scaling out changes where keys live, not what is decided: the shipments flow over one
4-partition topic writes the same decisions and dead letters as 1 process, as 2 processes
(`-i 0/1 -a host:port;host:port`, on free loopback ports) and as 1 process of 2 workers (`-w 2`).

Each run is `python -m bytewax.run flows.shipments` to the end of the topic, with output topics of
its own. The one difference allowed is documented: at the end of a bounded input each process
judges quiet shipments stuck by its own stream clock (`operators.runtime.clock`), so an end-of-input
stuck report may differ for a shipment whose stuck time falls between the partitions' latest
event times.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from operators.config.settings import Settings
from operators.shipments.surge import iter_shipment_surge
from tests.flows.kafka_runs import kafka_settings, keyed, produce_raw, with_topics
from tests.flows.recovery_checks import (
    Outputs,
    clock_spread,
    differences,
    events_in_two_decisions,
    unaccounted_inputs,
)
from tests.flows.recovery_runs import flow_env, start_flow, wait_all, with_outputs

pytestmark = [pytest.mark.kafka, pytest.mark.dataflow]

SCALES = {"1 process": {}, "2 processes": {"processes": 2}, "2 workers": {"workers": 2}}


def run_to_end(settings: Settings, logs: Path, **scale: int) -> Outputs:
    """Run the flow at `scale` to the end of its input, on output topics of its own."""
    run_settings = with_outputs(settings, "shipments")
    wait_all(start_flow("shipments", flow_env(run_settings), logs, **scale), timeout=120)
    return Outputs.read(run_settings)


@pytest.mark.timeout(180)
def test_two_processes_and_two_workers_write_what_one_process_writes(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap), "shipments")
    generated = list(iter_shipment_surge(seed=17, steady_events=100, burst_factor=6))
    placed = produce_raw(settings, settings.topics.shipments_events, keyed(generated))
    assert len({partition for partition, _ in placed}) == 4

    logs = tmp_path / "logs"
    runs = {name: run_to_end(settings, logs, **scale) for name, scale in SCALES.items()}

    spread = clock_spread(generated, placed)
    for name, out in runs.items():
        assert out.copies == 0, f"{name}: a record was written twice without any restart"
        assert unaccounted_inputs(generated, placed, out.decisions, out.dead) == [], name
        assert events_in_two_decisions(out.decisions) == [], name
        assert differences(runs["1 process"], out, spread) == [], name
    assert len(runs["1 process"].decisions) > 500
