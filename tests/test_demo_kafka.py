"""`make demo-kafka`'s script runs both flows through a real broker and Redis and prints counts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.terminal import count_labels, run_drawing, run_on_pipes

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.demo, pytest.mark.kafka]


def _count(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the output:\n{text[-3000:]}"
    return int(found.group(1))


def test_demo_kafka_runs_both_flows_through_kafka(kafka_bootstrap: str, redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURGEFLOW_", "OPENAI_"))}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "REDIS_URL": redis_url}
    env |= {"SURGEFLOW_SURGE_STEADY_EVENTS": "100", "SURGEFLOW_SURGE_BURST_FACTOR": "3"}
    done = subprocess.run(
        [sys.executable, "scripts/demo_kafka.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert f"KAFKA_BOOTSTRAP_SERVERS={kafka_bootstrap}" in out and "started here" not in out
    prefix = re.search(r"topics: (demo-[0-9a-f]{8})\.\*", out).group(1)
    for name, key in [("shipments", "shipment_id"), ("tickets", "session_id")]:
        section = out.split(f"== flows.{name} over Kafka")[1].split("\n== ")[0]
        records_in = _count(r"loaded (\d+) records onto", section)
        outputs = _count(r"records in -> (\d+) outputs", section)
        dead = _count(r"outputs \+ (\d+) dead letters", section)
        assert records_in == 400 and outputs > 300 and dead > 0
        assert outputs + dead <= records_in
        assert re.search(r"dead letters by reason: \w+=\d+", section)
        assert f"{prefix}.{name}." in section
        assert f"Kafka key = {key}: yes ({outputs} of {outputs} outputs)" in section
        assert re.search(r"\d+ records/s", section)
    shipments, tickets = out.split("== flows.tickets")
    assert "ids unique: yes" in shipments
    # A message sent twice is answered twice under one response_id; nothing else repeats.
    assert re.search(r"ids unique: (yes|no .*the same answer again)", tickets)
    assert "demo-kafka finished in" in out
    assert "\x1b" not in out + done.stderr and "\r" not in out + done.stderr  # no bar on a pipe


def test_demo_kafka_on_a_terminal_shows_bars_and_prints_the_same_lines(
    kafka_bootstrap: str, redis_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURGEFLOW_", "OPENAI_"))}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "REDIS_URL": redis_url}
    env |= {"SURGEFLOW_SURGE_STEADY_EVENTS": "50", "SURGEFLOW_SURGE_BURST_FACTOR": "3"}
    env |= {"PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "scripts" / "demo_kafka.py")]
    shown = run_drawing(command, env)
    assert shown.count("producing") >= 2 and re.search(r"producing .* 200/200 records", shown)
    for name in ("shipments", "tickets"):
        section = shown.split(f"== flows.{name} over Kafka")[1].split("\n== ")[0]
        # the bar's last count is what the flow wrote: its outputs and dead letters
        out = [int(n) for n in re.findall(rf"flows\.{name} .* (\d+)/\1 records out", section)]
        outputs = _count(r"records in -> (\d+) outputs", section)
        dead = _count(r"outputs \+ (\d+) dead letters", section)
        assert out and out[-1] == outputs + dead
        assert re.search(rf"reading back .* {outputs + dead}/{outputs + dead} records", section)
    code, piped, err = run_on_pipes(command, env, timeout=300)
    assert code == 0, err[-2000:]
    assert b"\x1b" not in piped + err
    assert count_labels(piped.decode()) == count_labels(shown) != []
    # with two workers, which records arrive late depends on the interleaving: the counts differ
    assert re.findall(r"loaded \d+ records", piped.decode()) == re.findall(
        r"loaded \d+ records", shown
    )
