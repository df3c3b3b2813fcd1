"""The README's first command (`make demo`) runs both flows and prints what came out."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.terminal import count_labels, run_drawing, run_on_pipes

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.demo


def test_make_demo_prints_decisions_and_responses() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURGEFLOW_", "OPENAI_"))}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        ["make", "--no-print-directory", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    decisions = int(re.search(r"shipments\.decisions=(\d+)", out).group(1))
    responses = int(re.search(r"tickets\.responses=(\d+)", out).group(1))
    dead = int(re.search(r"shipments\.dlq=(\d+)", out).group(1))
    assert decisions > 10_000 and responses > 20_000 and dead > 100
    assert re.search(r"action=(expedite|escalate|notify_customer)", out)
    assert "demo finished in" in out
    lines = (ROOT / "out" / "shipments.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["topic"] == "shipments.decisions" and first["value"]["decision_id"]


def test_the_demo_on_a_terminal_shows_a_bar_per_flow_and_prints_the_same_lines() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURGEFLOW_", "OPENAI_"))}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("REDIS_URL", None)
    env |= {"SURGEFLOW_SURGE_STEADY_EVENTS": "50", "SURGEFLOW_SURGE_BURST_FACTOR": "3"}
    env |= {"PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "scripts" / "demo.py")]
    shown = run_drawing(command, env)
    for name in ("shipments", "tickets"):
        # the bar's last count is the flow's output, as the summary line counts it
        counted = re.findall(rf"flows\.{name} .* (\d+)/\1 records out", shown)
        written = re.search(rf"== flows\.{name}: (\d+) records out", shown)
        assert counted and written and counted[-1] == written.group(1)
    code, out, err = run_on_pipes(command, env, timeout=300)
    assert code == 0, err[-2000:]
    assert b"\x1b" not in out + err and b"\r" not in out + err
    assert count_labels(out.decode()) == count_labels(shown) != []
