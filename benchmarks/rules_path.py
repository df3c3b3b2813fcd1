"""The shipments rules path: events/s and CPU per event of one process, this tree against another.

Run: `python -m benchmarks.rules_path [--quick] [--baseline DIR] [--kafka] [--rounds N]
[--profile] [--instructions]`.

Both trees run the same records (the bundled surge, `operators/shipments/surge.py`, generated
once) through `flows.shipments` on the rules path (no LLM, no Redis), one worker:

- *memory*: in process (`bytewax.testing.run_main`), records read from memory and written to a
  null sink: the cost of the flow itself;
- *kafka* (`--kafka`, needs `KAFKA_BOOTSTRAP_SERVERS`): `python -m bytewax.run flows.shipments`
  reading a 4-partition topic produced once and writing to fresh output topics per run, to the
  end of the input (`SURGEFLOW_KAFKA_TAIL=false`).

`--baseline DIR` is another checkout (for example `git archive main | tar -x -C DIR`); each round
runs the baseline then this tree, so the ratios are within a round. Each run is a child process
whose CPU time (user + system) is read from `getrusage(RUSAGE_CHILDREN)`; output counts of the two
trees are printed and must agree. `--profile` also records one in-process run of each tree with
py-spy and reports the functions with the most samples of their own and the inclusive shares of
the flow's parts (`PROFILE_ITEMS`). `--instructions` counts the machine instructions per event of
the in-process run of each tree with valgrind (cachegrind): unlike CPU time, the count does not
depend on what else runs on the machine. Figures go to stdout and to docs/BENCHMARKS.md (section
`rules-path`); `--quick` uses a small input and does not write the section.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from benchmarks.report import command_line, write_section

ROOT = Path(__file__).resolve().parent.parent
EVENTS = {"full": 110_000, "quick": 11_000}

CHILD = r"""
import json, pickle, sys, time, resource
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main
from operators.config.settings import Settings
from operators.connectors.sources import GeneratorSource
from operators.runtime.records import RawRecord
from flows.shipments import build_flow

written = [0]
class Part(StatelessSinkPartition):
    def write_batch(self, items):
        written[0] += len(items)
class Null(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        return Part()

with open(sys.argv[1], "rb") as f:
    pairs = pickle.load(f)
records = [RawRecord(v, k, "shipments.events", offset=i) for i, (k, v) in enumerate(pairs)]
settings = Settings(_env_file=None, kafka_bootstrap_servers=None, redis_url=None,
                    openai_api_key=None, openai_base_url=None)
source = GeneratorSource(lambda: iter(records), name="shipments.events",
                         batch_size=settings.io.batch_size)
flow = build_flow(settings, source=source, sink=Null())
cpu0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
run_main(flow)
wall = time.perf_counter() - t0
cpu1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
print(json.dumps({"events": len(records), "wall": wall, "cpu": cpu, "written": written[0]}))
"""

MEMORY_CHILD = r"""
import json, pickle, sys
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main
from operators.config.settings import Settings
from operators.connectors.sources import GeneratorSource
from operators.runtime.metrics import live_state_keys
from operators.runtime.records import RawRecord
from flows.shipments import build_flow

class Part(StatelessSinkPartition):
    def write_batch(self, items):
        pass
class Null(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        return Part()

with open(sys.argv[1], "rb") as f:
    pairs = pickle.load(f)
records = [RawRecord(v, k, "shipments.events", offset=i) for i, (k, v) in enumerate(pairs)]
marks = {len(records) // 4, len(records) - 500}

def probed():
    for n, record in enumerate(records, 1):
        yield record
        if n in marks:
            with open("/proc/self/statm") as statm:
                rss = int(statm.read().split()[1]) * 4096
            keys = live_state_keys("shipments", "decision_window")
            print(json.dumps({"events": n, "rss": rss, "keys": keys}), flush=True)

settings = Settings(_env_file=None, kafka_bootstrap_servers=None, redis_url=None,
                    openai_api_key=None, openai_base_url=None)
source = GeneratorSource(probed, name="shipments.events", batch_size=settings.io.batch_size)
run_main(build_flow(settings, source=source, sink=Null()))
"""
"""The bundled surge replayed as fast as possible keeps every shipment's state until the input
ends (the wall clock hardly moves): RSS and live keys at a quarter and at the end of the input
give the RSS per live key (the slope), without the input, which is in memory from the start."""


def generate(events: int, path: Path) -> int:
    """Write `events` surge records (key, value) to `path`; the count written."""
    from operators.shipments.surge import shipment_surge

    pairs = [(r.key, r.value) for r in shipment_surge(steady_events=events // 11, burst_factor=10)]
    path.write_bytes(pickle.dumps(pairs))
    return len(pairs)


def _env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURGEFLOW_", "OPENAI_"))}
    env.pop("REDIS_URL", None)
    env["PYTHONPATH"] = str(tree)
    return env


def run_memory(tree: Path, data: Path) -> dict[str, Any]:
    """One in-process run of `tree`'s flow on the records in `data`."""
    env = _env(tree)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(data)], cwd=tree, env=env, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"memory run of {tree} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


PROFILE_ITEMS = {
    "validate (bytes → ShipmentEvent)": "validate.<locals>.parse_batch (",
    "enrich (carrier and hub join)": "join_shipments (operators/shipments/",
    "decision window (state machine, rules, decisions)": "DecisionWindowLogic.",
    "… rules (`decide_window`, `decide_stuck`)": "(operators/shipments/rules.py)",
    "agent step (rules enrichment, lane)": "LaneLogic.on_batch (",
    "publish (serialise, count)": "publish.<locals>",
    "pydantic (everywhere)": "(pydantic/",
}
"""What the profile reports: a name and the frame text that marks its samples."""
IN_RUST = "<module> (<string>)"
"""The innermost frame of a sample taken while Bytewax's own (Rust) code runs: the child's
`run_main` call, made from its `-c` program."""
TOP_FUNCTIONS = 12


def profile(tree: Path, data: Path, work: Path) -> dict[str, list[tuple[str, float]]]:
    """py-spy's samples of one in-process run of `tree`: the inclusive shares of
    `PROFILE_ITEMS` and the functions with the most samples of their own."""
    env = _env(tree)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    raw = work / f"profile-{uuid.uuid4().hex[:6]}.txt"
    py_spy = Path(sys.executable).with_name("py-spy")
    record = [str(py_spy), "record", "-r", "200", "--nolineno", "--format", "raw", "-o", str(raw)]
    done = subprocess.run(
        [*record, "--", sys.executable, "-c", CHILD, str(data)], cwd=tree, env=env,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"profile of {tree} failed:\n{done.stderr[-3000:]}")
    return profile_of(raw.read_text(encoding="utf-8"))


def profile_of(raw: str, top: int = TOP_FUNCTIONS) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's raw output (collapsed stacks, outermost frame first), leaving out the
    samples of start-up (imports, building the flow): `items`, the inclusive share of each of
    `PROFILE_ITEMS`, and `top`, the functions with the most samples of their own (Bytewax's
    own code as `IN_RUST`)."""
    own: dict[str, int] = {}
    items = dict.fromkeys(PROFILE_ITEMS, 0)
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or "importlib" in stack or "build_flow (" in stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for item, mark in PROFILE_ITEMS.items():
            if mark in stack:
                items[item] += n
    if not total:
        return {"items": [], "top": []}
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return {
        "items": [(item, 100.0 * n / total) for item, n in items.items()],
        "top": [(name, 100.0 * n / total) for name, n in ranked],
    }


def profile_rows(profiles: dict[str, dict[str, list[tuple[str, float]]]]) -> list[str]:
    """Markdown of the profiles of the trees, in the order given."""
    labels = list(profiles)
    rows = [
        "py-spy, one in-process run of each tree (200 samples/s, start-up left out): inclusive "
        "share of the samples.",
        "",
        f"| part | {' | '.join(labels)} |",
        f"| --- |{' ---: |' * len(labels)}",
    ]
    for item in PROFILE_ITEMS:
        shares = [dict(profiles[label]["items"]).get(item, 0.0) for label in labels]
        rows.append(f"| {item} | {' | '.join(f'{s:.1f}%' for s in shares)} |")
    for label in labels:
        rows += ["", f"Top functions by own samples, {label}:", ""]
        for name, share in profiles[label]["top"]:
            shown = "Bytewax's own code (`run_main`)" if name == IN_RUST else f"`{name}`"
            rows.append(f"- {share:.1f}% {shown}")
    return rows


INSTRUCTION_EVENTS = (5_000, 15_000)
"""The two input sizes whose instruction counts are subtracted (start-up cancels out)."""


def instructions(tree: Path, data: Path, work: Path) -> float:
    """Machine instructions per event of `tree`'s in-process run: valgrind's count for the first
    `INSTRUCTION_EVENTS[1]` records minus that for the first `INSTRUCTION_EVENTS[0]`, divided
    by the records between them (imports and building the flow cancel out)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("--instructions needs valgrind")
    pairs = pickle.loads(data.read_bytes())
    env = _env(tree)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    counts = []
    for events in INSTRUCTION_EVENTS:
        part = work / f"records-{events}.pickle"
        part.write_bytes(pickle.dumps(pairs[:events]))
        done = subprocess.run(
            [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
             sys.executable, "-c", CHILD, str(part)],
            cwd=tree, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
        if done.returncode != 0 or found is None:
            sys.exit(f"instruction count of {tree} failed:\n{done.stderr[-3000:]}")
        counts.append(int(found.group(1).replace(",", "")))
    small, large = INSTRUCTION_EVENTS
    return (counts[1] - counts[0]) / (large - small)


def instruction_rows(counts: dict[str, float]) -> list[str]:
    """Markdown of the instruction counts of the trees, in the order given."""
    first = next(iter(counts.values()))
    small, large = INSTRUCTION_EVENTS
    rows = [
        f"Machine instructions per event (valgrind's cachegrind, in process, records {small:,} "
        f"to {large:,} of the surge: start-up cancels out; independent of the machine's load).",
        "",
        "| tree | instructions per event | ratio to first |",
        "| --- | ---: | ---: |",
    ]
    rows += [f"| {label} | {n:,.0f} | {n / first:.2f}× |" for label, n in counts.items()]
    return rows


def run_key_memory(tree: Path, data: Path) -> dict[str, Any]:
    """RSS per live shipment key of `tree`'s flow on the records in `data` (`MEMORY_CHILD`)."""
    env = _env(tree)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(data)], cwd=tree, env=env, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"memory-per-key run of {tree} failed:\n{done.stderr[-3000:]}")
    first, last = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    per_key = (last["rss"] - first["rss"]) / max(last["keys"] - first["keys"], 1)
    return {"keys": last["keys"], "rss_mb": last["rss"] / 2**20, "per_key": per_key}


class Broker:
    """The input topic (4 partitions, produced once) and fresh output topics per run."""

    def __init__(self, bootstrap: str, data: Path) -> None:
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient, NewTopic

        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.new_topic = NewTopic
        self.prefix = f"bench{uuid.uuid4().hex[:8]}"
        self.input = f"{self.prefix}.shipments.events"
        self._create(self.input, 4)
        producer = Producer(
            {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 20}
        )
        pairs = pickle.loads(data.read_bytes())
        for key, value in pairs:
            while True:
                try:
                    producer.produce(self.input, value, key.encode() if key else None)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        if producer.flush(60) != 0:
            sys.exit("could not produce the input")
        self.count = len(pairs)

    def _create(self, topic: str, partitions: int) -> None:
        futures = self.admin.create_topics([self.new_topic(topic, partitions, 1)])
        for future in futures.values():
            future.result(30)

    def outputs(self) -> tuple[str, str]:
        run = uuid.uuid4().hex[:6]
        decisions, dlq = f"{self.prefix}.{run}.decisions", f"{self.prefix}.{run}.dlq"
        self._create(decisions, 4)
        self._create(dlq, 1)
        return decisions, dlq

    def count_of(self, topic: str) -> int:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": uuid.uuid4().hex})
        total = 0
        for p in self.admin.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        consumer.close()
        return total

    def run(self, tree: Path) -> dict[str, Any]:
        """`python -m bytewax.run flows.shipments` of `tree`, to the end of the input."""
        decisions, dlq = self.outputs()
        env = _env(tree)
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SURGEFLOW_KAFKA_TAIL": "false",
            "SURGEFLOW_TOPIC_SHIPMENTS_EVENTS": self.input,
            "SURGEFLOW_TOPIC_SHIPMENTS_DECISIONS": decisions,
            "SURGEFLOW_TOPIC_SHIPMENTS_DLQ": dlq,
            "SURGEFLOW_LOG_LEVEL": "WARNING",
        }
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "bytewax.run", "flows.shipments"], cwd=tree, env=env,
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            sys.exit(f"kafka run of {tree} failed:\n{done.stderr[-3000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {
            "events": self.count, "wall": wall, "cpu": cpu,
            "written": self.count_of(decisions) + self.count_of(dlq),
        }  # fmt: skip


def _rate(run: dict[str, Any]) -> float:
    return float(run["events"] / run["wall"])


def _cpu_us(run: dict[str, Any]) -> float:
    return float(run["cpu"] / run["events"] * 1e6)


def rounds(
    name: str, rounds_: int, trees: list[tuple[str, Path]], run: Any
) -> tuple[list[str], dict[str, Any]]:
    """Interleaved rounds of `run(tree)` for every tree; markdown rows and the medians."""
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
    for r in range(rounds_):
        for label, tree in trees:
            figures = run(tree)
            results[label].append(figures)
            print(
                f"{name} round {r + 1}/{rounds_} {label}: {_rate(figures):,.0f} events/s, "
                f"{_cpu_us(figures):.0f} µs CPU/event, {figures['written']:,} records out",
                flush=True,
            )
    base = trees[0][0]
    rows = []
    medians: dict[str, Any] = {}
    for label, _ in trees:
        runs = results[label]
        ratios = [_rate(a) / _rate(b) for a, b in zip(runs, results[base], strict=True)]
        cpu_ratios = [_cpu_us(b) / _cpu_us(a) for a, b in zip(runs, results[base], strict=True)]
        medians[label] = {
            "rate": statistics.median(_rate(x) for x in runs),
            "cpu_us": statistics.median(_cpu_us(x) for x in runs),
            "ratio": statistics.median(ratios),
            "cpu_ratio": statistics.median(cpu_ratios),
            "written": sorted({x["written"] for x in runs}),
        }
        m = medians[label]
        rows.append(
            f"| {name} | {label} | {m['rate']:,.0f} | {m['cpu_us']:.0f} | "
            f"{m['ratio']:.2f}× | {m['cpu_ratio']:.2f}× | "
            f"{', '.join(f'{w:,}' for w in m['written'])} |"
        )
    return rows, medians


def key_memory(events: int, trees: list[tuple[str, Path]], rounds_: int) -> list[str]:
    """Interleaved runs of `run_key_memory`; markdown rows of the medians."""
    found: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "records.pickle"
        count = generate(events, data)
        for r in range(min(rounds_, 3)):
            for label, tree in trees:
                figures = run_key_memory(tree, data)
                found[label].append(figures)
                print(
                    f"key memory round {r + 1} {label}: {figures['keys']:,} live keys, "
                    f"{figures['per_key']:,.0f} B RSS per key, {figures['rss_mb']:.0f} MB",
                    flush=True,
                )
    rows = [
        f"Memory per live key: {count:,} surge records in process, every shipment kept to the "
        "end of the input; RSS growth from a quarter to the end of the input divided by the "
        "live keys added (medians of interleaved runs).",
        "",
        "| tree | live keys at the end | RSS MB at the end | RSS bytes per live key |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, _ in trees:
        runs = found[label]
        rows.append(
            f"| {label} | {statistics.median(x['keys'] for x in runs):,.0f} | "
            f"{statistics.median(x['rss_mb'] for x in runs):,.0f} | "
            f"{statistics.median(x['per_key'] for x in runs):,.0f} |"
        )
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rules_path")
    parser.add_argument("--quick", action="store_true", help="small input; no section written")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--kafka", action="store_true", help="also over KAFKA_BOOTSTRAP_SERVERS")
    parser.add_argument("--no-memory", action="store_true", help="skip the in-process runs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="py-spy one run of each tree")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per event (valgrind)"
    )
    parser.add_argument(
        "--key-memory", type=int, default=0, metavar="EVENTS",
        help="also measure RSS per live key on this many surge events (e.g. 220000)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    trees = [("baseline", args.baseline.resolve())] if args.baseline else []
    trees.append(("this tree", ROOT))
    rows = [
        "| input | tree | events/s (median) | CPU µs/event | events/s ratio to first | "
        "events per CPU-second, ratio to first | records out |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "records.pickle"
        count = generate(EVENTS[mode], data)
        print(f"{count:,} records", flush=True)
        if not args.no_memory:
            found, summary["memory"] = rounds(
                "memory", args.rounds, trees, lambda t: run_memory(t, data)
            )
            rows += found
        if args.kafka:
            bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
            if not bootstrap:
                sys.exit("--kafka needs KAFKA_BOOTSTRAP_SERVERS")
            broker = Broker(bootstrap, data)
            found, summary["kafka"] = rounds("kafka", args.rounds, trees, broker.run)
            rows += found
        if args.instructions:
            counts = {label: instructions(tree, data, Path(tmp)) for label, tree in trees}
            rows += ["", *instruction_rows(counts)]
        if args.profile:
            profiles = {label: profile(tree, data, Path(tmp)) for label, tree in trees}
            rows += ["", *profile_rows(profiles)]
    if args.key_memory:
        rows += ["", *key_memory(args.key_memory, trees, args.rounds)]
    body = "\n".join(
        [
            f"The shipments rules path, 1 worker, {count:,} records of the bundled surge; "
            f"{args.rounds} interleaved rounds, medians, ratios within a round. *memory*: in "
            "process, records from memory to a null sink; *kafka*: `python -m bytewax.run "
            "flows.shipments` on a 4-partition topic to the end of the input (start-up "
            "included). CPU is user + system time of the child process; on a shared machine "
            "the CPU per event is the steadier figure, events/s depends on what else runs.",
            "",
            *rows,
        ]
    )
    print(body)
    if mode == "full":
        write_section("rules-path", "Shipments rules path", command_line(), body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
