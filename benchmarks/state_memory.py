"""State and memory over a long stream, and the cost of a kill -9.

Run: `python -m benchmarks.state_memory [--quick]`.

Memory: the shipments flow (rules path, in process, one worker, output to a null sink) reads a
live stream of generated scans (`operators.shipments.surge` lifecycles, each scan stamped with the
wall clock when it is made, as in production) with 1-minute windows, no lateness and a 1-minute
stuck timer, so a shipment's state can be dropped about a minute after its last scan. It reports
peak RSS and live state keys (`surgeflow_live_state_keys`) after a warm-up of 1.5M events (two
minutes: the window cycle reaches its full size) and then after 1M and after 5M more events of the
same run: the target is peak RSS growing by less than 10% between the two. For contrast it
also replays the bundled surge as fast as possible: 24 simulated hours in a few seconds of wall
time, so no window's wall-time deadline passes and every shipment holds state until the input
ends (the catch-up cost after an outage; see docs/OPERATIONS.md).

Recovery: `benchmarks.recovery_time` kills the flow reading Kafka with kill -9 and measures the
time from the restart to caught-up and the events replayed, at `-s 1` and `-s 5`.

Every measurement runs in a child process of its own, so peak RSS is that run's. `--quick` uses
small sizes to check the program works (its memory figures are not at steady state). Figures go
to stdout and to docs/BENCHMARKS.md (section `state-memory`). On a terminal, bars count the runs
and the restarts (`--no-progress` turns them off; piped, there are none).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from benchmarks.report import command_line, write_section
from operators.config.settings import Settings
from operators.connectors.sources import GeneratorSource
from operators.runtime import progress
from operators.runtime.metrics import live_state_keys
from operators.runtime.records import OutRecord, RawRecord
from operators.shipments.surge import ShipmentFlow, shipment_surge
from schemas.common import utc_now

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "shipments.events"
LIVE_POOL = 2000
"""Shipments being scanned at any moment in the live stream (each scan picks one at random)."""

LIVE_SETTINGS = {
    "window_minutes": 1,
    "allowed_lateness_minutes": 0,
    "stuck_after_hours": 1 / 60,
}
SIZES = {"full": (1_000_000, 5_000_000), "quick": (100_000, 400_000)}
WARMUP = {"full": 1_500_000, "quick": 100_000}
"""Live events read before the first figure: with 1-minute windows all closing at the minute
boundary, the live keys saw-tooth; at about 11k events/s this is two full minutes."""
REPLAY_EVENTS = {"full": 220_000, "quick": 55_000}


class NullSink(DynamicSink[OutRecord]):
    """Counts what the flow writes and drops it."""

    written = 0

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _NullPartition:
        return _NullPartition()


class _NullPartition(StatelessSinkPartition[OutRecord]):
    def write_batch(self, items: list[OutRecord]) -> None:
        NullSink.written += len(items)


def live_scans(total: int, *, seed: int = 7) -> Iterator[RawRecord]:
    """`total` scans of `LIVE_POOL` concurrent shipments, stamped with the wall clock."""
    rng = random.Random(seed)
    flow = ShipmentFlow(rng, "LIVE")
    active = [flow.new_entity() for _ in range(LIVE_POOL)]
    for offset in range(total):
        slot = rng.randrange(LIVE_POOL)
        payload, _, gap = flow.step(active[slot], utc_now())
        if gap is None:
            active[slot] = flow.new_entity()
        yield RawRecord(orjson.dumps(payload), payload["shipment_id"], TOPIC, offset=offset)


def probed(records: Iterator[RawRecord], marks: set[int]) -> Iterator[RawRecord]:
    """`records`, printing one JSON line of figures after each count in `marks`."""
    started = time.perf_counter()
    for count, record in enumerate(records, start=1):
        yield record
        if count in marks:
            print(json.dumps(_figures(count, time.perf_counter() - started)), flush=True)


def _figures(events: int, seconds: float) -> dict[str, Any]:
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open("/proc/self/statm") as statm:
        rss_pages = int(statm.read().split()[1])
    return {
        "events": events,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "rss_mb": round(rss_pages * resource.getpagesize() / 2**20, 1),
        "live_keys": live_state_keys("shipments", "decision_window"),
        "written": NullSink.written,
    }


def embedded_settings(**overrides: Any) -> Settings:
    """Settings on embedded defaults (no Kafka, Redis or LLM), whatever the environment says."""
    services = {"kafka_bootstrap_servers": None, "redis_url": None}
    services |= {"openai_api_key": None, "openai_base_url": None}
    return Settings(_env_file=None, **services, **overrides)


def child(kind: str, events: int, marks: set[int]) -> None:
    """Run the shipments flow on `events` records of `kind` (live or replay), printing figures."""
    from flows.shipments import build_flow

    if kind == "live":
        settings = embedded_settings(**LIVE_SETTINGS)
        records = probed(live_scans(events), marks)
    else:
        settings = embedded_settings()
        steady = events // 11
        records = probed(shipment_surge(steady_events=steady, burst_factor=10), marks)
    source = GeneratorSource(lambda: records, name=TOPIC, batch_size=settings.io.batch_size)
    run_main(build_flow(settings, source=source, sink=NullSink()))
    print(json.dumps({"end": _figures(events, 0.0)}), flush=True)


def measure(kind: str, events: int, marks: list[int]) -> list[dict[str, Any]]:
    """Figures of one child run (one line per mark, then the end)."""
    command = [sys.executable, "-m", "benchmarks.state_memory", "--child", kind]
    command += ["--events", str(events), "--marks", ",".join(map(str, marks))]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def memory_section(mode: str) -> tuple[str, dict[str, Any]]:
    """Run the live and the replay measurements; their markdown and figures."""
    warmup, (small, large) = WARMUP[mode], SIZES[mode]
    replay_events = REPLAY_EVENTS[mode]
    with progress.progress("memory", total=2, unit="runs") as bar:
        live = measure("live", warmup + large, [warmup, warmup + small, warmup + large])
        bar.advance()
        replay = measure("replay", replay_events, [replay_events // 4, replay_events])
        bar.advance()
    at = {row["events"] - warmup: row for row in live if "events" in row}
    growth = (at[large]["peak_rss_mb"] - at[small]["peak_rss_mb"]) / at[small]["peak_rss_mb"]
    rows = [
        "| stream | events | peak RSS MB | RSS MB | live state keys | events/s |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    labelled = [("live", f"warm-up: {warmup:,}", at[0])]
    labelled += [("live", f"{n:,} after the warm-up", at[n]) for n in (small, large)]
    labelled += [("replay", f"{r['events']:,}", r) for r in replay if "events" in r]
    for name, events, row in labelled:
        rate = row["events"] / row["seconds"] if row["seconds"] else 0
        rows.append(
            f"| {name} | {events} | {row['peak_rss_mb']} | {row['rss_mb']} | "
            f"{row['live_keys']:,} | {rate:,.0f} |"
        )
    verdict = "met" if growth < 0.10 else "NOT met"
    text = "\n".join([MEMORY_SETUP, "", *rows]) + (
        f"\n\nPeak RSS growth from {small:,} to {large:,} live events after the warm-up: "
        f"{growth:+.1%} (target under 10%: {verdict}).\n"
    )
    return text, {"growth": growth, "live": live, "replay": replay}


MEMORY_SETUP = (
    f"Memory: the shipments flow in process (1 worker, rules path, null sink). *Live*: scans of "
    f"{LIVE_POOL:,} concurrent shipments (lifecycles of `operators/shipments/surge.py`), each "
    "stamped with the wall clock when it is made, as fast as the flow takes them, with "
    "`SURGEFLOW_WINDOW_MINUTES=1`, `SURGEFLOW_ALLOWED_LATENESS_MINUTES=0` and a 1-minute stuck "
    "timer, so a shipment's state goes about a minute after its last scan; figures are taken "
    "during one run, after a warm-up. Every 1-minute window closes at the same minute boundary, "
    "so the live keys saw-tooth (a figure is taken wherever the cycle happens to be) and the "
    "peak RSS is set by those bursts, not by the length of the stream. "
    "*Replay*: the bundled surge (24 simulated hours) read as fast as possible; the wall clock "
    "hardly moves, no window deadline passes, and every shipment keeps its state until the input "
    "ends, so memory grows with the shipments read (the cost of catching up a backlog; see "
    "docs/OPERATIONS.md, State and memory)."
)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.state_memory")
    parser.add_argument("--quick", action="store_true", help="small sizes: check it works")
    parser.add_argument("--skip-recovery", action="store_true", help="memory part only")
    parser.add_argument("--child", choices=("live", "replay"), help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--marks", default="", help=argparse.SUPPRESS)
    progress.add_flag(parser)
    args = parser.parse_args(argv)
    progress.off_by_flag(args)
    if args.child:
        child(args.child, args.events, {int(m) for m in args.marks.split(",") if m})
        return 0
    mode = "quick" if args.quick else "full"
    memory, figures = memory_section(mode)
    print(memory)
    body = memory
    if not args.skip_recovery:
        from benchmarks.recovery_time import recovery_section

        recovery = recovery_section(mode)
        print(recovery)
        body += "\n" + recovery
    label = " (quick sizes: not at steady state)" if mode == "quick" else ""
    write_section("state-memory", f"State, memory and recovery{label}", command_line(), body)
    return 0 if figures["growth"] < 0.10 or mode == "quick" else 1


if __name__ == "__main__":
    raise SystemExit(main())
