"""The surge benchmark keeps working: a tiny ramp and replay of each flow (seconds) on the real
broker, Redis and the test LLM server, whose outputs must hang together, and the planner's
choice of the resource that binds. Nothing here is timed: the figures are only checked for
consistency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.surge.analysis import backlog, step_rows, sustainable_rate
from benchmarks.surge.measure import parse_metrics
from benchmarks.surge.plan import Figures, Request, plan
from benchmarks.surge.run import RunResult, Sample

ROOT = Path(__file__).resolve().parents[2]
PLAN = [sys.executable, "-m", "benchmarks.surge", "plan", "--json"]

FIGURES = Figures(
    flow="tickets",
    per_process_rate=20.0,
    calls_per_event=1.5,
    tokens_per_event=600.0,
    cost_per_event=0.0002,
    cost_per_event_uncached=0.0003,
)


@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.timeout(240)
@pytest.mark.parametrize("flow", ["shipments", "tickets"])
def test_a_quick_run_writes_a_consistent_report(
    flow: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "benchmarks.surge", flow, "--quick", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=220)
    assert done.returncode == 0, done.stderr[-3000:]

    data = json.loads((tmp_path / "surge" / f"{flow}.json").read_text())
    rows = data["ramp"]
    assert [(r["processes"], r["target_rate"]) for r in rows] == [
        (1, data["ramp"][0]["target_rate"]),
        (1, 3 * data["ramp"][0]["target_rate"]),
    ]
    assert all(r["input_rate"] > 0 for r in rows)
    assert sum(r["output_rate"] for r in rows) > 0
    assert all(r["rss_mb"] > 0 and r["cpu_cores"] > 0 for r in rows)

    replay = data["replay"]
    assert all(run["drained"] for run in data["runs"]), data["runs"]  # every input read and done
    assert replay["inputs"] > 0 and replay["outputs"] > 0
    assert sum(replay["sources"].values()) == replay["outputs"]
    assert set(replay["sources"]) <= {"llm", "cache", "rules"}
    assert replay["burst_rate"] == pytest.approx(10 * replay["steady_rate"])
    assert replay["cost"] > 0  # the LLM path was taken against the test server
    assert replay["p50"] is not None and replay["p99"] >= replay["p50"]  # outputs were paired
    assert data["plan"]["calls_per_event"] > 0

    report = (tmp_path / "SURGE.md").read_text()
    assert f"<!-- begin {flow} -->" in report and "### Ramp" in report
    assert report.count(f"| 1 | {rows[0]['target_rate']:g} |") == 1
    for image in ("ramp", "replay", "cost"):
        png = tmp_path / "surge" / f"{flow}-{image}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"surge/{flow}-{image}.png" in report

    figures = str(tmp_path / "surge" / f"{flow}.json")
    planned = subprocess.run(
        [*PLAN, "--flow", flow, "--figures", figures, "--peak-rate", "1000", "--llm-rpm", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["binds"] == "LLM rate limit"


def test_the_plan_binds_on_the_resource_the_peak_exhausts_first() -> None:
    # a tight provider limit: 60 requests/min hold 0.67 events/s at 1.5 calls per event
    tight = plan(FIGURES, Request(peak_rate=100, llm_rpm=60))
    assert tight.binds == "LLM rate limit"
    assert tight.llm_share == pytest.approx((60 / 60 / 1.5) / 100)
    # a budget of $0.06/min pays 5 events/s at $0.0002 each
    poor = plan(FIGURES, Request(peak_rate=100, llm_rpm=1_000_000, budget_usd_per_minute=0.06))
    assert poor.binds == "budget"
    assert poor.llm_share == pytest.approx(0.05)
    # no fixed limit: processes are added until they hold the peak, and they bind
    free = plan(FIGURES, Request(peak_rate=100))
    assert free.binds == "processes"
    assert free.processes == 8  # 100 / (20 × 0.7) rounded up
    assert free.partitions >= free.processes and free.llm_share == 1.0
    # a slow provider: the concurrency of 16 calls per loop needs more loops than the rate does
    slow = plan(FIGURES, Request(peak_rate=100, latency_p50=8.0, latency_p99=20.0))
    assert slow.binds == "LLM concurrency"
    assert slow.processes > free.processes


def _sample(t: float, phase: int, appended: int, read: int, pending: float = 0.0) -> Sample:
    scraped = {
        "records_in": float(read),
        "pending": pending,
        "calls": {"success": t, "cache_hit": t / 2},
        "fallbacks": {},
        "tokens_in": 10 * t,
        "tokens_out": t,
        "cost": 0.001 * t,
        "cost_saved": 0.0005 * t,
    }
    return Sample(t, phase, appended, appended, read, 0, scraped, 2**20, t / 2, read)


def test_a_step_is_held_while_the_backlog_stays_bounded() -> None:
    held = [_sample(t, 0, 10 * t, 10 * t - 5) for t in range(11)]
    falling_behind = [
        _sample(t, 1, 100 + 50 * (t - 10), 100 + 20 * (t - 10)) for t in range(11, 21)
    ]
    run = RunResult(
        "tickets",
        1,
        [(10.0, 10.0), (50.0, 10.0)],
        held + falling_behind,
        20.0,
        False,
        {},
        {},
        0.0,
        0,
    )
    first, second = step_rows(run)
    assert first.sustainable and not second.sustainable
    assert first.input_rate == pytest.approx(10.0) and second.input_rate == pytest.approx(50.0)
    assert first.cache_hit_ratio == pytest.approx(1 / 3)
    assert first.cost_per_1000_uncached == pytest.approx(1.5 * first.cost_per_1000)
    assert sustainable_rate([first, second]) == pytest.approx(10.0)
    assert backlog(falling_behind[-1]) == pytest.approx(600 - 300)


def test_metrics_pages_are_summed_into_the_report_figures() -> None:
    page = "\n".join(
        [
            'bytewax_kafka_consumer_lag{step_id="s",topic="t",partition="0"} 7',
            'bytewax_kafka_consumer_lag{step_id="s",topic="t",partition="1"} 3',
            'surgeflow_records_in_total{flow="tickets"} 100',
            "surgeflow_llm_pending 4",
            'surgeflow_llm_calls_total{flow="tickets",operation="chat",outcome="success"} 9',
            'surgeflow_llm_calls_total{flow="tickets",operation="embeddings",outcome="success"} 1',
            'surgeflow_llm_fallbacks_total{flow="tickets",reason="budget",target="rules"} 2',
            'gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",gen_ai_provider_name="o",'
            'gen_ai_request_model="m",gen_ai_token_type="input"} 500',
            'gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",gen_ai_provider_name="o",'
            'gen_ai_request_model="m",gen_ai_token_type="output"} 50',
            'surgeflow_llm_cost_usd_total{flow="tickets",gen_ai_request_model="m"} 0.25',
        ]
    )
    one = parse_metrics(page + "\n")
    both = one.add(one)
    assert (one.lag, one.records_in, one.pending) == (10.0, 100.0, 4.0)
    assert one.calls == {"success": 10.0} and one.fallbacks == {"budget": 2.0}
    assert (both.tokens_in, both.tokens_out, both.cost, both.up) == (1000.0, 100.0, 0.5, 2)
