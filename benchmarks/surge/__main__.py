"""Surge capacity of a flow: a ramp, a replay of the bundled surge, a report with plots, a planner.

    python -m benchmarks.surge shipments          # about 10 minutes: docs/SURGE.md, docs/surge/
    python -m benchmarks.surge tickets
    python -m benchmarks.surge tickets --quick    # seconds: a tiny ramp and replay, to out/surge/
    python -m benchmarks.surge plan --flow tickets --peak-rate 200 --llm-rpm 10000 \
        --latency-p50 0.4 --latency-p99 4

Services: `KAFKA_BOOTSTRAP_SERVERS` if set, else a broker started from the jars
(`scripts/kafka_broker.py`); a `redis-server` of the run's own (`scripts/redis_server.py`, one
database per run, so every run starts with a cold cache); the OpenAI-compatible test server in a
process of its own (`python -m tests.support.openai_server`) with the latency, the
requests-per-minute limit and the error rate given here. The flow's own shared limit
(`SURGEFLOW_LLM_REQUESTS_PER_MINUTE`) is set to the provider's unless `--flow-llm-rpm` says
otherwise.

1. Ramp: for 1 and 2 processes (`--processes`), fresh topics and the flow started, then the
   input at `--base-rate` × each of `--steps` for `--step-seconds` each; a row per step.
2. Replay: the bundled surge (`--replay-steady` steady events, a 10x burst) over
   `--replay-seconds` of wall time, then `--cooldown-seconds` at the steady rate; how long the
   backlog took to drain after the burst.
3. Report: `<out>/SURGE.md` (the flow's section), `<out>/surge/<flow>-{ramp,replay,cost}.png`,
   `<out>/surge/<flow>.json` (the figures `plan` reads).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Optional

from operators.runtime import progress

from .analysis import replay_figures, step_rows, sustainable_rate
from .plan import Request, format_plan, load_figures, plan
from .report import flow_section, plot_cost, plot_runs, write_figures, write_report
from .run import ROOT, Endpoint, FlowConfig, RunResult, llm_endpoint, measure

FLOWS = ("shipments", "tickets")
DEFAULTS: dict[str, dict[str, Any]] = {
    # full run: 2 ramps of 6 steps × 25 s, a 100 s replay + 20 s cool-down, drains: ~10 minutes
    "shipments": {"base_rate": 150.0, "replay_steady": 2000},
    "tickets": {"base_rate": 4.0, "replay_steady": 100},
}
QUICK: dict[str, Any] = {
    "processes": "1",
    "steps": "1,3",
    "step_seconds": 5.0,
    "replay_seconds": 6.0,
    "cooldown_seconds": 2.0,
    "drain_limit": 40.0,
    "replay_drain_limit": 40.0,
}
QUICK_FLOW: dict[str, dict[str, Any]] = {
    "shipments": {"base_rate": 20.0, "replay_steady": 60},
    "tickets": {"base_rate": 3.0, "replay_steady": 10},
}


def progress_of(bar: progress.Bar) -> Callable[[float, str], None]:
    """An update of `bar` (seconds of planned input) from each run's seconds done and step."""
    offset = [0.0, 0.0]  # seconds of earlier runs, last value seen

    def update(done: float, text: str) -> None:
        if done < offset[1]:  # a new run started
            offset[0] += offset[1]
        offset[1] = done
        bar.completed(offset[0] + done)
        bar.describe(text)

    return update


def flow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a run of seconds (the CI test's)")
    parser.add_argument("--out", type=Path, help="report folder (default docs/, quick: out/surge)")
    parser.add_argument("--processes", help="comma-separated process counts (default 1,2)")
    parser.add_argument("--base-rate", type=float, help="events/s of the ramp's first step")
    parser.add_argument("--steps", help="multiples of the base rate (default 1,2,4,6,8,10)")
    parser.add_argument("--step-seconds", type=float)
    parser.add_argument("--replay-steady", type=int, help="steady events of the replayed surge")
    parser.add_argument("--replay-seconds", type=float, help="wall time of steady + burst")
    parser.add_argument("--cooldown-seconds", type=float)
    parser.add_argument("--drain-limit", type=float, help="seconds a ramp waits for a drain")
    parser.add_argument("--replay-drain-limit", type=float, help="seconds the replay waits")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--latency-p50", type=float, default=0.4)
    parser.add_argument("--latency-p99", type=float, default=4.0)
    parser.add_argument("--llm-rpm", type=int, default=3000, help="provider requests/minute")
    parser.add_argument("--error-rate", type=float, default=0.01, help="provider 5xx share")
    parser.add_argument(
        "--flow-llm-rpm", type=int, help="the flow's own limit (default: --llm-rpm)"
    )
    parser.add_argument("--budget-usd-per-minute", type=float, default=0.0)
    parser.add_argument("--note", default="", help="a sentence added to the report")
    progress.add_flag(parser)
    parser.add_argument("--plan-peak", type=float, help="peak of the report's example plan")


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    chosen: dict[str, Any] = {
        "processes": "1,2",
        "steps": "1,2,4,6,8,10",
        "step_seconds": 25.0,
        "replay_seconds": 100.0,
        "cooldown_seconds": 20.0,
        "drain_limit": 45.0,
        "replay_drain_limit": 120.0,
        **DEFAULTS[args.flow],
    }
    if args.quick:
        chosen |= QUICK | QUICK_FLOW[args.flow]
    for name in list(chosen):
        given = getattr(args, name, None)
        if given is not None:
            chosen[name] = given
    chosen["processes"] = [int(p) for p in str(chosen["processes"]).split(",")]
    chosen["steps"] = [float(s) for s in str(chosen["steps"]).split(",")]
    chosen["out"] = args.out or (ROOT / "out" / "surge" if args.quick else ROOT / "docs")
    return chosen


def run_flow(args: argparse.Namespace) -> int:
    from operators.config.settings import Settings
    from scripts.redis_server import RedisServer

    flow = args.flow
    c = resolve(args)
    endpoint = Endpoint(
        p50=args.latency_p50, p99=args.latency_p99, rpm=args.llm_rpm, error_rate=args.error_rate
    )
    flow_rpm = args.llm_rpm if args.flow_llm_rpm is None else args.flow_llm_rpm
    config = FlowConfig(
        partitions=args.partitions,
        llm_rpm=flow_rpm,
        budget_usd_per_minute=args.budget_usd_per_minute,
    )
    ramp_phases = [(c["base_rate"] * m, c["step_seconds"]) for m in c["steps"]]
    half = c["replay_seconds"] / 2
    steady_rate = c["replay_steady"] / half
    replay_phases = [
        (steady_rate, half),
        (steady_rate * 10, half),
        (steady_rate, c["cooldown_seconds"]),
    ]
    planned = sum(s for _, s in ramp_phases) * len(c["processes"])
    planned += sum(s for _, s in replay_phases)
    bars = ExitStack()
    off = progress.off_by_flag(args)
    bar = bars.enter_context(
        progress.progress("surge", total=round(planned), unit="s", off=off, refresh=1)
    )
    update = progress_of(bar)
    load_before = os.getloadavg()
    started = time.monotonic()
    ramps: list[RunResult] = []
    work = Path(tempfile.mkdtemp(prefix="surgeflow-surge-report-"))
    with ExitStack() as stack:
        from scripts.kafka_broker import given_or_started

        bootstrap = stack.enter_context(given_or_started())
        redis = stack.enter_context(RedisServer())
        log = stack.enter_context((work / "llm-server.log").open("w"))
        url = stack.enter_context(llm_endpoint(endpoint, log))
        settings = Settings(kafka_bootstrap_servers=bootstrap)
        db = [0]

        def services() -> dict[str, str]:
            db[0] += 1  # a database per run: each run starts with a cold cache
            return {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "REDIS_URL": redis.url.rsplit("/", 1)[0] + f"/{db[0]}",
                "OPENAI_BASE_URL": url,
                "OPENAI_API_KEY": "surge-benchmark",
            }

        common: dict[str, Any] = {"settings": settings, "config": config, "progress": update}
        for processes in c["processes"]:
            ramps.append(
                measure(
                    flow,
                    services=services(),
                    processes=processes,
                    phases=ramp_phases,
                    drain_limit=c["drain_limit"],
                    **common,
                )
            )
        replay_run = measure(
            flow,
            services=services(),
            processes=1,
            phases=replay_phases,
            seed=7,
            steady=c["replay_steady"],
            burst=10,
            drain_limit=c["replay_drain_limit"],
            **common,
        )
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    update(planned, "done")
    bars.close()

    rows = [row for run in ramps for row in step_rows(run)]
    replay = replay_figures(replay_run)
    out: Path = c["out"]
    images = {
        "ramp": f"surge/{flow}-ramp.png",
        "replay": f"surge/{flow}-replay.png",
        "cost": f"surge/{flow}-cost.png",
    }
    plot_runs(out / images["ramp"], f"{flow}: ramp", ramps)
    plot_runs(
        out / images["replay"],
        f"{flow}: bundled surge replayed",
        [replay_run],
        shade=(replay_phases[0][1], replay.burst_end),
    )
    plot_cost(out / images["cost"], f"{flow}: cost per 1,000 input events", rows, replay)

    last = replay_run.samples[-1].scraped
    calls = sum(last["calls"].values())
    cached = sum(last["calls"].get(k, 0.0) for k in ("cache_hit", "merged"))
    inputs = max(replay.inputs, 1)
    per_process = max(
        (
            sustainable_rate([r for r in rows if r.processes == run.processes]) / run.processes
            for run in ramps
        ),
        default=0.0,
    )
    figures = {
        "flow": flow,
        "per_process_rate": per_process,
        "calls_per_event": (calls - cached) / inputs,
        "tokens_per_event": (last["tokens_in"] + last["tokens_out"]) / inputs,
        "cost_per_event": replay.cost / inputs,
        "cost_per_event_uncached": (replay.cost + replay.cost_saved) / inputs,
    }
    write_figures(
        out / "surge" / f"{flow}.json",
        {
            "plan": figures,
            "endpoint": endpoint.__dict__,
            "flow_config": {**config.__dict__, "extra": dict(config.extra)},
            "ramp": [r.to_json() for r in rows],
            "replay": replay.to_json(),
            "runs": [
                {"processes": r.processes, "drained": r.drained, "samples": len(r.samples)}
                for r in [*ramps, replay_run]
            ],
            "elapsed_seconds": elapsed,
        },
    )
    plan_text = "(no sustainable step: no plan)"
    if per_process > 0:
        from .plan import Figures

        peak = args.plan_peak or round(10 * per_process)
        request = Request(
            peak_rate=peak,
            llm_rpm=args.llm_rpm,
            latency_p50=args.latency_p50,
            latency_p99=args.latency_p99,
            budget_usd_per_minute=args.budget_usd_per_minute,
            concurrency=Settings().llm.max_concurrency,
        )
        fig = Figures(**figures)
        plan_text = (
            f"$ python -m benchmarks.surge plan --flow {flow} --peak-rate {peak:g} "
            f"--llm-rpm {args.llm_rpm} --latency-p50 {args.latency_p50:g} "
            f"--latency-p99 {args.latency_p99:g}"
            + (
                f" --budget-usd-per-minute {args.budget_usd_per_minute:g}"
                if args.budget_usd_per_minute
                else ""
            )
            + "\n"
            + format_plan(fig, request, plan(fig, request))
        )
    cpus = os.cpu_count() or 1
    notes = (
        f"Run time {elapsed / 60:.1f} min. Load average (1 min) {load_before[0]:.1f} at the start "
        f"and {load_after[0]:.1f} at the end on {cpus} CPUs: other work on the machine shows "
        "there and in every figure." + (f" {args.note}" if args.note else "")
    )
    setup = (
        f"Endpoint: latency p50 {endpoint.p50:g} s / p99 {endpoint.p99:g} s (lognormal), "
        f"{endpoint.rpm:,} requests/min then 429 with `Retry-After`, {endpoint.error_rate:.0%} "
        f"answered 500. Flow: {config.partitions} partitions per topic, 1 worker per process, "
        f"`SURGEFLOW_LLM_REQUESTS_PER_MINUTE={config.llm_rpm}`, budget "
        f"{config.budget_usd_per_minute:g} USD/min (0 = none), other settings at their defaults; "
        "Redis cold at the start of each run. Ramp: "
        + ", ".join(f"{r:g}" for r, _ in ramp_phases)
        + f" events/s, {c['step_seconds']:g} s per step, on fresh topics per run."
    )
    block = flow_section(
        flow,
        shlex.join(["python", "-m", "benchmarks.surge", *sys.argv[1:]]),
        setup,
        ramps,
        rows,
        replay_run,
        replay,
        images,
        plan_text,
        notes,
    )
    write_report(out / "SURGE.md", flow, block)
    print(block)
    print(f"wrote {out / 'SURGE.md'} and {out / 'surge'}/{flow}-*.png", file=sys.stderr)
    return 0


def run_plan(args: argparse.Namespace) -> int:
    figures = load_figures(args.flow, args.figures, ROOT / "docs" / "surge")
    request = Request(
        peak_rate=args.peak_rate,
        llm_rpm=args.llm_rpm,
        latency_p50=args.latency_p50,
        latency_p99=args.latency_p99,
        budget_usd_per_minute=args.budget_usd_per_minute,
        concurrency=args.concurrency,
        workers_per_process=args.workers_per_process,
        cpu_headroom=args.cpu_headroom,
    )
    if figures.per_process_rate <= 0:
        raise SystemExit("the figures hold no sustained ramp step: no rate per process to plan on")
    result = plan(figures, request)
    if args.json:
        print(json.dumps(result.to_json(), indent=1, default=str))
    else:
        print(format_plan(figures, request, result))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.surge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for flow in FLOWS:
        sub = commands.add_parser(flow, help=f"ramp, replay and report for flows.{flow}")
        sub.set_defaults(flow=flow)
        flow_arguments(sub)
    planner = commands.add_parser("plan", help="processes and partitions for a peak")
    planner.add_argument("--flow", choices=FLOWS, default="shipments")
    planner.add_argument("--figures", type=Path, help="default docs/surge/<flow>.json")
    planner.add_argument("--peak-rate", type=float, required=True, help="events/s")
    planner.add_argument("--llm-rpm", type=int, default=0, help="provider limit; 0 = none")
    planner.add_argument("--latency-p50", type=float, default=0.4)
    planner.add_argument("--latency-p99", type=float, default=4.0)
    planner.add_argument("--budget-usd-per-minute", type=float, default=0.0)
    planner.add_argument("--concurrency", type=int, default=16, help="calls per worker loop")
    planner.add_argument("--workers-per-process", type=int, default=1)
    planner.add_argument("--cpu-headroom", type=float, default=0.7)
    planner.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    # stopped by a signal, the runs still stop what they started (flows, generator, servers)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.command == "plan":
        return run_plan(args)
    return run_flow(args)


if __name__ == "__main__":
    raise SystemExit(main())
