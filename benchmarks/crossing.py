"""What 2 processes cost per shipment event over 1 worker, and what a crossing scan costs.

    python -m benchmarks.crossing --rounds 5                    # this tree
    python -m benchmarks.crossing --rounds 5 --baseline DIR     # and another checkout, same rounds
    python -m benchmarks.crossing --micro --baseline DIR        # only the pickle of a crossing

With 2 processes about half of the scans are read by the worker that does not own their shipment
and cross to the other process (`operators.runtime.exchange.route_by_key`). The Kafka part runs
`python -m bytewax.run flows.shipments` with 1 worker and as 2 processes on the same input topic
(`benchmarks.peers`' broker, loader and child processes), in interleaved rounds, and reports the
CPU seconds per 1,000 events of each and their within-round ratio. Unlike `benchmarks.peers`,
each run's fixed cost (the same command on an input of the probes only: imports, connecting,
stopping) is measured in the same round, next to it, so a slow start-up in one run does not move
every round's figure. `--profile` adds one py-spy run of each contender (all threads, their own
samples per function, as µs per event). `--micro` pickles and unpickles a batch's group of
enriched scans, as a crossing does, in each tree (interleaved, best of the repeats).

It prints its figures and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Optional

from benchmarks.peers import (
    ROOT,
    Broker,
    Children,
    Contender,
    child_env,
    commands,
    load,
    probe,
)

CONTENDERS = (
    Contender("1 worker", "shipments", "surgeflow"),
    Contender("2 processes", "shipments", "surgeflow", processes=2),
)
MICRO = r"""
import pickle, random, sys, timeit
from datetime import UTC, datetime, timedelta
from operators.runtime.placement import by_owner
from operators.runtime.records import source_ref
from operators.shipments.domain import EnrichedEvent
from schemas.common import TimeBounds
from schemas.shipments import ShipmentEvent

rng = random.Random(7)
now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
bounds = TimeBounds(now - timedelta(days=3650), now + timedelta(days=1), now, timedelta(days=1))
scans = []
for i in range(int(sys.argv[1])):
    at = now - timedelta(minutes=rng.randint(1, 5000), microseconds=rng.randint(0, 999999))
    event = ShipmentEvent.from_common_shape({
        "event_id": f"EV-{i:08d}", "shipment_id": f"SHP-{rng.randint(0, 20000):06d}",
        "carrier_id": "CAR-03", "hub_id": "HUB-07", "scan_type": "arrived_hub",
        "occurred_at": at.isoformat(), "shipped_at": (at - timedelta(hours=5)).isoformat(),
        "eta": (at + timedelta(hours=20)).isoformat(), "delay_minutes": 0, "note": None,
    }, bounds)
    scans.append(EnrichedEvent(
        event, source_ref("shipments.events", 2, 100000 + i), "Carrier Three", 48.0, 0.93,
        "north", 0.4, event.shipped_at + timedelta(hours=48),
    ))
group = by_owner(scans, lambda e: e.event.shipment_id, 2)[0][1]
data = pickle.dumps(group, pickle.HIGHEST_PROTOCOL)
assert pickle.loads(data) == group
n, number = len(group), 200
dumps = min(timeit.repeat(lambda: pickle.dumps(group, 5), number=number, repeat=7))
loads = min(timeit.repeat(lambda: pickle.loads(data), number=number, repeat=7))
print(len(data) / n, dumps / number / n * 1e6, loads / number / n * 1e6)
"""


def micro(trees: dict[str, Path], rounds: int, batch: int) -> None:
    """Bytes, pickle and unpickle µs per crossing scan in a group, per tree (best of rounds)."""
    best: dict[str, list[float]] = {}
    for _ in range(rounds):
        for label, root in trees.items():
            env = {**os.environ, "PYTHONPATH": str(root)}
            done = subprocess.run(
                [sys.executable, "-c", MICRO, str(batch)], cwd=root, env=env,
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            size, dumps, loads = map(float, done.stdout.split())
            old = best.get(label)
            best[label] = [size, dumps, loads] if old is None else [
                size, min(old[1], dumps), min(old[2], loads)
            ]  # fmt: skip
    print(f"a group of scans from a batch of {batch}, per scan (best of {rounds} rounds):")
    for label, (size, dumps, loads) in best.items():
        print(
            f"  {label:<10} {size:6.0f} bytes  pickle {dumps:5.2f} µs  unpickle {loads:5.2f} µs"
            f"  both {dumps + loads:5.2f} µs"
        )


def cpu_of(b: Broker, c: Contender, topic: str) -> float:
    """CPU seconds of one run of `c` over `topic` (all its processes)."""
    out, dlq = b.topics("out", "dlq")
    _, cpu, _ = Children(c, b.bootstrap, [topic, out, dlq], tail=False).wait()
    return cpu


def kafka(b: Broker, chosen: list[Contender], rounds: int, steady: int) -> None:
    (topic,) = b.topics("shipments-in")
    events = load(b.bootstrap, "shipments", topic, steady)
    (tiny,) = b.topics("shipments-probes")
    probe(b.bootstrap, tiny)
    print(f"{events:,} events on {topic}", flush=True)
    per_k: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, list[float]] = defaultdict(list)
    for r in range(rounds):
        order = chosen[r % len(chosen) :] + chosen[: r % len(chosen)]
        got: dict[str, float] = {}
        for c in order:
            fixed = cpu_of(b, c, tiny)
            full = cpu_of(b, c, topic)
            got[c.label] = (full - fixed) / events * 1000
            per_k[c.label].append(got[c.label])
            print(
                f"round {r + 1}/{rounds}  {c.label:<36} cpu {full:6.2f} s - fixed {fixed:5.2f} s"
                f" = {got[c.label]:.4f} s/1k events",
                flush=True,
            )
        for c in chosen:
            if c.processes == 2:
                one = replace(c, name=c.name.replace("2 processes", "1 worker"), processes=1)
                ratios[c.label].append(got[c.label] / got[one.label])
    print("\nCPU s per 1k events, median of rounds; 2 processes / 1 worker per round:")
    for c in chosen:
        line = f"  {c.label:<36} {statistics.median(per_k[c.label]):.4f}"
        if c.label in ratios:
            each = " ".join(f"{x:.2f}" for x in ratios[c.label])
            line += f"  ratio median {statistics.median(ratios[c.label]):.2f} (rounds: {each})"
        print(line)


def profile(b: Broker, chosen: list[Contender], steady: int, top: int) -> None:
    """One py-spy run of each contender: own samples per function as µs of CPU per event."""
    (topic,) = b.topics("shipments-prof")
    events = load(b.bootstrap, "shipments", topic, steady)
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    rate = 250
    tables: dict[str, dict[str, float]] = {}
    for c in chosen:
        out, dlq = b.topics("out", "dlq")
        env = child_env(c, b.bootstrap, [topic, out, dlq], tail=False)
        raws, procs = [], []
        for cmd in commands(c, [topic, out, dlq], tail=False):
            raw = Path(tempfile.mkstemp(prefix="crossing-", suffix=".txt")[1])
            raws.append(raw)
            record = [py_spy, "record", "-r", str(rate), "--nolineno", "--native", "--threads"]
            spied = [*record, "--format", "raw", "-o", str(raw), "--", *cmd]
            quiet = subprocess.DEVNULL
            procs.append(subprocess.Popen(spied, cwd=c.root, env=env, stdout=quiet, stderr=quiet))
        for p in procs:
            assert p.wait(timeout=600) == 0, f"py-spy run of {c.label} failed"
        own: dict[str, float] = defaultdict(float)
        for raw in raws:
            for line in raw.read_text(encoding="utf-8").splitlines():
                stack, _, count = line.rpartition(" ")
                if not stack or "importlib" in stack or "build_flow (" in stack:
                    continue
                leaf = stack.split(";")[-1]
                own[leaf] += int(count) / rate / events * 1e6
            raw.unlink()
        tables[c.label] = own
    labels = list(tables)
    biggest = {n: max(t.get(n, 0.0) for t in tables.values()) for t in tables.values() for n in t}
    names = sorted(biggest, key=lambda n: -biggest[n])[:top]
    print(f"\npy-spy --native, all threads, own samples as µs of CPU per event ({events:,}):")
    print("  " + "".join(f"{label[-24:]:>26}" for label in labels) + "  function")
    for name in names:
        cells = "".join(f"{tables[label].get(name, 0.0):26.2f}" for label in labels)
        print(f"  {cells}  {name[:110]}")
    totals = "".join(f"{sum(t.values()):26.2f}" for t in tables.values())
    print(f"  {totals}  (all samples)")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steady", type=int, default=4000, help="seeded surge steady events")
    parser.add_argument("--baseline", type=Path, help="another checkout, run in the same rounds")
    parser.add_argument("--profile", action="store_true", help="one py-spy run of each")
    parser.add_argument("--micro", action="store_true", help="only the pickle of a crossing")
    parser.add_argument("--top", type=int, default=30, help="functions in the profile")
    args = parser.parse_args(argv)
    trees = {"this tree": ROOT}
    if args.baseline is not None:
        trees = {"baseline": args.baseline.resolve(), **trees}
    if args.micro:
        micro(trees, args.rounds, batch=500)
        return 0
    chosen = [
        replace(c, name=f"{c.name} ({label})", root=root)
        for label, root in trees.items()
        for c in CONTENDERS
    ]
    b = Broker(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    try:
        kafka(b, chosen, args.rounds, args.steady)
        if args.profile:
            profile(b, chosen, args.steady, args.top)
    finally:
        b.delete_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
