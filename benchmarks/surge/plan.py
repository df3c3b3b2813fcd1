"""The capacity planner: processes, workers and partitions for a peak, from measured figures.

    python -m benchmarks.surge plan --flow shipments --peak-rate 2000 --llm-rpm 10000 \
        --latency-p50 0.4 --latency-p99 4 [--budget-usd-per-minute 1.5]

The figures are those a benchmark run wrote to `docs/surge/<flow>.json`: the sustainable events/s
of one process, provider calls, tokens and cost per input event (with the cache as it was). Each
resource gets a capacity in events/s at the planned deployment:

- processes: processes × the measured events/s per process (at `--cpu-headroom` of it), whatever
  bound the process in the benchmark (its CPU, or its one worker loop's LLM concurrency and
  pending items at the benchmark's latency: the report says how busy its CPU was);
- LLM concurrency: worker loops × `SURGEFLOW_LLM_MAX_CONCURRENCY` ÷ mean latency ÷ calls per event
  (the mean of the lognormal of the given p50 and p99);
- LLM rate limit: requests per minute ÷ 60 ÷ calls per event;
- budget: USD per minute ÷ 60 ÷ cost per event.

Processes and workers are added until they and the concurrency hold the peak; the rate limit and the
budget are fixed, so past them the share of events beyond their capacity is answered by the rules
engine (or the fallback model). The resource that binds is the one used most.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

Z_99 = 2.3263478740408408


@dataclass(frozen=True)
class Figures:
    """What a benchmark run measured for one flow (see `docs/surge/<flow>.json`)."""

    flow: str
    per_process_rate: float  # sustainable input events/s of one process
    calls_per_event: float  # provider calls (not served by the cache) per input event
    tokens_per_event: float
    cost_per_event: float  # USD, with the cache as measured
    cost_per_event_uncached: float

    @classmethod
    def load(cls, path: Path) -> Figures:
        data = json.loads(path.read_text())["plan"]
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Request:
    peak_rate: float
    llm_rpm: int = 0  # 0 = no limit
    latency_p50: float = 0.4
    latency_p99: float = 4.0
    budget_usd_per_minute: float = 0.0  # 0 = none
    concurrency: int = 16
    workers_per_process: int = 1
    cpu_headroom: float = 0.7


@dataclass(frozen=True)
class Resource:
    name: str
    capacity: float  # events/s it holds at the planned deployment (inf = unbounded)
    need: float  # events/s asked
    detail: str

    @property
    def utilisation(self) -> float:
        return 0.0 if math.isinf(self.capacity) else self.need / max(self.capacity, 1e-12)


@dataclass(frozen=True)
class Plan:
    processes: int
    workers_per_process: int
    partitions: int
    llm_calls_per_s: float
    resources: list[Resource]
    binds: str
    llm_share: float  # share of the LLM-path events the fixed limits let through at the peak

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["resources"] = [dict(r.__dict__, utilisation=r.utilisation) for r in self.resources]
        return data


def mean_latency(p50: float, p99: float) -> float:
    """Mean of the lognormal with median `p50` and 99th percentile `p99`."""
    sigma = math.log(max(p99, p50) / p50) / Z_99
    return p50 * math.exp(sigma**2 / 2)


def plan(figures: Figures, request: Request) -> Plan:
    peak = request.peak_rate
    per_process = figures.per_process_rate * request.cpu_headroom
    if per_process <= 0:
        raise ValueError("the figures have no sustainable rate per process")
    calls_per_s = peak * figures.calls_per_event
    latency = mean_latency(request.latency_p50, request.latency_p99)
    per_loop = request.concurrency / latency  # provider calls/s one worker loop sustains
    loops = math.ceil(calls_per_s / per_loop) if calls_per_s else 1
    workers = max(math.ceil(peak / per_process) * request.workers_per_process, loops, 1)
    processes = math.ceil(workers / request.workers_per_process)
    workers = processes * request.workers_per_process
    inf = math.inf
    per_event = figures.calls_per_event
    resources = [
        Resource(
            "processes",
            processes * per_process,
            peak,
            f"{processes} × {figures.per_process_rate:,.0f} events/s measured per process, "
            f"at {request.cpu_headroom:.0%}",
        ),
        Resource(
            "LLM concurrency",
            workers * per_loop / per_event if per_event else inf,
            peak,
            f"{workers} loops × {request.concurrency} calls ÷ {latency:.2f} s mean latency",
        ),
        Resource(
            "LLM rate limit",
            request.llm_rpm / 60.0 / per_event if request.llm_rpm and per_event else inf,
            peak,
            f"{request.llm_rpm:,} requests/min; need {calls_per_s * 60:,.0f}/min"
            if request.llm_rpm
            else "no limit",
        ),
        Resource(
            "budget",
            request.budget_usd_per_minute / 60.0 / figures.cost_per_event
            if request.budget_usd_per_minute and figures.cost_per_event
            else inf,
            peak,
            f"${request.budget_usd_per_minute:g}/min; need "
            f"${peak * 60 * figures.cost_per_event:.4f}/min"
            if request.budget_usd_per_minute
            else "no budget",
        ),
    ]
    binding = max(resources, key=lambda r: r.utilisation)
    fixed = [r for r in resources if r.name in ("LLM rate limit", "budget")]
    share = min([1.0] + [r.capacity / peak for r in fixed if peak and not math.isinf(r.capacity)])
    return Plan(
        processes=processes,
        workers_per_process=request.workers_per_process,
        partitions=max(workers, 1),
        llm_calls_per_s=calls_per_s,
        resources=resources,
        binds=binding.name,
        llm_share=share,
    )


def format_plan(figures: Figures, request: Request, result: Plan) -> str:
    def cap(value: float) -> str:
        return "unbounded" if math.isinf(value) else f"{value:,.1f}"

    lines = [
        f"Plan for {figures.flow} at a peak of {request.peak_rate:,.0f} events/s "
        f"(measured: {figures.per_process_rate:,.1f} events/s per process, "
        f"{figures.calls_per_event:.3f} provider calls and ${figures.cost_per_event * 1000:.4f} "
        "per 1,000 events)",
        "",
        f"  processes: {result.processes}   workers per process: {result.workers_per_process}   "
        f"partitions (at least): {result.partitions}   LLM calls/s: {result.llm_calls_per_s:,.1f}",
        "",
        f"  {'resource':<18} {'capacity ev/s':>14} {'need ev/s':>10} {'used':>7}  detail",
    ]
    for r in result.resources:
        used = "-" if math.isinf(r.capacity) else f"{r.utilisation:.0%}"
        lines.append(f"  {r.name:<18} {cap(r.capacity):>14} {r.need:>10,.1f} {used:>7}  {r.detail}")
    lines.append("")
    lines.append(f"  binds: {result.binds}")
    if result.llm_share < 1.0:
        lines.append(
            f"  at the peak only {result.llm_share:.0%} of the events that need the LLM get it; "
            "the rest are answered by the fallback model or the rules engine"
        )
    return "\n".join(lines)


def load_figures(flow: str, path: Optional[Path], default_dir: Path) -> Figures:
    found = path or default_dir / f"{flow}.json"
    if not found.exists():
        raise SystemExit(
            f"{found} not found: run `python -m benchmarks.surge {flow}` first (it writes it)"
        )
    return Figures.load(found)
