"""The README's first command (`make demo`) runs both flows and prints what came out."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

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
