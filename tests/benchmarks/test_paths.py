"""The rules-path benchmarks still run: `benchmarks.rules_path` and `benchmarks.tickets_path`
in `--quick` mode over the real broker, each tree writing the same outputs (a benchmark whose
flow or domain API drifted fails here, not in the next measuring session)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.kafka


def run(module: str, *args: str, bootstrap: str) -> str:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SURGEFLOW_NO_PROGRESS": "1"}
    env.pop("OPENAI_BASE_URL", None)
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", module, "--quick", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_shipments_rules_path_benchmark_runs(kafka_bootstrap: str) -> None:
    before = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    out = run("benchmarks.rules_path", "--kafka", "--rounds", "1", bootstrap=kafka_bootstrap)
    rows = [line for line in out.splitlines() if line.startswith("| memory") or
            line.startswith("| kafka")]  # fmt: skip
    assert len(rows) == 2, out
    assert len({row.rsplit("|", 2)[-2].strip() for row in rows}) == 1, "outputs differ"
    assert (ROOT / "docs" / "BENCHMARKS.md").read_text() == before


def test_the_tickets_rules_path_benchmark_runs(kafka_bootstrap: str) -> None:
    before = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    out = run(
        "benchmarks.tickets_path", "--against", "HEAD", "--against", "HEAD~1",
        bootstrap=kafka_bootstrap,
    )  # fmt: skip
    assert "OUTPUT COUNTS DIFFER" not in out
    assert "| kafka | head |" in out and "| file | head |" in out, out
    assert out.count("Within-round ratios, head over base ") == 2, out
    assert (ROOT / "docs" / "BENCHMARKS.md").read_text() == before


def test_the_tickets_profile_counts_own_samples_after_start_up() -> None:
    from benchmarks.tickets_path import shares, top_functions

    raw = "\n".join(
        [
            "<module> (run.py);_locate_dataflow (run.py);build (flows/tickets.py) 50",
            "<module> (run.py);parse_ticket (operators/tickets/parse.py);clean_text (p.py) 6",
            "<module> (run.py);parse_ticket (operators/tickets/parse.py) 2",
            "<module> (run.py);parse_tickets (operators/tickets/parse.py);_parse (p.py) 3",
            "<module> (run.py) 1",
        ]
    )
    top = top_functions(raw, 2)
    assert [name for name, _ in top] == [
        "clean_text (p.py)",
        "_parse (p.py)",
    ]
    assert [share for _, share in top] == pytest.approx([100 * 6 / 12, 100 * 3 / 12])
    assert dict(shares(raw))["parse (clean text, entities)"] == pytest.approx(100 * 11 / 12)


def test_the_tickets_profile_counts_agent_steps_in_lanes_and_a_batch_at_a_time() -> None:
    from benchmarks.tickets_path import shares

    raw = "\n".join(
        [
            "<module> (run.py);LaneLogic.on_batch (operators/runtime/async_step.py) 3",
            "<module> (run.py);map_async.<locals>.answer_all (operators/runtime/async_step.py) 1",
            "<module> (run.py) 4",
        ]
    )
    agents = "agent steps (runtime; both steps, the two agents included)"
    assert dict(shares(raw))[agents] == pytest.approx(100 * 4 / 8)
