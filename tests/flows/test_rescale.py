"""Rescaling is stop, then resume with another process count from the same recovery directory.

A run of the shipments flow with recovery (`-r DIR -s 1 -b 0`, 4 partitions) is SIGKILLed
mid-stream, while a producer is still adding input to the 4-partition topic, and resumed to the
end of the topic with another number of processes: 2 processes resume as 1, and 1 resumes as 2.
Nothing is lost: every input has its decision or dead letter, and after dropping replays by id the
output is the output of one uninterrupted process over the same topic (up to the end-of-input
stuck reports each process judges by its own clock; see `test_processes`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from operators.shipments.surge import iter_shipment_surge
from tests.flows.kafka_runs import kafka_settings, keyed, with_topics
from tests.flows.recovery_checks import (
    Outputs,
    clock_spread,
    differences,
    disagreeing_copies,
    events_in_two_decisions,
    unaccounted_inputs,
)
from tests.flows.recovery_runs import (
    LiveProducer,
    TopicFollower,
    flow_env,
    init_recovery,
    kill_all,
    start_flow,
    wait_all,
    with_outputs,
)

pytestmark = [pytest.mark.kafka, pytest.mark.dataflow]


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("before", "after"), [(2, 1), (1, 2)], ids=["2 to 1", "1 to 2"])
def test_a_run_stopped_mid_stream_resumes_with_another_process_count(
    before: int, after: int, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap, kafka_tail=True), "shipments")
    generated = list(iter_shipment_surge(seed=23, steady_events=60, burst_factor=6))
    store, logs, env = (
        init_recovery(tmp_path / "recovery", 4),
        tmp_path / "logs",
        flow_env(settings),
    )
    producer = LiveProducer(settings, settings.topics.shipments_events, keyed(generated), rate=40.0)
    out_topic = settings.topics.shipments_decisions

    producer.start()
    run = start_flow("shipments", env, logs, processes=before, recovery=store)
    with TopicFollower(settings, [out_topic]) as follower:
        follower.wait_for(lambda r: len(r) >= 60, timeout=60, running=run)
    stopped_at = producer.sent
    kill_all(run)
    placed = producer.finish()
    assert stopped_at < len(generated), "the run was not stopped mid-stream"
    to_end = {**env, "SURGEFLOW_KAFKA_TAIL": "false"}
    wait_all(start_flow("shipments", to_end, logs, processes=after, recovery=store), timeout=120)
    resumed = Outputs.read(settings)

    reference_settings = with_outputs(settings.replaced(kafka_tail=False), "shipments")
    wait_all(start_flow("shipments", flow_env(reference_settings), logs), timeout=120)
    reference = Outputs.read(reference_settings)

    assert unaccounted_inputs(generated, placed, resumed.decisions, resumed.dead) == []
    assert disagreeing_copies(resumed.decisions) == []
    assert events_in_two_decisions(resumed.decisions) == []
    assert differences(reference, resumed, clock_spread(generated, placed)) == []
    assert resumed.copies > 0, "the resumed run replayed nothing: the kill came after the end"
