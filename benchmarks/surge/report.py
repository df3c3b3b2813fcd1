"""The surge report: plots (PNG, matplotlib) under `docs/surge/`, a section per flow in
`docs/SURGE.md`, and the figures the planner reads (`docs/surge/<flow>.json`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.report import section

from .analysis import Replay, StepRow, series, sustainable_rate
from .run import RunResult

HEADER = (
    "# Surge capacity\n\n"
    "What each flow holds when a surge arrives, measured by `python -m benchmarks.surge <flow>` "
    "on a real Kafka broker and Redis, with the flow run as `python -m bytewax.run flows.<flow>` "
    "processes against the OpenAI-compatible test server (a lognormal latency, a "
    "requests-per-minute limit answered with 429 and `Retry-After`, and a share of 5xx). A ramp "
    "drives the input up in steps against 1 and 2 processes; a replay plays the bundled surge "
    "(steady, 10x burst, cool-down) compressed in time. `python -m benchmarks.surge plan` turns "
    "the measured figures into processes, workers and partitions for a peak. The load generator "
    "runs in a process of its own and the sampling happens outside the flow's processes, so "
    "neither is in the flow's CPU figures; they do share the machine.\n\n"
    "Definitions: *lag* is records appended to the input topic and not yet read by the flow; "
    "*backlog* is lag plus the items the flow's LLM steps hold (read, not yet emitted: "
    "`surgeflow_llm_pending`); *latency* is from the broker timestamp of the input record that "
    "produced an output (a ticket's message; for a shipment decision, the scan that closed its "
    "window) to the output's; a step is *held* (sustainable) when the mean backlog of its second "
    "half exceeded that of its first half by at most 5% of the step's input or 2 s of input, "
    "whichever is more, and the backlog ended below 10 s of input. Cost is the price table's "
    "(`SURGEFLOW_LLM_PRICES`) for the tokens the test server reports; *without the cache* adds "
    "what the cache and merged calls saved (`surgeflow_llm_cost_saved_usd_total`). *out/s* "
    "counts outputs and dead letters: a shipments decision covers a window of scans, so it is "
    "below the input rate while windows are open; a ticket message gets one response.\n"
)
COLORS = {1: "tab:blue", 2: "tab:orange", 3: "tab:green", 4: "tab:red"}


def _fmt(value: Optional[float], spec: str = ".2f", none: str = "–") -> str:
    return none if value is None or math.isnan(value) else format(value, spec)


def plot_runs(
    path: Path,
    title: str,
    runs: Sequence[RunResult],
    shade: Optional[tuple[float, float]] = None,
) -> None:
    """Four panels over time: rates, backlog, latency percentiles, LLM calls and fallbacks."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
    (rates, lag), (lat, llm) = axes
    top = 0.0
    for run in runs:
        s = series(run)
        color = COLORS.get(run.processes, "tab:gray")
        label = f"{run.processes} process{'es' if run.processes > 1 else ''}"
        rates.plot(s.t, s.input_rate, color=color, alpha=0.45, label=f"input, {label}")
        rates.plot(s.t, s.output_rate, color=color, linestyle="--", label=f"output, {label}")
        if any(s.dead_rate):
            rates.plot(
                s.t,
                s.dead_rate,
                color=color,
                linestyle=":",
                label=f"of which dead letters, {label}",
            )
        top = max(top, *s.input_rate, 1.0)
        lag.plot(
            s.t,
            [a + b for a, b in zip(s.lag, s.pending, strict=True)],
            color=color,
            label=f"backlog, {label}",
        )
        lag.plot(s.t, s.lag, color=color, linestyle=":", label=f"Kafka lag, {label}")
        lat.plot(
            s.t, [math.nan if v is None else v for v in s.p50], color=color, label=f"p50, {label}"
        )
        lat.plot(
            s.t,
            [math.nan if v is None else v for v in s.p99],
            color=color,
            linestyle="--",
            label=f"p99, {label}",
        )
        llm.plot(s.t, s.llm_calls, color=color, label=f"LLM calls/s, {label}")
        for index, (reason, values) in enumerate(sorted(s.fallbacks.items())):
            if any(values):
                llm.plot(
                    s.t,
                    values,
                    color=color,
                    linestyle=[":", "-.", "--"][index % 3],
                    label=f"fallback {reason}/s, {label}",
                )
    rates.set_ylabel("records/s")
    rates.set_ylim(0, top * 1.6)  # a burst of output after a stall would flatten the ramp
    rates.set_title("input vs output rate")
    lag.set_ylabel("records")
    lag.set_title("backlog (lag + LLM pending) and Kafka lag")
    lat.set_ylabel("seconds")
    lat.set_title(f"latency percentiles (outputs of the last {5} s)")
    lat.set_yscale("log")
    llm.set_ylabel("per second")
    llm.set_title("LLM calls and fallbacks")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if shade is not None:
            ax.axvspan(*shade, color="tab:red", alpha=0.07)
    for ax in axes[1]:
        ax.set_xlabel("seconds since the input started")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_cost(path: Path, title: str, rows: list[StepRow], replay: Replay) -> None:
    """Cost per 1,000 input events per ramp step (with and without the cache) and the replay's."""
    fig, ax = plt.subplots(figsize=(9, 4))
    labels, cached, uncached = [], [], []
    for row in rows:
        labels.append(f"{row.target_rate:g}/s ×{row.processes}")
        cached.append(row.cost_per_1000 or 0.0)
        uncached.append(row.cost_per_1000_uncached or 0.0)
    if replay.inputs:
        labels.append("replay")
        cached.append(1000 * replay.cost / replay.inputs)
        uncached.append(1000 * (replay.cost + replay.cost_saved) / replay.inputs)
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], cached, width=0.4, label="with the cache")
    ax.bar([i + 0.2 for i in x], uncached, width=0.4, label="without the cache")
    ax.set_xticks(list(x), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("USD per 1,000 input events")
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def ramp_table(rows: list[StepRow]) -> str:
    out = [
        "| processes | target/s | in/s | out/s (dead letters) | backlog end (peak) | lag peak | "
        "p50 s | p99 s | LLM calls/s | cache hits | fallbacks/min | tokens/min | $/min | "
        "$/1k events (no cache) | RSS MB | CPU cores | held |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | "
        "---: | ---: | ---: | ---: | :---: |",
    ]
    for r in rows:
        fallbacks = ", ".join(f"{k} {v:.0f}" for k, v in r.fallbacks.items()) or "0"
        out.append(
            f"| {r.processes} | {r.target_rate:g} | {r.input_rate:.1f} | {r.output_rate:.1f} "
            f"({r.dead_rate:.1f}) | "
            f"{r.backlog_end:,.0f} ({r.backlog_peak:,.0f}) | {r.lag_peak:,.0f} | {_fmt(r.p50)} | "
            f"{_fmt(r.p99)} | {r.llm_calls_per_s:.1f} | {_fmt(r.cache_hit_ratio, '.0%')} | "
            f"{fallbacks} | {r.tokens_per_min:,.0f} | {r.cost_per_min:.4f} | "
            f"{_fmt(r.cost_per_1000, '.4f')} ({_fmt(r.cost_per_1000_uncached, '.4f')}) | "
            f"{r.rss_mb:.0f} | {r.cpu_cores:.2f} | {'yes' if r.sustainable else 'no'} |"
        )
    return "\n".join(out)


def shares(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "none"
    return ", ".join(f"{k} {v:,} ({v / total:.0%})" for k, v in sorted(counts.items()))


def flow_section(
    flow: str,
    command: str,
    setup: str,
    ramps: Sequence[RunResult],
    rows: list[StepRow],
    replay_run: RunResult,
    replay: Replay,
    images: dict[str, str],
    plan_text: str,
    notes: str,
) -> str:
    by_scale = {
        run.processes: sustainable_rate([r for r in rows if r.processes == run.processes])
        for run in ramps
    }
    summary = [
        "| figure | value |",
        "| --- | ---: |",
    ]
    for processes, rate in sorted(by_scale.items()):
        scale_rows = [r for r in rows if r.processes == processes]
        bound = "at least " if scale_rows and all(r.sustainable for r in scale_rows) else ""
        broke = next((r for r in scale_rows if not r.sustainable), None)
        where = (
            f"; not held at {broke.target_rate:g}/s, with {broke.cpu_cores / processes:.2f} "
            "CPU cores busy per process"
            if broke is not None
            else ""
        )
        summary.append(
            f"| sustainable input, {processes} process{'es' if processes > 1 else ''} | "
            f"{bound}{rate:,.1f} events/s ({rate / processes:,.1f} per process{where}) |"
        )
    seconds = replay.drain_seconds
    drain = "not within the run" if seconds is None else f"{seconds:.0f} s"
    drained = (
        f"was back to its steady level {seconds:.0f} s after the burst ended"
        if seconds is not None
        else "was not back to its steady level by the end of the run"
    )
    summary.append(f"| drain time of the bundled surge after its burst | {drain} |")
    outputs = max(replay.outputs, 1)
    summary.append(
        f"| cost per 1,000 {'decisions' if flow == 'shipments' else 'responses'}, with the cache | "
        f"${1000 * replay.cost / outputs:.4f} |"
    )
    summary.append(
        f"| cost per 1,000 {'decisions' if flow == 'shipments' else 'responses'}, without the "
        f"cache | ${1000 * (replay.cost + replay.cost_saved) / outputs:.4f} |"
    )
    body = [
        notes,
        "",
        setup,
        "",
        *summary,
        "",
        f"![ramp]({images['ramp']})",
        "",
        "### Ramp",
        "",
        ramp_table(rows),
        "",
        "### Surge replay",
        "",
        f"Steady {replay.steady_rate:.1f} events/s, burst {replay.burst_rate:.1f} events/s "
        "(shaded), then cool-down at the steady rate; one process. "
        f"{replay.inputs:,} input records, "
        f"{replay.outputs:,} outputs. The backlog peaked at {replay.peak_backlog:,.0f} "
        f"(Kafka lag {replay.peak_lag:,.0f}) and {drained};"
        f" latency p50 {_fmt(replay.p50)} s, p99 {_fmt(replay.p99)} s, worst 5-second "
        f"p99 {_fmt(replay.peak_p99)} s. Where the outputs' text came from: "
        f"{shares(replay.sources)}; fallbacks by reason: {shares(replay.reasons)}.",
        "",
        f"![replay]({images['replay']})",
        "",
        f"![cost]({images['cost']})",
        "",
        "### Plan",
        "",
        "```",
        plan_text,
        "```",
    ]
    return section(flow, f"{flow}", command, "\n".join(body))


def write_report(path: Path, flow: str, block: str) -> None:
    """Replace (or append) the flow's section of `path`, keeping the other flow's."""
    import re

    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    first = text.find("<!-- begin ")
    text = HEADER + ("\n" + text[first:] if first >= 0 else "")  # the header as this build has it
    pattern = re.compile(rf"<!-- begin {flow} -->.*?<!-- end {flow} -->\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_figures(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
