"""`create_topics` and `python -m operators.connectors.kafka.topics` against a real broker."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from operators.connectors.kafka.topics import create_topics, flow_topics
from tests.flows.kafka_runs import kafka_settings

pytestmark = pytest.mark.kafka


def test_topics_are_created_once_with_the_configured_partitions(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap, topic_partitions=3)
    first = create_topics(settings, flow_topics(settings, "shipments"))
    assert [(s.created, s.partitions) for s in first] == [(True, 3)] * 3
    again = create_topics(settings, flow_topics(settings, "shipments"), partitions=6)
    assert [(s.created, s.partitions) for s in again] == [(False, 3)] * 3


def test_flow_topics_name_input_output_and_dead_letters(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap)
    assert flow_topics(settings, "all") == flow_topics(settings, "shipments") + flow_topics(
        settings, "tickets"
    )
    assert flow_topics(settings, "tickets")[2] == settings.topics.tickets_dlq


def test_the_command_creates_a_flows_topics(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SURGEFLOW_TOPIC_TICKETS_MESSAGES": settings.topics.tickets_messages,
        "SURGEFLOW_TOPIC_TICKETS_RESPONSES": settings.topics.tickets_responses,
        "SURGEFLOW_TOPIC_TICKETS_DLQ": settings.topics.tickets_dlq,
        "SURGEFLOW_TOPIC_PARTITIONS": "2",
    }
    command = [sys.executable, "-m", "operators.connectors.kafka.topics", "--flow", "tickets"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("created") == 3 and "(2 partitions)" in done.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert again.stdout.count("exists") == 3
