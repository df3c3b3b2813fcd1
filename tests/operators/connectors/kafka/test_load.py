"""`python -m operators.connectors.kafka.load`: a flow's input onto Kafka, keyed by the flow key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from operators.connectors.kafka.load import file_records, load_records, surge_records
from operators.connectors.kafka.topics import create_topics
from tests.flows.kafka_runs import kafka_settings, read_topic
from tests.support.terminal import ESCAPE, plain, run_on_pipes, run_on_terminal

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


def _load_command(
    kafka_bootstrap: str, topic: str, *extra: str
) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SURGEFLOW_TOPIC_SHIPMENTS_EVENTS": topic,
        "SURGEFLOW_SURGE_STEADY_EVENTS": "30",  # 330 records with the burst factor 10
        "SURGEFLOW_SURGE_BURST_FACTOR": "10",
        "TERM": "xterm-256color",
    }
    env.pop("SURGEFLOW_NO_PROGRESS", None)
    command = [sys.executable, "-m", "operators.connectors.kafka.load", "shipments", *extra]
    return command, env


def test_a_terminal_sees_a_bar_and_a_pipe_sees_plain_lines_of_the_same_load(
    kafka_bootstrap: str,
) -> None:
    on_terminal = kafka_settings(kafka_bootstrap).topics.shipments_events
    on_pipes = kafka_settings(kafka_bootstrap).topics.shipments_events
    quiet = kafka_settings(kafka_bootstrap).topics.shipments_events
    create_topics(kafka_settings(kafka_bootstrap), [on_terminal, on_pipes, quiet])

    code, screen = run_on_terminal(*_load_command(kafka_bootstrap, on_terminal))
    assert code == 0, plain(screen)
    assert ESCAPE.search(screen), "no control sequence: no bar was drawn"
    shown = plain(screen)
    assert "producing" in shown and "━" in shown  # the label and the bar
    assert "330/330 records" in shown  # the count against the known total
    assert f"produced 330 records to {on_terminal}" in shown

    code, out, err = run_on_pipes(*_load_command(kafka_bootstrap, on_pipes))
    assert code == 0, err
    assert b"\x1b" not in out + err and b"\r" not in out + err
    assert out.decode().startswith(f"produced 330 records to {on_pipes} in ")
    assert err == b""

    # --no-progress on a terminal: the plain line only
    code, screen = run_on_terminal(*_load_command(kafka_bootstrap, quiet, "--no-progress"))
    assert code == 0, plain(screen)
    assert not ESCAPE.search(screen) and b"producing" not in screen
    assert screen.replace(b"\r\n", b"\n").decode().startswith(f"produced 330 records to {quiet}")

    def records(topic: str) -> list[tuple[Optional[bytes], Optional[bytes]]]:
        back = read_topic(kafka_settings(kafka_bootstrap), topic)
        return sorted(((r.key, r.value) for r in back), key=lambda kv: (kv[0] or b"", kv[1] or b""))

    landed = records(on_terminal)
    assert len(landed) == 330
    assert landed == records(on_pipes) == records(quiet)
