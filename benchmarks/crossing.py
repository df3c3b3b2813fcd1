"""What 2 processes cost per shipment event over 1 worker, and what a crossing scan costs.

    python -m benchmarks.crossing --rounds 5                    # this tree
    python -m benchmarks.crossing --rounds 5 --baseline DIR     # and another checkout, same rounds
    python -m benchmarks.crossing --micro --baseline DIR        # only the pickle of a crossing
    python -m benchmarks.crossing --flow tickets --rounds 5      # the tickets flow

With 2 processes about half of the scans are read by the worker that does not own their shipment
and cross to the other process (`operators.runtime.exchange.route_by_key`). The Kafka part runs
`python -m bytewax.run flows.shipments` with 1 worker and as 2 processes on the same input topic
(`benchmarks.peers`' broker, loader and child processes), in interleaved rounds, and reports the
CPU seconds per 1,000 events of each and their within-round ratio. Unlike `benchmarks.peers`,
each run's fixed cost (the same command on an input of the probes only: imports, connecting,
stopping) is measured in the same round, next to it, so a slow start-up in one run does not move
every round's figure, and the CPU of each thread is read from /proc. A third contender, the 1-worker
run twice at once, shows what two busy processes cost on the machine with nothing crossing.
`--profile` adds one py-spy run of each contender: the shares of the crossing in its worker
threads' busy samples. Every run first pickles and unpickles a batch's group of enriched scans, as
a crossing does, in each tree (interleaved, best of the repeats); `--micro` does only that.

`--flow tickets` measures the same for `flows.tickets`, whose parsed messages cross to the worker
that owns their session (section `crossing-tickets`; input: `benchmarks.peers`' tickets surge).

It prints its figures and writes its section of docs/BENCHMARKS.md (`--no-doc`: print only).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from benchmarks.peers import (
    FULL,
    ROOT,
    Broker,
    Children,
    Contender,
    child_env,
    commands,
    load,
    probe,
)
from benchmarks.report import DEFAULT_PATH, command_line, write_section


@dataclass(frozen=True)
class Case:
    """What `--flow` measures: the flow, its section of docs/BENCHMARKS.md, and the lines of the
    micro benchmark that make `items` (a batch of the flow's crossing items), `key` (their stream
    key) and `pack` (the flow's group, where the tree has one)."""

    flow: str
    section: str
    title: str
    about: str
    items: str
    what: str
    """The crossing items, in a sentence."""
    unit: str
    """One crossing item, in a sentence."""


TWIN_ABOUT = (
    "*1 worker twice at once*: two 1-worker runs of the whole input side by side, CPU per event "
    "over both, with nothing crossing: what two busy processes cost per event on this machine "
    "(shared caches, a second set of Kafka clients). `baseline` is the checkout given with "
    "`--baseline`."
)
SHIPMENTS_ITEMS = r"""
import random
from datetime import UTC, datetime, timedelta
from operators.runtime.records import source_ref
from operators.shipments.domain import EnrichedEvent
from schemas.common import TimeBounds
from schemas.shipments import ShipmentEvent

rng = random.Random(7)
now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
bounds = TimeBounds(now - timedelta(days=3650), now + timedelta(days=1), now, timedelta(days=1))
items = []
for i in range(batch):
    at = now - timedelta(minutes=rng.randint(1, 5000), microseconds=rng.randint(0, 999999))
    event = ShipmentEvent.from_common_shape({
        "event_id": f"EV-{i:08d}", "shipment_id": f"SHP-{rng.randint(0, 20000):06d}",
        "carrier_id": "CAR-03", "hub_id": "HUB-07", "scan_type": "arrived_hub",
        "occurred_at": at.isoformat(), "shipped_at": (at - timedelta(hours=5)).isoformat(),
        "eta": (at + timedelta(hours=20)).isoformat(), "delay_minutes": 0, "note": None,
    }, bounds)
    items.append(EnrichedEvent(
        event, source_ref("shipments.events", 2, 100000 + i), "Carrier Three", 48.0, 0.93,
        "north", 0.4, event.shipped_at + timedelta(hours=48),
    ))
key = lambda e: e.event.shipment_id
from operators.shipments import domain
pack = getattr(domain, "EnrichedGroup", list)
"""
TICKETS_ITEMS = r"""
from flows.registry import SPECS, TicketReference
from operators.config.settings import Settings
from operators.runtime.records import source_ref
from operators.tickets import domain
from operators.tickets.domain import EnrichedTicket, session_of as key
from operators.tickets.parse import parse_tickets
from schemas.tickets import TicketMessage

reference = TicketReference.load()
rows = reference.channels.channel_rows
seed = Settings(_env_file=None).surge.seed
enriched = []
for offset, record in enumerate(
    SPECS["tickets"].surge_records(seed=seed, steady_events=batch // 10 + 20, burst_factor=10)
):
    try:
        message = TicketMessage.model_validate_json(record.value)
    except ValueError:  # the surge's poison records: dead letters, they never cross
        continue
    priority, sla = rows.get(message.channel, (None, None))
    if priority is not None:
        source = source_ref("tickets.messages", offset % 4, 100000 + offset)
        enriched.append(EnrichedTicket(message, source, priority, sla))
items = parse_tickets(enriched[:batch], products=reference.products)
assert len(items) == batch
pack = getattr(domain, "ParsedGroup", list)
"""
CASES = {
    "shipments": Case(
        "shipments",
        "crossing",
        "Crossing: what 2 processes cost per shipment event",
        "With 2 processes about half of the scans are read by the worker that does not own "
        "their shipment and cross to the other process in their batch's group "
        "(`operators.runtime.exchange.route_by_key`), each an `EnrichedEvent` pickled in its "
        f"flat form (`operators.shipments.domain`). {TWIN_ABOUT}",
        SHIPMENTS_ITEMS,
        "enriched scans",
        "scan",
    ),
    "tickets": Case(
        "tickets",
        "crossing-tickets",
        "Crossing: what 2 processes cost per ticket message",
        "With 2 processes about half of the parsed messages are read by the worker that does "
        "not own their session and cross to the other process in their batch's group "
        "(`operators.runtime.exchange.route_by_key`, step `key_by_session` of `flows.tickets`), "
        "each a `ParsedTicket` (`operators.tickets.domain`). The micro benchmark's messages are "
        "the flow's own: the seeded surge, validated, joined with their channel and parsed. "
        f"{TWIN_ABOUT}",
        TICKETS_ITEMS,
        "parsed messages",
        "message",
    ),
}


def contenders(flow: str) -> tuple[Contender, ...]:
    """1 worker, 2 processes, and `1 worker twice at once`: two 1-worker runs of the whole input
    side by side, each with its own outputs, CPU per event over both: what two busy processes
    cost per event on this machine with nothing crossing between them (shared caches, the other
    one's Kafka clients)."""
    return (
        Contender("1 worker", flow, "surgeflow"),
        Contender("2 processes", flow, "surgeflow", processes=2),
        Contender("1 worker twice at once", flow, "twin"),
    )


MICRO = r"""
import pickle, sys, timeit
from operators.runtime.placement import by_owner

batch = int(sys.argv[1])
{items}
group = pack(by_owner(items, key, 2)[0][1])  # the flow's group, where the tree has one
data = pickle.dumps(group, pickle.HIGHEST_PROTOCOL)
assert pickle.loads(data) == group
n, number = len(group), 200
dumps = min(timeit.repeat(lambda: pickle.dumps(group, 5), number=number, repeat=7))
loads = min(timeit.repeat(lambda: pickle.loads(data), number=number, repeat=7))
print(len(data) / n, dumps / number / n * 1e6, loads / number / n * 1e6)
"""


def micro(case: Case, trees: dict[str, Path], rounds: int, batch: int) -> list[str]:
    """Bytes, pickle and unpickle µs per crossing item of `case` in a group, per tree (best of
    rounds), as markdown rows."""
    best: dict[str, list[float]] = {}
    script = MICRO.replace("{items}", case.items)
    for _ in range(rounds):
        for label, root in trees.items():
            env = {**os.environ, "PYTHONPATH": str(root)}
            done = subprocess.run(
                [sys.executable, "-c", script, str(batch)], cwd=root, env=env,
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            size, dumps, loads = map(float, done.stdout.split())
            old = best.get(label)
            best[label] = [size, dumps, loads] if old is None else [
                size, min(old[1], dumps), min(old[2], loads)
            ]  # fmt: skip
    rows = [
        f"A crossing in one process: the group of {case.what} of a batch of {batch} bound for "
        f"one worker pickled and unpickled, per {case.unit} (best of {rounds} interleaved runs "
        "of 7 repeats).",
        "",
        "| tree | bytes | pickle µs | unpickle µs | both µs |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, (size, dumps, loads) in best.items():
        rows.append(f"| {label} | {size:.0f} | {dumps:.2f} | {loads:.2f} | {dumps + loads:.2f} |")
    print("\n".join(rows), flush=True)
    return rows


TICKS = os.sysconf("SC_CLK_TCK")


class ThreadCpu(threading.Thread):
    """CPU seconds of each thread of `pids`, read from /proc every 20 ms until they end, summed
    by thread name with its digits left out (`rdk:broker3` → `rdk:broker#`)."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.last: dict[tuple[int, int], tuple[str, float]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            for pid in self.pids:
                for task in glob.glob(f"/proc/{pid}/task/*/stat"):
                    try:
                        with open(task, "rb") as f:
                            stat = f.read().decode()
                    except OSError:
                        continue
                    name = stat[stat.index("(") + 1 : stat.rindex(")")]
                    fields = stat[stat.rindex(")") + 2 :].split()
                    cpu = (int(fields[11]) + int(fields[12])) / TICKS
                    tid = int(task.split("/")[4])
                    self.last[(pid, tid)] = (re.sub(r"[0-9]+", "#", name), cpu)

    def by_name(self) -> dict[str, float]:
        self.done.set()
        self.join()
        out: dict[str, float] = defaultdict(float)
        for name, cpu in self.last.values():
            out[name] += cpu
        return out


def contender(c: Contender) -> str:
    """`c`'s label without its flow."""
    return c.label.removeprefix(f"{c.flow}: ")


def cpu_of(b: Broker, c: Contender, topic: str) -> tuple[float, dict[str, float]]:
    """CPU seconds of one run of `c` over `topic` (all its processes), and by thread name."""
    runs = []
    for _ in range(2 if c.kind == "twin" else 1):
        out, dlq = b.topics("out", "dlq")
        runs.append(Children(c, b.bootstrap, [topic, out, dlq], tail=False))
    threads = ThreadCpu([p.pid for children in runs for p in children.procs])
    threads.start()
    cpu = sum(children.wait()[1] for children in runs)
    return cpu, threads.by_name()


def kafka(b: Broker, chosen: list[Contender], rounds: int, steady: int) -> list[str]:
    """The measured rounds; their figures as markdown rows."""
    flow = chosen[0].flow
    (topic,) = b.topics(f"{flow}-in")
    events = load(b.bootstrap, flow, topic, steady)
    (tiny,) = b.topics(f"{flow}-probes")
    probe(b.bootstrap, tiny)
    print(f"{events:,} events on {topic}", flush=True)
    per_k: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, list[float]] = defaultdict(list)
    threads: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in range(rounds):
        order = chosen[r % len(chosen) :] + chosen[: r % len(chosen)]
        got: dict[str, float] = {}
        for c in order:
            fixed, fixed_threads = cpu_of(b, c, tiny)
            full, full_threads = cpu_of(b, c, topic)
            handled = 2 * events if c.kind == "twin" else events
            got[c.label] = (full - fixed) / handled * 1000
            for name in full_threads.keys() | fixed_threads.keys():
                net = full_threads.get(name, 0.0) - fixed_threads.get(name, 0.0)
                threads[c.label][name].append(net / handled * 1e6)
            per_k[c.label].append(got[c.label])
            print(
                f"round {r + 1}/{rounds}  {c.label:<36} cpu {full:6.2f} s - fixed {fixed:5.2f} s"
                f" = {got[c.label]:.4f} s/1k events",
                flush=True,
            )
        for tree in dict.fromkeys(c.name.rpartition(" (")[2] for c in chosen):
            one, two, twin = (f"{c.label} ({tree}" for c in contenders(flow))
            for a, b_ in ((two, one), (twin, one), (two, twin)):
                name = f"{a.removeprefix(f'{flow}: ')} / {b_.removeprefix(f'{flow}: ')}"
                ratios[name].append(got[a] / got[b_])
    rows = [
        f"{events:,} events (4 partitions), {rounds} interleaved rounds; CPU net of each run's "
        "fixed cost measured next to it; medians of the rounds.",
        "",
        "| contender | CPU s / 1k events |",
        "| --- | ---: |",
    ]
    rows += [f"| {contender(c)} | {statistics.median(per_k[c.label]):.4f} |" for c in chosen]
    rows += ["", "| within-round ratio | median | each round |", "| --- | ---: | --- |"]
    for name, values in ratios.items():
        each = " ".join(f"{x:.2f}" for x in values)
        rows.append(f"| {name} | {statistics.median(values):.2f} | {each} |")
    rows += [
        "",
        "CPU µs per event by thread (from /proc, net of the fixed cost, medians of the rounds; "
        "the 1-worker run's worker is its main thread `python`).",
        "",
        f"| thread | {' | '.join(contender(c) for c in chosen)} |",
        f"| --- |{' ---: |' * len(chosen)}",
    ]
    for name in sorted({n for t in threads.values() for n in t}):
        cells = [statistics.median(threads[c.label][name] or [0.0]) for c in chosen]
        if any(abs(cell) >= 0.05 for cell in cells):
            rows.append(f"| `{name}` | {' | '.join(f'{cell:.2f}' for cell in cells)} |")
    print("\n".join(rows), flush=True)
    return rows


IDLE = re.compile(r"clock_nanosleep|epoll_wait|pthread_cond_(timed)?wait|cnd_timedwait|futex")
"""A frame among the innermost three of a sample of a worker thread that waits (parked)."""
CROSSING: tuple[str, ...] = ("Wire.__reduce__", "_arrived (", "route_by_key.", "_Carry.")
CROSSING += ("by_owner (", "pushers::exchange")
PARTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "crossing: pickle (send)": (("Wire.__reduce__",), ()),
    "crossing: unpickle (receive)": (("_arrived (",), ()),
    "route_by_key in Python (group, carry, unpack)": (
        ("route_by_key.", "_Carry.", "by_owner ("),
        (),
    ),
    "Bytewax's exchange besides the pickle": (("pushers::exchange",), ("Wire.__reduce__",)),
    "all of the above": (CROSSING, ()),
    "garbage collector": (("gc_collect",), ()),
}
"""Parts of a worker thread's busy samples: a stack with one of the first frames and none of the
second."""


def profile(b: Broker, chosen: list[Contender], steady: int) -> list[str]:
    """One py-spy run of each contender (`--native`): the share of each of `PARTS` in the busy
    samples of its worker threads (waits left out), as markdown rows."""
    flow = chosen[0].flow
    (topic,) = b.topics(f"{flow}-prof")
    events = load(b.bootstrap, flow, topic, steady)
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    shares: dict[str, dict[str, float]] = {}
    for c in chosen:
        if c.kind == "twin":
            continue
        out, dlq = b.topics("out", "dlq")
        env = child_env(c, b.bootstrap, [topic, out, dlq], tail=False)
        raws, procs = [], []
        for cmd in commands(c, [topic, out, dlq], tail=False):
            raw = Path(tempfile.mkstemp(prefix="crossing-", suffix=".txt")[1])
            raws.append(raw)
            spied = [py_spy, "record", "-r", "250", "--nolineno", "--native", "--threads"]
            spied += ["--format", "raw", "-o", str(raw), "--", *cmd]
            quiet = subprocess.DEVNULL
            procs.append(subprocess.Popen(spied, cwd=c.root, env=env, stdout=quiet, stderr=quiet))
        for p in procs:
            assert p.wait(timeout=600) == 0, f"py-spy run of {c.label} failed"
        busy, parts = 0, dict.fromkeys(PARTS, 0)
        for raw in raws:
            for line in raw.read_text(encoding="utf-8").splitlines():
                stack, _, count = line.rpartition(" ")
                inner = ";".join(stack.split(";")[-3:])
                worker = "worker_main" in stack or ("MainThread" in stack and "run_main" in stack)
                if not worker or "importlib" in stack or IDLE.search(inner):
                    continue
                busy += int(count)
                for part, (marks, unless) in PARTS.items():
                    if any(m in stack for m in marks) and not any(m in stack for m in unless):
                        parts[part] += int(count)
            raw.unlink()
        shares[c.label] = {part: 100.0 * n / max(busy, 1) for part, n in parts.items()}
        print(f"profiled {c.label}: {busy:,} busy samples of its worker threads", flush=True)
    labels = [c.label for c in chosen if c.label in shares]
    names = [contender(c) for c in chosen if c.label in shares]
    rows = [
        f"py-spy `--native` of one run of each ({events:,} events, 250 samples/s): share of the "
        "busy samples of the worker threads (waits left out).",
        "",
        f"| part | {' | '.join(names)} |",
        f"| --- |{' ---: |' * len(labels)}",
    ]
    for part in PARTS:
        rows.append(f"| {part} | {' | '.join(f'{shares[x][part]:.1f}%' for x in labels)} |")
    print("\n".join(rows), flush=True)
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="0: no measured rounds")
    parser.add_argument("--flow", choices=sorted(CASES), default="shipments")
    parser.add_argument(
        "--steady", type=int, help="seeded surge steady events (default: benchmarks.peers')"
    )
    parser.add_argument("--baseline", type=Path, help="another checkout, run in the same rounds")
    parser.add_argument("--profile", action="store_true", help="one py-spy run of each")
    parser.add_argument("--micro", action="store_true", help="only the pickle of a crossing")
    parser.add_argument("--doc", type=Path, default=DEFAULT_PATH, help="the file to write")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args(argv)
    trees = {"this tree": ROOT}
    if args.baseline is not None:
        trees = {"baseline": args.baseline.resolve(), **trees}
    case = CASES[args.flow]
    steady = FULL[case.flow]  # `benchmarks.peers`' input of the flow
    assert isinstance(steady, int)
    steady = args.steady or steady
    rows = micro(case, trees, max(args.rounds, 3), batch=500)
    if not args.micro:
        chosen = [
            replace(c, name=f"{c.name} ({label})", root=root)
            for label, root in trees.items()
            for c in contenders(case.flow)
        ]
        b = Broker(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
        try:
            if args.rounds > 0:
                rows += ["", *kafka(b, chosen, args.rounds, steady)]
            if args.profile:
                rows += ["", *profile(b, chosen, steady)]
        finally:
            b.delete_all()
    if not args.no_doc:
        body = case.about + "\n\n" + "\n".join(rows) + "\n"
        print(f"wrote {write_section(case.section, case.title, command_line(), body, args.doc)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
