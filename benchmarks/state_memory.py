"""State and memory over a long stream, memory per live key, and the cost of a kill -9.

Run: `python -m benchmarks.state_memory [--quick] [--skip-recovery] [--keys N]
[--live WARMUP SMALL LARGE] [--rate N] [--no-compare] [--doc PATH]`.

Memory per live key: the shipments flow (rules path, in process, one worker, null sink) reads the
first two scans of `--keys` shipments (100k; wall-clock stamps and the default 60-minute windows,
so every shipment read stays live), a thousand shipments at a time. The RSS per live key is the
slope of RSS over live keys (`surgeflow_live_state_keys`) from a tenth of the shipments to all of
them; the target is at most 2 KB at 100k keys. A second, smaller run under `tracemalloc` says
where the Python bytes held between the same two points were allocated: the shipment window
state, the models, Bytewax's Python side, the LLM lanes, the rest; what RSS holds beyond them is
outside Python's heap (Bytewax's Rust side, the allocator).

Memory over a long stream: the same flow reads a live stream of generated scans
(`operators.shipments.surge` lifecycles, each scan stamped with the wall clock when it is made, as
in production; at most `--rate` events/s, 10,000 by default, so the state of a window cycle is set
by the input, not by the speed of the machine) with 1-minute windows, no lateness and a 1-minute
stuck timer, so a shipment's state can be dropped about a minute after its last scan. It reports
peak RSS and live state keys after a warm-up of 1M events (past the first window close) and then
after 1M and after 5M more events of the same run (`--live` sets the three counts): the target is
peak RSS growing by less than 10% between the two. A second live run at the same time has the
allocator policy off (`SURGEFLOW_MALLOC_TRIM_SECONDS=0`, `operators/runtime/malloc_policy.py`;
`--no-compare` drops it). For contrast it also replays the bundled surge as fast as possible: 24
simulated hours in a few seconds of wall time, so no window's wall-time deadline passes and every
shipment holds state until the input ends (the catch-up cost after an outage; see
docs/OPERATIONS.md).

Recovery: `benchmarks.recovery_time` kills the flow reading Kafka with kill -9 and measures the
time from the restart to caught-up and the events replayed, at `-s 1` and `-s 5`.

Every measurement runs in a child process of its own, so peak RSS is that run's. `--quick` uses
small sizes to check the program works (its memory figures are not at steady state) and writes
no section unless `--doc` is given. Figures go to stdout and to docs/BENCHMARKS.md (section
`state-memory`). On a terminal, bars count the runs and the restarts (`--no-progress` turns them
off; piped, there are none).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from benchmarks.report import DEFAULT_PATH, command_line, write_section
from operators.config.settings import Settings
from operators.connectors.sources import GeneratorSource
from operators.runtime import malloc_policy, progress
from operators.runtime.metrics import live_state_keys
from operators.runtime.records import OutRecord, RawRecord
from operators.shipments.surge import ShipmentFlow, shipment_surge
from schemas.common import utc_now

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "shipments.events"
KEY_CHUNK = 1000
"""Shipments that get their scans together in the key-memory stream (`key_scans`)."""
KEYS = {"full": 100_000, "quick": 5_000}
"""Live shipment keys of the key-memory run (the target is set at 100k)."""
TRACED_KEYS = {"full": 20_000, "quick": 3_000}
"""Live shipment keys of the run under `tracemalloc` (about 3x slower) that says where they go."""
TARGET_BYTES_PER_KEY = 2048
LIVE_POOL = 2000
"""Shipments being scanned at any moment in the live stream (each scan picks one at random)."""

LIVE_SETTINGS = {
    "window_minutes": 1,
    "allowed_lateness_minutes": 0,
    "stuck_after_hours": 1 / 60,
}
SIZES = {"full": (1_000_000, 5_000_000), "quick": (20_000, 60_000)}
RATE = {"full": 10_000, "quick": 0}
"""Events/s of the live stream at most (`--rate`); 0: as fast as the flow takes them."""
WARMUP = {"full": 1_000_000, "quick": 20_000}
"""Live events read before the first figure: with 1-minute windows all closing at the minute
boundary, the live keys saw-tooth; at about 15k events/s this is past the first close."""
REPLAY_EVENTS = {"full": 220_000, "quick": 11_000}


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


PACE_EVERY = 100
"""Records between two checks of the pace (`paced`)."""


def paced(records: Iterator[RawRecord], rate: int) -> Iterator[RawRecord]:
    """`records` at no more than `rate` a second (all of them at once when `rate` is 0)."""
    if rate <= 0:
        yield from records
        return
    started = time.perf_counter()
    for count, record in enumerate(records, start=1):
        yield record
        if count % PACE_EVERY == 0:
            ahead = count / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)


def key_scans(
    keys: int, at_shipments: Callable[[int, int], None], *, scans_per_key: int = 2, seed: int = 11
) -> Iterator[RawRecord]:
    """The first `scans_per_key` scans of `keys` shipments, stamped with the wall clock.

    `KEY_CHUNK` shipments at a time get their first scan, then their second, and so on, so every
    shipment read stays live (its window is open) and the input itself is never held. After the
    last scan of each chunk has been taken, `at_shipments(shipments, scans)` is called with the
    counts read so far.
    """
    rng = random.Random(seed)
    flow = ShipmentFlow(rng, "KEYS")
    offset = 0
    for start in range(0, keys, KEY_CHUNK):
        chunk = [flow.new_entity() for _ in range(min(KEY_CHUNK, keys - start))]
        for _ in range(scans_per_key):
            for entity in chunk:
                if entity.pos < len(entity.scans):
                    payload, _, _ = flow.step(entity, utc_now())
                    yield RawRecord(orjson.dumps(payload), entity.shipment_id, TOPIC, offset=offset)
                    offset += 1
        at_shipments(start + len(chunk), offset)


KEYS_EVERY = 5_000
"""Records between two readings of the live keys for their maximum (`probed`)."""


CYCLE_SECONDS = 60.0
"""One cycle of the live stream: its 1-minute windows close once a minute."""


def probed(records: Iterator[RawRecord], marks: set[int]) -> Iterator[RawRecord]:
    """`records`, printing one JSON line of figures after each count in `marks`; the figures
    carry the most live keys read so far and, over the last window cycle (`CYCLE_SECONDS`), the
    most RSS and live keys (RSS and live keys are read every `KEYS_EVERY` records, between input
    batches: a burst of window closes is seen by what it leaves held, not by its inner peak)."""
    started = time.perf_counter()
    most = 0
    cycle: deque[tuple[float, int, int]] = deque()
    for count, record in enumerate(records, start=1):
        yield record
        if count % KEYS_EVERY == 0:
            now, keys = time.perf_counter(), live_state_keys("shipments", "decision_window")
            most = max(most, keys)
            cycle.append((now, _rss_bytes(), keys))
            while cycle[0][0] < now - CYCLE_SECONDS:
                cycle.popleft()
        if count in marks:
            figures = _figures(count, time.perf_counter() - started)
            figures["max_live_keys"] = max(most, figures["live_keys"])
            held = [rss for _, rss, _ in cycle] or [figures["rss_bytes"]]
            figures["cycle_rss_mb"] = round(max(held) / 2**20, 1)
            figures["cycle_keys"] = max([keys for _, _, keys in cycle] or [figures["live_keys"]])
            print(json.dumps(figures), flush=True)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _figures(events: int, seconds: float) -> dict[str, Any]:
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss = _rss_bytes()
    return {
        "events": events,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "rss_mb": round(rss / 2**20, 1),
        "rss_bytes": rss,
        "live_keys": live_state_keys("shipments", "decision_window"),
        "written": NullSink.written,
        "trims": trimmer.trims if (trimmer := malloc_policy.current()) else 0,
        "trim_seconds": round(trimmer.seconds, 3) if trimmer else 0.0,
    }


def embedded_settings(**overrides: Any) -> Settings:
    """Settings on embedded defaults (no Kafka, Redis or LLM), whatever the environment says."""
    services = {"kafka_bootstrap_servers": None, "redis_url": None}
    services |= {"openai_api_key": None, "openai_base_url": None}
    return Settings(_env_file=None, **services, **overrides)


def child(kind: str, events: int, marks: set[int], rate: int = 0) -> None:
    """Run the shipments flow on `events` records of `kind` (live or replay), printing figures;
    the live stream at no more than `rate` events/s (0: as fast as the flow takes them)."""
    from flows.shipments import build_flow

    if kind == "live":
        settings = embedded_settings(**LIVE_SETTINGS)
        records = probed(paced(live_scans(events), rate), marks)
    else:
        settings = embedded_settings()
        steady = events // 11
        records = probed(shipment_surge(steady_events=steady, burst_factor=10), marks)
    source = GeneratorSource(lambda: records, name=TOPIC, batch_size=settings.io.batch_size)
    run_main(build_flow(settings, source=source, sink=NullSink()))
    print(json.dumps({"end": _figures(events, 0.0)}), flush=True)


WHERE = (
    ("/bytewax/", "Bytewax (its Python side)"),
    ("operators/shipments/", "shipment window state (`operators/shipments`)"),
    ("operators/runtime/async_step", "LLM lanes and agents"),
    ("operators/runtime/inflight", "LLM lanes and agents"),
    ("operators/llm/", "LLM lanes and agents"),
    ("/pydantic", "models (pydantic, `schemas`)"),
    ("/schemas/", "models (pydantic, `schemas`)"),
    ("operators/", "rest of the runtime (`operators`)"),
)
"""Where a traced allocation goes, by the file of the line that made it (first match)."""


def where(filename: str) -> str:
    return next((name for part, name in WHERE if part in filename), "stdlib and other libraries")


def keys_child(keys: int, traced: bool) -> None:
    """Read the first scans of `keys` shipments (`key_scans`) and print figures at a tenth of them
    and at all of them; `traced`: with `tracemalloc`, and where the Python bytes between the two
    went (by `WHERE`, and the top lines)."""
    import tracemalloc

    from flows.shipments import build_flow

    tenth = max(KEY_CHUNK, keys // 10 // KEY_CHUNK * KEY_CHUNK)
    snapshots: list[tracemalloc.Snapshot] = []
    started = time.perf_counter()

    def at_shipments(shipments: int, scans: int) -> None:
        if shipments not in (tenth, keys):
            return
        figures = _figures(scans, time.perf_counter() - started) | {"shipments": shipments}
        if traced:
            snapshots.append(tracemalloc.take_snapshot())
            figures["traced_bytes"] = tracemalloc.get_traced_memory()[0]
        print(json.dumps(figures), flush=True)
        if traced and len(snapshots) == 2:
            by_file = snapshots[1].compare_to(snapshots[0], "filename")
            groups: dict[str, int] = {}
            for stat in by_file:
                name = where(stat.traceback[0].filename)
                groups[name] = groups.get(name, 0) + stat.size_diff
            top = [
                (_short(str(stat.traceback[0])), stat.size_diff)
                for stat in snapshots[1].compare_to(snapshots[0], "lineno")[:8]
            ]
            print(json.dumps({"where": groups, "top": top}), flush=True)

    if traced:
        tracemalloc.start()
    settings = embedded_settings()
    records = key_scans(keys, at_shipments)
    source = GeneratorSource(lambda: records, name=TOPIC, batch_size=settings.io.batch_size)
    run_main(build_flow(settings, source=source, sink=NullSink()))


def _short(path: str) -> str:
    """A traceback line without the checkout's or the venv's directory."""
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def measure(
    kind: str, events: int, marks: list[int], *, traced: bool = False
) -> list[dict[str, Any]]:
    """Figures of one child run (one line per mark, then the end)."""
    (figures,) = measure_together(kind, events, marks, [{}], traced=traced)
    return figures


def measure_together(
    kind: str,
    events: int,
    marks: list[int],
    envs: list[dict[str, str]],
    *,
    traced: bool = False,
    rate: int = 0,
) -> list[list[dict[str, Any]]]:
    """Figures of child runs started at the same time, one per environment in `envs` (added to
    this one's), so they share the machine's load."""
    command = [sys.executable, "-m", "benchmarks.state_memory", "--child", kind]
    command += ["--events", str(events), "--marks", ",".join(map(str, marks))]
    command += ["--traced"] if traced else []
    command += ["--rate", str(rate)] if rate else []
    with contextlib.ExitStack() as stack:
        runs = []
        for env in envs:
            out, err = (stack.enter_context(tempfile.TemporaryFile("w+")) for _ in range(2))
            child_env = {**os.environ, **env}
            runs.append((subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, text=True,
                                          env=child_env), out, err))  # fmt: skip
        results = []
        for process, out, err in runs:
            if process.wait() != 0:
                err.seek(0)
                sys.exit(f"{' '.join(command)} failed:\n{err.read()[-3000:]}")
            out.seek(0)
            results.append([json.loads(line) for line in out if line.startswith("{")])
        return results


def key_memory(keys: int, traced_keys: int) -> tuple[list[str], dict[str, Any]]:
    """RSS per live shipment key (`key_scans` of `keys` shipments) and where the Python bytes go
    (`traced_keys` shipments under `tracemalloc`); markdown lines and figures."""
    first, last = (r for r in measure("keys", keys, []) if "shipments" in r)
    per_key = (last["rss_bytes"] - first["rss_bytes"]) / max(
        last["live_keys"] - first["live_keys"], 1
    )
    traced = measure("keys", traced_keys, [], traced=True)
    t_first, t_last = (r for r in traced if "shipments" in r)
    (found,) = (r for r in traced if "where" in r)
    t_keys = max(t_last["live_keys"] - t_first["live_keys"], 1)
    python = (t_last["traced_bytes"] - t_first["traced_bytes"]) / t_keys
    verdict = "met" if per_key <= TARGET_BYTES_PER_KEY else "NOT met"
    lines = [
        f"Memory per live key: the first two scans of {keys:,} shipments (wall-clock stamps, the "
        "default 60-minute windows, so every shipment read stays live), read "
        f"{KEY_CHUNK:,} shipments at a time. From {first['live_keys']:,} to "
        f"{last['live_keys']:,} live keys RSS went from {first['rss_mb']:,.1f} to "
        f"{last['rss_mb']:,.1f} MB: **{per_key:,.0f} B of RSS per live key** at "
        f"{last['live_keys']:,} keys (target at most {TARGET_BYTES_PER_KEY:,} B at 100k: "
        f"{verdict}).",
        "",
        f"Where it goes: the same stream of {traced_keys:,} shipments under `tracemalloc`, the "
        "Python bytes allocated between a tenth and all of them and still held, by the file of "
        f"the line that allocated them: {python:,.0f} B of Python objects per live key; the "
        "rest of the RSS is outside Python's heap (Bytewax's Rust side, the allocator).",
        "",
        "| allocated in | B per live key | share |",
        "| --- | ---: | ---: |",
    ]
    total = sum(found["where"].values()) or 1
    for name, size in sorted(found["where"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {size / t_keys:,.0f} | {size / total:.0%} |")
    lines += [
        "",
        "Top lines: "
        + "; ".join(f"`{line}` {size / t_keys:,.0f} B" for line, size in found["top"])
        + ".",
    ]
    figures = {"per_key": per_key, "keys": last["live_keys"], "rss_mb": last["rss_mb"],
               "python_per_key": python, "where": found["where"]}  # fmt: skip
    return lines, figures


def memory_section(
    mode: str,
    *,
    keys: Optional[int] = None,
    live: Optional[tuple[int, int, int]] = None,
    compare: bool = True,
    rate: Optional[int] = None,
) -> tuple[str, dict[str, Any]]:
    """Run the key-memory, live and replay measurements; their markdown and figures. `keys`
    and `live` (warm-up, small, large) replace the mode's sizes and `rate` its live pace;
    `compare`: a second live run with the allocator policy off, at the same time as the first."""
    warmup, (small, large) = (live[0], live[1:]) if live else (WARMUP[mode], SIZES[mode])
    replay_events = REPLAY_EVENTS[mode]
    pace = RATE[mode] if rate is None else rate
    trim = embedded_settings().process.malloc_trim_seconds
    envs: list[dict[str, str]] = [{}]
    if compare and trim > 0:
        envs.append({"SURGEFLOW_MALLOC_TRIM_SECONDS": "0"})
    with progress.progress("memory", total=3, unit="runs") as bar:
        key_lines, key_figures = key_memory(keys or KEYS[mode], TRACED_KEYS[mode])
        bar.advance()
        marks = [warmup, warmup + small, warmup + large]
        lives = measure_together("live", warmup + large, marks, envs, rate=pace)
        bar.advance()
        replay = measure("replay", replay_events, [replay_events // 4, replay_events])
        bar.advance()
    names = ["live" if trim > 0 else "live, trim off", "live, trim off"]
    ats = [{row["events"] - warmup: row for row in rows if "events" in row} for rows in lives]
    growths = [_growth(at[small], at[large], "peak_rss_mb") for at in ats]
    held = [_growth(at[small], at[large], "cycle_rss_mb") for at in ats]
    rows = [
        "| stream | events | peak RSS MB | RSS MB | most RSS in the last minute MB "
        "| live state keys | most live keys so far | events/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    labelled = []
    for name, at in zip(names, ats, strict=False):
        labelled += [(name, f"warm-up: {warmup:,}", at[0])]
        labelled += [(name, f"{n:,} after the warm-up", at[n]) for n in (small, large)]
    labelled += [("replay", f"{r['events']:,}", r) for r in replay if "events" in r]
    for name, events, row in labelled:
        speed = row["events"] / row["seconds"] if row["seconds"] else 0
        rows.append(
            f"| {name} | {events} | {row['peak_rss_mb']} | {row['rss_mb']} | "
            f"{row['cycle_rss_mb']} | {row['live_keys']:,} | {row['max_live_keys']:,} | "
            f"{speed:,.0f} |"
        )
    growth = growths[0]
    verdict = "met" if growth < 0.10 else "NOT met"
    peak = ats[0][large]
    per_peak_key = peak["peak_rss_mb"] * 2**20 / max(peak["max_live_keys"], 1)
    policy = (
        f"*live*: `SURGEFLOW_MALLOC_TRIM_SECONDS={trim:g}` (the C heap's free pages go back to "
        f"the system every {trim:g} s; in this run, {peak['trims']:,} trims took "
        f"{peak['trim_seconds']:.2f} s in all)"
        if trim > 0
        else "*live, trim off*: `SURGEFLOW_MALLOC_TRIM_SECONDS=0`"
    )
    if len(ats) > 1:
        policy += (
            "; *live, trim off*: the same stream with `SURGEFLOW_MALLOC_TRIM_SECONDS=0`, run at "
            "the same time (both share the machine, so each is slower than alone)"
        )
    paced_at = (
        f"Pace: the live stream is read at {pace:,} events/s at most, so the live keys of a "
        "window cycle are set by the input, not by the speed of the machine (a live row whose "
        "events/s is under the pace ran on a machine that could not keep it)"
        if pace
        else "Pace: none, the live stream is read as fast as the flow takes it (the live keys of "
        "a window cycle follow the speed of the machine)"
    )
    text = "\n".join(
        [*key_lines, "", MEMORY_SETUP, "", f"{paced_at}. Allocator policy: {policy}.", "", *rows]
    )
    text += (
        f"\n\nPeak RSS growth from {small:,} to {large:,} live events after the warm-up: "
        f"{growth:+.1%} (target under 10%: {verdict})"
        + (f"; with the trim off: {growths[1]:+.1%}" if len(ats) > 1 else "")
        + f". The most RSS read in the last minute before each figure (one window cycle, read "
        f"every {KEYS_EVERY:,} events between input batches: what the process holds, outside "
        f"the bursts' inner peaks) grew {held[0]:+.1%}"
        + (f" (trim off: {held[1]:+.1%})" if len(ats) > 1 else "")
        + f". The live stream's peak RSS over the most live keys it held: {per_peak_key:,.0f} B "
        "per key, all of the process included (its shipments carry their whole scan history, "
        "and the peak is reached inside a burst of window closes).\n"
    )
    figures = {"growth": growth, "growths": growths, "held": held, "live": lives}
    figures["replay"] = replay
    return text, figures | {"keys": key_figures}


def _growth(small: dict[str, Any], large: dict[str, Any], figure: str) -> float:
    return float(large[figure] - small[figure]) / float(small[figure])


MEMORY_SETUP = (
    f"Memory: the shipments flow in process (1 worker, rules path, null sink). *Live*: scans of "
    f"{LIVE_POOL:,} concurrent shipments (lifecycles of `operators/shipments/surge.py`), each "
    "stamped with the wall clock when it is made, with "
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
    parser.add_argument("--keys", type=int, help="live shipment keys of the key-memory run")
    parser.add_argument(
        "--live", type=int, nargs=3, metavar=("WARMUP", "SMALL", "LARGE"),
        help="events of the live run: the warm-up, then the two figures compared after it",
    )  # fmt: skip
    parser.add_argument(
        "--no-compare", action="store_true",
        help="no second live run with the allocator policy off (SURGEFLOW_MALLOC_TRIM_SECONDS=0)",
    )  # fmt: skip
    parser.add_argument(
        "--doc", type=Path,
        help=f"the file to write the section to (default {DEFAULT_PATH}; --quick writes none)",
    )  # fmt: skip
    parser.add_argument("--child", choices=("live", "replay", "keys"), help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--rate", type=int,
        help=f"events/s of the live stream at most (default {RATE['full']:,}; 0: unpaced)",
    )  # fmt: skip
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--marks", default="", help=argparse.SUPPRESS)
    progress.add_flag(parser)
    args = parser.parse_args(argv)
    progress.off_by_flag(args)
    if args.child == "keys":
        keys_child(args.events, args.traced)
        return 0
    if args.child:
        marks = {int(m) for m in args.marks.split(",") if m}
        child(args.child, args.events, marks, args.rate or 0)
        return 0
    mode = "quick" if args.quick else "full"
    memory, figures = memory_section(
        mode, keys=args.keys, live=args.live, compare=not args.no_compare, rate=args.rate
    )
    print(memory)
    body = memory
    if not args.skip_recovery:
        from benchmarks.recovery_time import recovery_section

        recovery = recovery_section(mode)
        print(recovery)
        body += "\n" + recovery
    label = " (quick sizes: not at steady state)" if mode == "quick" else ""
    doc = args.doc or (None if args.quick else DEFAULT_PATH)
    if doc is not None:
        write_section(
            "state-memory", f"State, memory and recovery{label}", command_line(), body, doc
        )
    met = figures["growth"] < 0.10 and figures["keys"]["per_key"] <= TARGET_BYTES_PER_KEY
    return 0 if met or mode == "quick" else 1


if __name__ == "__main__":
    raise SystemExit(main())
