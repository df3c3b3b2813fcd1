"""`python -m operators.connectors.kafka.load`: a flow's input onto Kafka, keyed by the flow key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from operators.connectors.kafka.load import file_records, load_records, surge_records
from operators.connectors.kafka.topics import create_topics
from tests.flows.kafka_runs import kafka_settings, read_topic

pytestmark = pytest.mark.kafka

SAMPLES = Path(__file__).resolve().parents[4] / "data" / "samples"


def test_the_surge_lands_keyed_by_shipment(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap, surge_steady_events=30)
    topic = settings.topics.shipments_events
    create_topics(settings, [topic])
    expected = list(surge_records(settings, "shipments"))
    assert load_records(settings, topic, iter(expected), flow="test") == len(expected)
    back = read_topic(settings, topic)
    assert sorted(r.value for r in back) == sorted(r.value for r in expected)
    keys = {r.value: r.key for r in back}
    assert all(keys[r.value] == (r.key.encode() if r.key else None) for r in expected)


def test_a_file_lands_line_by_line_through_the_command(kafka_bootstrap: str, tmp_path) -> None:
    settings = kafka_settings(kafka_bootstrap)
    topic = settings.topics.tickets_messages
    create_topics(settings, [topic])
    lines = SAMPLES / "tickets.sample.jsonl"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SURGEFLOW_TOPIC_TICKETS_MESSAGES": topic,
    }
    command = [
        sys.executable,
        "-m",
        "operators.connectors.kafka.load",
        "tickets",
        "--file",
        str(lines),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = list(file_records(lines, "session_id"))
    assert f"produced {len(expected)} records to {topic}" in done.stdout
    back = read_topic(settings, topic)
    assert sorted((r.key, r.value) for r in back) == sorted(
        (None if r.key is None else r.key.encode(), r.value) for r in expected
    )
