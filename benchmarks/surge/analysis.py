"""Turning a run's cumulative samples into time series, ramp-step rows and replay figures.

Plain Python: every figure is a difference of cumulative counters between two samples, divided by
the seconds between them. Backlog is Kafka lag (records appended to the input topic and not yet
read by the flow) plus the items its LLM steps hold (read, not yet emitted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from .run import RunResult, Sample

LATENCY_WINDOW = 5
"""Samples (seconds) of outputs over which a latency percentile of the time series is taken."""
SUSTAIN_GROWTH = 0.05
SUSTAIN_JITTER_SECONDS = 2.0
SUSTAIN_SECONDS = 10.0
"""A step is sustainable when the mean backlog of its second half exceeds that of its first half
by at most `SUSTAIN_GROWTH` of the step's input or `SUSTAIN_JITTER_SECONDS` of input (LLM calls
in flight come and go with the latency), whichever is more, and the backlog ends below
`SUSTAIN_SECONDS` of input."""
CACHED = ("cache_hit", "merged")


def percentile(values: list[float], q: float) -> Optional[float]:
    """The `q`th percentile (nearest rank) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q / 100.0 * len(ordered)) - 1, 0)
    return ordered[rank]


def backlog(sample: Sample) -> float:
    scraped = sample.scraped
    waiting: float = max(sample.appended - scraped["records_in"], 0.0) + scraped.get("pending", 0.0)
    return waiting


def calls(sample: Sample) -> float:
    return float(sum(sample.scraped["calls"].values()))


def cached_calls(sample: Sample) -> float:
    return float(sum(sample.scraped["calls"].get(k, 0.0) for k in CACHED))


def _rate(a: Sample, b: Sample, value: Any) -> float:
    seconds = b.t - a.t
    return (value(b) - value(a)) / seconds if seconds > 0 else 0.0


@dataclass
class Series:
    """Per-second time series of a run, for the plots."""

    t: list[float] = field(default_factory=list)
    input_rate: list[float] = field(default_factory=list)
    output_rate: list[float] = field(default_factory=list)
    dead_rate: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    pending: list[float] = field(default_factory=list)
    p50: list[Optional[float]] = field(default_factory=list)
    p99: list[Optional[float]] = field(default_factory=list)
    llm_calls: list[float] = field(default_factory=list)
    fallbacks: dict[str, list[float]] = field(default_factory=dict)
    cpu: list[float] = field(default_factory=list)  # cores busy
    rss_mb: list[float] = field(default_factory=list)


def series(run: RunResult) -> Series:
    out = Series()
    samples = run.samples
    reasons = sorted({r for s in samples for r in s.scraped["fallbacks"]})
    out.fallbacks = {r: [] for r in reasons}
    for index in range(1, len(samples)):
        a, b = samples[index - 1], samples[index]
        out.t.append(b.t)
        out.input_rate.append(_rate(a, b, lambda s: s.appended))
        out.output_rate.append(_rate(a, b, lambda s: s.written + s.dead))
        out.dead_rate.append(_rate(a, b, lambda s: s.dead))
        out.lag.append(max(b.appended - b.scraped["records_in"], 0.0))
        out.pending.append(b.scraped.get("pending", 0.0))
        recent = samples[max(index - LATENCY_WINDOW + 1, 0) : index + 1]
        window = [x for s in recent for x in s.latencies]
        out.p50.append(percentile(window, 50))
        out.p99.append(percentile(window, 99))
        out.llm_calls.append(_rate(a, b, calls))
        for reason in reasons:
            out.fallbacks[reason].append(
                _rate(a, b, lambda s, r=reason: s.scraped["fallbacks"].get(r, 0.0))
            )
        out.cpu.append(_rate(a, b, lambda s: s.cpu_seconds))
        out.rss_mb.append(b.rss_bytes / 2**20)
    return out


@dataclass
class StepRow:
    """One ramp step: what went in and out over it, and what it cost."""

    processes: int
    target_rate: float
    input_rate: float
    output_rate: float
    dead_rate: float
    backlog_start: float
    backlog_end: float
    backlog_peak: float
    lag_peak: float
    p50: Optional[float]
    p99: Optional[float]
    llm_calls_per_s: float
    cache_hit_ratio: Optional[float]
    fallbacks: dict[str, float]  # per minute, by reason
    tokens_per_min: float
    cost_per_min: float
    cost_saved_per_min: float
    rss_mb: float
    cpu_cores: float
    sustainable: bool

    @property
    def cost_per_1000(self) -> Optional[float]:
        return 1000.0 * self.cost_per_min / (60 * self.input_rate) if self.input_rate else None

    @property
    def cost_per_1000_uncached(self) -> Optional[float]:
        if not self.input_rate:
            return None
        return 1000.0 * (self.cost_per_min + self.cost_saved_per_min) / (60 * self.input_rate)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "cost_per_1000": self.cost_per_1000,
            "cost_per_1000_uncached": self.cost_per_1000_uncached,
        }


def step_rows(run: RunResult) -> list[StepRow]:
    """A row per phase of a ramp run (samples taken while the generator was in that phase)."""
    rows = []
    for phase, (target, _) in enumerate(run.phases):
        inside = [s for s in run.samples if s.phase == phase]
        if len(inside) < 2:
            continue
        first, last = inside[0], inside[-1]
        middle = len(inside) // 2
        early, late = inside[:middle], inside[middle:]
        seconds = last.t - first.t
        per_min = 60.0 / seconds
        input_rate = (last.appended - first.appended) / seconds
        growth = sum(map(backlog, late)) / len(late) - sum(map(backlog, early)) / len(early)
        step_input = last.appended - first.appended
        n_calls = calls(last) - calls(first)
        fallbacks = {
            r: (last.scraped["fallbacks"].get(r, 0.0) - first.scraped["fallbacks"].get(r, 0.0))
            * per_min
            for r in sorted(set(last.scraped["fallbacks"]) | set(first.scraped["fallbacks"]))
        }
        lats = [x for s in inside[1:] for x in s.latencies]
        rows.append(
            StepRow(
                processes=run.processes,
                target_rate=target,
                input_rate=input_rate,
                output_rate=(last.written + last.dead - first.written - first.dead) / seconds,
                dead_rate=(last.dead - first.dead) / seconds,
                backlog_start=backlog(first),
                backlog_end=backlog(last),
                backlog_peak=max(backlog(s) for s in inside),
                lag_peak=max(max(s.appended - s.scraped["records_in"], 0.0) for s in inside),
                p50=percentile(lats, 50),
                p99=percentile(lats, 99),
                llm_calls_per_s=n_calls / seconds,
                cache_hit_ratio=(
                    (cached_calls(last) - cached_calls(first)) / n_calls if n_calls else None
                ),
                fallbacks={r: v for r, v in fallbacks.items() if v},
                tokens_per_min=(
                    last.scraped["tokens_in"]
                    + last.scraped["tokens_out"]
                    - first.scraped["tokens_in"]
                    - first.scraped["tokens_out"]
                )
                * per_min,
                cost_per_min=(last.scraped["cost"] - first.scraped["cost"]) * per_min,
                cost_saved_per_min=(last.scraped["cost_saved"] - first.scraped["cost_saved"])
                * per_min,
                rss_mb=max(s.rss_bytes for s in inside) / 2**20,
                cpu_cores=(last.cpu_seconds - first.cpu_seconds) / seconds,
                sustainable=(
                    growth
                    <= max(SUSTAIN_GROWTH * step_input, SUSTAIN_JITTER_SECONDS * input_rate, 1.0)
                    and backlog(last) <= SUSTAIN_SECONDS * max(input_rate, 1.0)
                ),
            )
        )
    return rows


def sustainable_rate(rows: list[StepRow]) -> float:
    """The input rate of the fastest step held before the first step that was not (0 if none)."""
    best = 0.0
    for row in rows:
        if not row.sustainable:
            break
        best = max(best, row.input_rate)
    return best


@dataclass
class Replay:
    """The figures of a surge replay."""

    steady_rate: float
    burst_rate: float
    burst_end: float  # t at which the burst ended
    drain_seconds: Optional[float]  # from the burst's end until the backlog was back to normal
    peak_backlog: float
    peak_lag: float
    peak_p99: Optional[float]
    p50: Optional[float]
    p99: Optional[float]
    sources: dict[str, int]
    reasons: dict[str, int]
    outputs: int
    cost: float
    cost_saved: float
    inputs: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def replay_figures(run: RunResult) -> Replay:
    steady_rate, steady_seconds = run.phases[0]
    burst_rate, burst_seconds = run.phases[1]
    burst_end = steady_seconds + burst_seconds
    samples = run.samples
    steady = [backlog(s) for s in samples if s.phase == 0 and s.t > steady_seconds / 2]
    normal = max(max(steady, default=0.0), steady_rate * 2.0)
    drain: Optional[float] = None
    for s in samples:
        if s.t >= burst_end and backlog(s) <= normal:
            drain = s.t - burst_end
            break
    p99s = [p for p in series(run).p99 if p is not None]
    lats = [x for s in samples for x in s.latencies]
    last = samples[-1]
    return Replay(
        steady_rate=steady_rate,
        burst_rate=burst_rate,
        burst_end=burst_end,
        drain_seconds=drain,
        peak_backlog=max(backlog(s) for s in samples),
        peak_lag=max(max(s.appended - s.scraped["records_in"], 0.0) for s in samples),
        peak_p99=max(p99s, default=None),
        p50=percentile(lats, 50),
        p99=percentile(lats, 99),
        sources=run.sources,
        reasons=run.reasons,
        outputs=sum(run.sources.values()),
        cost=last.scraped["cost"],
        cost_saved=last.scraped["cost_saved"],
        inputs=last.appended,
    )
