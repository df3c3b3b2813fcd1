"""Surgeflow side by side with a bare Kafka loop, a hand-written loop and Quix Streams.

    python -m benchmarks.peers            # the full run (a few minutes), writes docs/BENCHMARKS.md
    python -m benchmarks.peers --quick    # seconds per run, no Quix: what the test runs
    python -m benchmarks.peers --runtimes # the runtimes' own cost (shipments), its own section

Every contender reads the same input topic (4 partitions, the seeded surge written by the
project's Kafka loader, `operators.connectors.kafka.load`) to its end and writes its outputs and
dead letters to topics of its own, on one broker: `KAFKA_BOOTSTRAP_SERVERS`, or one started here
from the jars (`scripts/kafka_broker.py`). The rules path only: no OpenAI endpoint is given to any
contender (`OPENAI_BASE_URL` and `OPENAI_API_KEY` unset), so every enrichment comes from the rules.

Contenders (each a process of its own; `benchmarks.peers_loops`, `benchmarks.peers_quix`):

- `bare loop`: confluent-kafka consume → produce of every record, unchanged (the I/O ceiling);
- `hand-written loop`: the same loop running the project's own domain code (validation, the
  reference join, per-key state with its timers, rules, agents on the rules path, the
  end-of-input flush, dead letters): the reference for the runtime's overhead;
- `Quix Streams` (shipments): the same work in a Quix Streams app, from a venv of its own under
  `.cache/peers/` that the full run creates (pinned `QUIX_VERSION`);
- `Surgeflow`: `python -m bytewax.run flows.<flow>` with 1 worker, `-w 2`, and 2 processes.

With `--runtimes` the run measures the runtimes' own cost instead: each of the bare loop, Quix
Streams and Surgeflow 1 worker once with the domain work taken out (*runtime only*: each record
parsed as JSON, its flow key read and the value produced unchanged under that key,
`benchmarks.peers_loops.pass_through`; Surgeflow runs `benchmarks.peers_runtime`), and in the same
rounds the shipments contenders that run the domain code on those runtimes (the hand-written loop,
Quix Streams, Surgeflow 1 worker), so that the domain code's cost on each runtime is the difference.
It writes a section of its own (`peers-runtimes`), next to the main one.

Rounds are interleaved (each round runs every contender once, the order rotated) and figures are
quoted as within-round ratios. Events/s are counted between the broker append times of a run's first
output (each input partition starts with a probe record that every contender passes on or dead-
letters with its first batch) and its last, so start-up and shutdown are left out. CPU comes from
the child processes' rusage (`os.wait4`), peak RSS from their `VmHWM`; the CPU is net of the
contender's fixed cost, its CPU on an input of the probes only (imports, connecting, stopping),
measured once per contender. Output counts are checked equal across the contenders of a flow (the
bare loop: every record). Decision latency is measured apart: a paced producer (its own process)
writes at half the contender's measured rate while the contender tails the topic; latency is the
broker append time of the decision minus that of the input record that made it (the scan that closed
the window; for tickets, the message), both `LogAppendTime`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.report import DEFAULT_PATH, command_line, write_section

ROOT = Path(__file__).resolve().parent.parent
QUIX_VERSION = "3.28.1"
QUIX_VENV = ROOT / ".cache" / "peers" / f"quix-{QUIX_VERSION}"
PARTITIONS = 4
SECTION = "peers"
RUNTIMES_SECTION = "peers-runtimes"
RUNTIMES_TITLE = "Peers: the runtimes' own cost (shipments)"
TITLE = "Peers: a bare Kafka loop, a hand-written loop, Quix Streams and Surgeflow"
PNG_NAME = "peers.png"
LATENCY_RATE_CAP = 5000.0
"""Events/s of a latency run at most (a tiny `--quick` input can make a rate look huge)."""
RUN_LIMIT_SECONDS = 300.0
"""A run that takes longer is killed (and fails the benchmark)."""

LATENCY_FULL = (
    "hand-written loop", f"Quix Streams {QUIX_VERSION}", "Surgeflow 1 worker",
    "Surgeflow 2 processes",
)  # fmt: skip
FULL = {
    "rounds": 3, "shipments": 4000, "tickets": 4000, "latency_seconds": 12.0,
    "latency": LATENCY_FULL,
}  # fmt: skip
QUICK = {
    "rounds": 1, "shipments": 200, "tickets": 100, "latency_seconds": 4.0,
    "latency": ("Surgeflow 1 worker",),
}  # fmt: skip
"""`shipments`, `tickets`: steady events of the surge (its 10x burst makes 11x that many records);
`latency`: the contenders whose latency is measured (each flow). Tickets take as many as
shipments: with 1,500 (16,500 records) a tickets run's work was about its fixed cost (2
processes: 1.3 CPU s of work, 1.5 s fixed, measured once), so the 2-process figure read 0.87 and
1.31 times 1 worker's in two runs."""


@dataclass(frozen=True)
class Contender:
    name: str
    flow: str
    kind: str  # bare | hand | quix | surgeflow
    workers: int = 1
    processes: int = 1
    runtime_only: bool = False
    """`pass_through` of every record instead of the flow's work (`--runtimes`)."""
    keyed: bool = False
    """Surgeflow runtime only: with the keyed steps of the shipments flow's shape."""
    lanes: bool = False
    """Surgeflow runtime only: the same per-key state in a logic per lane."""
    root: Path = ROOT
    """The checkout it runs from (`--baseline`: another one)."""

    @property
    def label(self) -> str:
        return f"{self.flow}: {self.name}"


def chosen_contenders(
    found: list[Contender], names: Optional[list[str]], baseline: Optional[Path]
) -> list[Contender]:
    """`found` narrowed to the names in `names` (all when None); with a `baseline` checkout, each
    Surgeflow contender is followed by the same command run from that checkout."""
    if names:
        unknown = set(names) - {c.name for c in found}
        if unknown:
            raise SystemExit(f"unknown contenders {sorted(unknown)}; known: {_names(found)}")
        found = [c for c in found if c.name in names]
    if baseline is None:
        return found
    out = []
    for c in found:
        if c.kind == "surgeflow":
            out.append(replace(c, name=f"{c.name} (baseline)", root=baseline.resolve()))
        out.append(c)
    return out


def _names(found: list[Contender]) -> list[str]:
    return list(dict.fromkeys(c.name for c in found))


def contenders(flows: list[str], *, quix: bool) -> list[Contender]:
    found = []
    for flow in flows:
        found += [
            Contender("bare loop", flow, "bare"),
            Contender("hand-written loop", flow, "hand"),
        ]
        if quix and flow == "shipments":
            found.append(Contender(f"Quix Streams {QUIX_VERSION}", flow, "quix"))
        found += [
            Contender("Surgeflow 1 worker", flow, "surgeflow"),
            Contender("Surgeflow -w 2", flow, "surgeflow", workers=2),
            Contender("Surgeflow 2 processes", flow, "surgeflow", processes=2),
        ]
    return found


RUNTIME_ONLY = ", runtime only"
KEYED = " + keyed step"
LANES = " + state per lane"
RUNTIMES = {"bare": "hand", "quix": "quix", "surgeflow": "surgeflow"}
"""Kind of each runtime-only contender → kind of the contender running the domain code on it."""


def runtime_contenders(*, quix: bool) -> list[Contender]:
    """`--runtimes`: the bare loop, each runtime with the domain work out, then the shipments
    contenders that run the domain code on it (the plain loop's is the hand-written loop)."""
    found = [
        Contender("bare loop", "shipments", "bare"),
        Contender(f"bare loop{RUNTIME_ONLY}", "shipments", "bare", runtime_only=True),
    ]
    if quix:
        found.append(
            Contender(f"Quix Streams {QUIX_VERSION}{RUNTIME_ONLY}", "shipments", "quix",
                      runtime_only=True)
        )  # fmt: skip
    found.append(
        Contender(f"Surgeflow 1 worker{RUNTIME_ONLY}", "shipments", "surgeflow", runtime_only=True)
    )
    found.append(
        Contender(f"Surgeflow 1 worker{RUNTIME_ONLY}{KEYED}", "shipments", "surgeflow",
                  runtime_only=True, keyed=True)
    )  # fmt: skip
    found.append(
        Contender(f"Surgeflow 1 worker{RUNTIME_ONLY}{LANES}", "shipments", "surgeflow",
                  runtime_only=True, lanes=True)
    )  # fmt: skip
    found.append(Contender("hand-written loop", "shipments", "hand"))
    if quix:
        found.append(Contender(f"Quix Streams {QUIX_VERSION}", "shipments", "quix"))
    found.append(Contender("Surgeflow 1 worker", "shipments", "surgeflow"))
    return found


# --- the broker and topics ------------------------------------------------------------------


class Broker:
    """Topics of this run on one broker, deleted at the end."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.prefix = f"peers-{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []

    def topics(self, *names: str) -> list[str]:
        """New topics `<prefix>.<name>-<n>`: 4 partitions, broker append time."""
        topics = [f"{self.prefix}.{n}-{len(self.created) + i}" for i, n in enumerate(names)]
        config = {"message.timestamp.type": "LogAppendTime"}
        futures = self.admin.create_topics(
            [NewTopic(t, PARTITIONS, 1, config=config) for t in topics], operation_timeout=30
        )
        for future in futures.values():
            future.result(timeout=60)
        self.created += topics
        for t in topics:  # metadata of a new topic may lag a moment
            deadline = time.monotonic() + 30
            while not self._ready(t):
                assert time.monotonic() < deadline, f"topic {t} not ready"
                time.sleep(0.1)
        return topics

    def _ready(self, topic: str) -> bool:
        meta = self.admin.list_topics(topic, timeout=10).topics.get(topic)
        return meta is not None and meta.error is None and len(meta.partitions) == PARTITIONS

    def count(self, topic: str) -> int:
        """Records in `topic` (high minus low watermark of every partition)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "peers-ignored"})
        total = 0
        for p in range(PARTITIONS):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            total += high - low
        consumer.close()
        return total

    def span(self, *topics: str) -> tuple[int, int]:
        """Append times (ms) of the first and the last record of `topics`: two passes over the
        partitions (their first records, then their last), each assigned at once."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "peers-ignored",
                "fetch.wait.max.ms": 10,
            }
        )
        firsts, lasts = [], []
        for topic in topics:
            for p in range(PARTITIONS):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                if high > low:
                    firsts.append(TopicPartition(topic, p, low))
                    lasts.append(TopicPartition(topic, p, high - 1))
        times = []
        for wanted in (firsts, lasts):
            consumer.assign(wanted)
            pending = {(tp.topic, tp.partition): tp.offset for tp in wanted}
            deadline = time.monotonic() + 30
            while pending:
                assert time.monotonic() < deadline, f"no record at {sorted(pending)}"
                for m in consumer.consume(len(pending), 1.0):
                    where = (m.topic() or "", m.partition() or 0)
                    if m.error() is None and pending.get(where) == m.offset():
                        del pending[where]
                        times.append(m.timestamp()[1])
        consumer.close()
        return min(times), max(times)

    def read(self, topic: str) -> list[tuple[int, bytes]]:
        """Every record of `topic` as (append time in ms, value)."""
        expected = self.count(topic)
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "peers-ignored",
                "enable.auto.commit": "false",
                "enable.partition.eof": "true",
            }
        )
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        found: list[tuple[int, bytes]] = []
        ended: set[int] = set()
        deadline = time.monotonic() + 120
        while len(ended) < PARTITIONS and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        ended.add(m.partition() or 0)
                    continue
                found.append((m.timestamp()[1], m.value() or b""))
        consumer.close()
        assert len(found) == expected, f"read {len(found)} of {expected} records of {topic}"
        return found

    def delete_all(self) -> None:
        if self.created:
            for future in self.admin.delete_topics(self.created, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=30)


PROBE = b'{"probe": "peers"}'
"""The first record of every input partition: each contender turns it into an output (the bare
loop) or a dead letter (the others) as soon as it has read its first batch, so the broker time of
a run's first output marks when it started to process (its start-up is not counted)."""


def probe(bootstrap: str, topic: str) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for p in range(PARTITIONS):
        producer.produce(topic, PROBE, partition=p)
    assert producer.flush(30) == 0


def load(bootstrap: str, flow: str, topic: str, steady: int) -> int:
    """Probes, then the seeded surge of `flow` onto `topic` through the project's Kafka loader."""
    from flows.registry import SPECS
    from operators.config.settings import Settings
    from operators.connectors.kafka.load import load_records

    settings = Settings(kafka_bootstrap_servers=bootstrap)
    records = SPECS[flow].surge_records(
        seed=settings.surge.seed, steady_events=steady, burst_factor=10
    )
    probe(bootstrap, topic)
    return load_records(settings, topic, records, flow=flow)


# --- one run of one contender -----------------------------------------------------------------


@dataclass
class Run:
    wall: float
    busy: float
    """Seconds from the first output's append time to the last one's."""
    cpu: float
    rss_mb: float
    outputs: int
    dead: int


FLOW_TOPICS = {
    "shipments": ("SHIPMENTS_EVENTS", "SHIPMENTS_DECISIONS", "SHIPMENTS_DLQ"),
    "tickets": ("TICKETS_MESSAGES", "TICKETS_RESPONSES", "TICKETS_DLQ"),
}


def child_env(c: Contender, bootstrap: str, topics: list[str], tail: bool) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SURGEFLOW_", "OPENAI_", "BYTEWAX_")) and k != "REDIS_URL"
    }
    env |= {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONPATH": str(c.root)}
    names = FLOW_TOPICS[c.flow]
    env |= {f"SURGEFLOW_TOPIC_{name}": t for name, t in zip(names, topics, strict=True)}
    env |= {"SURGEFLOW_KAFKA_TAIL": "true" if tail else "false", "SURGEFLOW_LOG_LEVEL": "WARNING"}
    return env


def commands(c: Contender, topics: list[str], tail: bool) -> list[list[str]]:
    extra = ["--tail"] if tail else []
    if c.kind in ("bare", "hand"):
        what = "pass" if c.runtime_only else c.kind
        return [[sys.executable, "-m", "benchmarks.peers_loops", what, c.flow, *topics, *extra]]
    if c.kind == "quix":
        extra += ["--runtime-only"] if c.runtime_only else []
        return [[str(QUIX_VENV / "bin" / "python"), "-m", "benchmarks.peers_quix", *topics, *extra]]
    module = f"flows.{c.flow}"
    if c.runtime_only:
        module = "benchmarks.peers_runtime"
        module += ":keyed_flow" if c.keyed else ":lanes_flow" if c.lanes else ""
    run = [sys.executable, "-m", "bytewax.run", module, "-w", str(c.workers)]
    if c.processes == 1:
        return [run]
    from scripts.kafka_broker import free_ports

    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(c.processes))
    return [[*run, "-i", str(i), "-a", addresses] for i in range(c.processes)]


def _high_water_kb(pid: int) -> int:
    """The process's peak RSS so far (`VmHWM`), 0 once it has ended.

    Not `ru_maxrss`: on Linux a child's starts at the RSS of the process that spawned it (the
    high-water mark of the memory it had before `exec`), which would count this one's.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class Children:
    """The processes of one contender, their rusage when they end."""

    def __init__(self, c: Contender, bootstrap: str, topics: list[str], tail: bool) -> None:
        self.log = Path(tempfile.mkstemp(prefix="surgeflow-peers-", suffix=".log")[1])
        env = child_env(c, bootstrap, topics, tail)
        self.started = time.perf_counter()
        with self.log.open("wb") as log:
            self.procs = [
                subprocess.Popen(cmd, cwd=c.root, env=env, stdout=subprocess.DEVNULL, stderr=log)
                for cmd in commands(c, topics, tail)
            ]

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()

    def wait(self, check: bool = True) -> tuple[float, float, float]:
        """Wall seconds until the last one ended, CPU seconds and peak RSS (MB) of them all."""
        cpu = 0.0
        peaks = dict.fromkeys((p.pid for p in self.procs), 0)
        deadline = time.monotonic() + RUN_LIMIT_SECONDS
        for p in self.procs:
            while True:
                for pid in peaks:
                    peaks[pid] = max(peaks[pid], _high_water_kb(pid))
                done, status, usage = os.wait4(p.pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    self.kill()
                time.sleep(0.05)
            p.returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
        rss = sum(peaks.values()) / 1024
        wall = time.perf_counter() - self.started
        failed = [p.returncode for p in self.procs if p.returncode != 0]
        if check and failed:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"exit status {failed}; log {self.log}:\n{tail}")
        self.log.unlink(missing_ok=True)
        return wall, cpu, rss


def run_once(b: Broker, c: Contender, topic: str) -> Run:
    out, dlq = b.topics("out", "dlq")
    wall, cpu, rss = Children(c, b.bootstrap, [topic, out, dlq], tail=False).wait()
    first, last = b.span(out, dlq)
    return Run(
        wall=wall, busy=(last - first) / 1000, cpu=cpu, rss_mb=rss,
        outputs=b.count(out), dead=b.count(dlq),
    )  # fmt: skip


# --- latency ------------------------------------------------------------------------------------


@dataclass
class Latency:
    rate: float
    p50_ms: float
    p99_ms: float
    decisions: int


def closing_times(
    flow: str, inputs: list[tuple[int, bytes]]
) -> tuple[dict[str, list[tuple[datetime, int]]], dict[str, int]]:
    """For each output id, the append time of the input record that made it."""
    by_key: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    by_id: dict[str, int] = {}
    for ts, value in inputs:
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        for field_name in ("event_id", "message_id"):
            if isinstance(obj.get(field_name), str):
                by_id.setdefault(obj[field_name], ts)
        if flow == "shipments" and isinstance(obj.get("shipment_id"), str):
            with contextlib.suppress(Exception):
                at = datetime.fromisoformat(obj["occurred_at"].replace("Z", "+00:00"))
                if at.tzinfo is not None:
                    by_key[obj["shipment_id"]].append((at, ts))
    return by_key, by_id


def latency_of(
    flow: str, kind: str, inputs: list[tuple[int, bytes]], outputs: list[tuple[int, bytes]],
    *, since_ms: int, lateness: timedelta,
) -> list[float]:  # fmt: skip
    """Milliseconds from the closing input's append time to the output's, per output."""
    by_key, by_id = closing_times(flow, inputs)
    found = []
    for ts, value in outputs:
        obj = orjson.loads(value)
        if not isinstance(obj, dict):
            continue
        start: Optional[int] = None
        if kind == "bare":
            start = by_id.get(obj.get("event_id") or obj.get("message_id") or "")
        elif flow == "tickets":
            start = by_id.get(obj.get("message_id", ""))
        elif obj.get("trigger") == "window_closed":
            reach = datetime.fromisoformat(obj["window_end"].replace("Z", "+00:00")) + lateness
            start = next((t for at, t in by_key[obj["shipment_id"]] if at >= reach), None)
        if start is not None and start >= since_ms and ts >= start:
            found.append(float(ts - start))
    return found


def measure_latency(
    b: Broker, c: Contender, rate: float, seconds: float, steady: int, startup: float
) -> Latency:
    from operators.config.settings import Settings

    topic, out, dlq = b.topics("paced-in", "out", "dlq")
    children = Children(c, b.bootstrap, [topic, out, dlq], tail=True)
    time.sleep(startup + 1.0)
    count = max(int(rate * seconds), 1)
    env = child_env(c, b.bootstrap, [topic, out, dlq], tail=True)
    producer = [sys.executable, "-m", "benchmarks.peers_loops", "produce", c.flow, topic]
    steady = max(steady, count // 11 + 1)  # the surge makes 11 records per steady event
    producer += ["--rate", f"{rate:.1f}", "--count", str(count), "--steady", str(steady)]
    started_ms = time.time() * 1000
    subprocess.run(producer, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    time.sleep(3.0)
    children.stop()
    children.wait(check=False)
    since = int(started_ms + 0.25 * seconds * 1000)  # the first quarter is the warm-up
    lateness = timedelta(minutes=Settings().shipments.allowed_lateness_minutes)
    inputs, outputs = b.read(topic), b.read(out)
    values = latency_of(c.flow, c.kind, inputs, outputs, since_ms=since, lateness=lateness)
    if not values:
        return Latency(rate, float("nan"), float("nan"), 0)
    values.sort()
    return Latency(
        rate=rate,
        p50_ms=values[len(values) // 2],
        p99_ms=values[min(len(values) - 1, int(len(values) * 0.99))],
        decisions=len(values),
    )


# --- the Quix venv ------------------------------------------------------------------------------


def quix_venv() -> Path:
    """`.cache/peers/quix-<version>`: Quix Streams and the project's runtime dependencies (never
    ours: the contender runs there with the checkout on PYTHONPATH). Made once, then reused."""
    import tomllib

    python = QUIX_VENV / "bin" / "python"
    stamp = QUIX_VENV / ".installed"
    if stamp.exists():
        return python
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    print(f"creating {QUIX_VENV} (quixstreams=={QUIX_VERSION})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"quixstreams=={QUIX_VERSION}", *deps], check=True)
    stamp.write_text(QUIX_VERSION)
    return python


# --- the benchmark -----------------------------------------------------------------------------


@dataclass
class Figures:
    runs: dict[str, list[Run]] = field(default_factory=lambda: defaultdict(list))
    fixed: dict[str, Run] = field(default_factory=dict)
    ratios: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    latency: dict[str, Latency] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)

    def rate(self, c: Contender, run: Run) -> float:
        return self.events[c.flow] / max(run.busy, 1e-3)

    def cpu_per_k(self, c: Contender, run: Run) -> float:
        fixed = self.fixed[c.label]
        return (run.cpu - fixed.cpu) / self.events[c.flow] * 1000


def benchmark(b: Broker, chosen: list[Contender], mode: dict[str, Any]) -> Figures:
    figures = Figures()
    flows = list(dict.fromkeys(c.flow for c in chosen))
    inputs, tiny = {}, {}
    for flow in flows:
        (inputs[flow],) = b.topics(f"{flow}-in")
        figures.events[flow] = load(b.bootstrap, flow, inputs[flow], mode[flow])
        (tiny[flow],) = b.topics(f"{flow}-probes")
        probe(b.bootstrap, tiny[flow])
        print(f"{flow}: {figures.events[flow]:,} events on {inputs[flow]}", flush=True)
    for c in chosen:
        fixed = figures.fixed[c.label] = run_once(b, c, tiny[c.flow])
        print(f"fixed cost  {c.label:<40} {fixed.wall:6.2f} s  cpu {fixed.cpu:6.2f} s", flush=True)
    for r in range(mode["rounds"]):
        order = chosen[r % len(chosen) :] + chosen[: r % len(chosen)]
        in_round: dict[str, float] = {}
        for c in order:
            run = run_once(b, c, inputs[c.flow])
            figures.runs[c.label].append(run)
            rate = in_round[c.label] = figures.rate(c, run)
            print(
                f"round {r + 1}/{mode['rounds']}  {c.label:<40} {run.wall:6.2f} s  "
                f"{rate:9,.0f} events/s  cpu {figures.cpu_per_k(c, run):6.3f} s/1k  "
                f"rss {run.rss_mb:6.0f} MB  outputs {run.outputs:,}  dead letters {run.dead:,}",
                flush=True,
            )
        for c in chosen:
            for ref in ("bare loop", "hand-written loop"):
                base = in_round.get(f"{c.flow}: {ref}")
                if base:
                    figures.ratios[c.label][ref].append(in_round[c.label] / base)
    for c in chosen:
        if c.name not in mode["latency"] or (c.flow == "tickets" and c.kind == "quix"):
            continue
        rate = 0.5 * statistics.median(figures.rate(c, run) for run in figures.runs[c.label])
        rate = min(rate, LATENCY_RATE_CAP)
        startup = figures.fixed[c.label].wall
        lat = figures.latency[c.label] = measure_latency(
            b, c, rate, mode["latency_seconds"], mode[c.flow], startup
        )
        print(
            f"latency     {c.label:<40} at {lat.rate:7,.0f} events/s: p50 {lat.p50_ms:6.1f} ms  "
            f"p99 {lat.p99_ms:6.1f} ms ({lat.decisions:,} outputs)",
            flush=True,
        )
    return figures


def count_check(chosen: list[Contender], figures: Figures) -> list[str]:
    """Differences between the output counts of the contenders of each flow (empty: equal)."""
    problems = []
    for flow in dict.fromkeys(c.flow for c in chosen):
        seen: dict[tuple[int, int], list[str]] = defaultdict(list)
        for c in chosen:
            if c.flow != flow:
                continue
            for run in figures.runs[c.label]:
                if c.kind == "bare" or c.runtime_only:  # every record passed on
                    if run.outputs != figures.events[flow] + PARTITIONS:
                        problems.append(f"{c.label}: {run.outputs} of {figures.events[flow]}")
                    continue
                seen[(run.outputs, run.dead)].append(c.name)
        if len(seen) > 1:
            shown = "; ".join(
                f"{o:,} outputs + {d:,} dead letters: {', '.join(sorted(set(n)))}"
                for (o, d), n in seen.items()
            )
            problems.append(f"{flow}: {shown}")
    return problems


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def plot(chosen: list[Contender], figures: Figures, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flows = list(dict.fromkeys(c.flow for c in chosen))
    fig, axes = plt.subplots(len(flows), 2, figsize=(12, 3.6 * len(flows)), squeeze=False)
    for row, flow in enumerate(flows):
        mine = [c for c in chosen if c.flow == flow]
        names = [c.name for c in mine]
        rates = [_median([figures.rate(c, r) for r in figures.runs[c.label]]) for c in mine]
        cpus = [_median([figures.cpu_per_k(c, r) for r in figures.runs[c.label]]) for c in mine]
        for ax, values, title in (
            (axes[row][0], rates, f"{flow}: events/s (median, net of start-up)"),
            (axes[row][1], cpus, f"{flow}: CPU seconds per 1,000 events"),
        ):
            ax.barh(names, values, color="#4c72b0")
            ax.invert_yaxis()
            ax.set_title(title, fontsize=10)
            for i, v in enumerate(values):
                ax.text(v, i, f" {v:,.0f}" if v >= 10 else f" {v:.3f}", va="center", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def section_body(chosen: list[Contender], figures: Figures, mode: dict[str, Any], png: str) -> str:
    lines = [
        "Every contender reads the same input topic (4 partitions: one probe record at the head "
        "of each, then the seeded surge written by `operators.connectors.kafka.load`) to its end "
        "on one broker and writes its own output and dead-letter topics; the rules path only "
        "(no OpenAI endpoint, so no LLM call). Inputs: "
        + ", ".join(f"{flow} {n:,} events" for flow, n in figures.events.items())
        + f". {mode['rounds']} interleaved rounds (each runs every contender once, the order "
        "rotated); the ratios are medians of within-round ratios, the other figures medians of "
        "the rounds. The machine is shared: quote the ratios, not the absolute figures.",
        "",
        "- *events/s*: input events over the broker append times of the run's first output "
        "(the probe, passed on or dead-lettered with the first batch) and its last one (after "
        "the end-of-input flush), so start-up and shutdown are not counted;",
        "- *CPU s / 1k events*: the child processes' rusage (`os.wait4`), *peak RSS*: their "
        "`VmHWM` (two processes: summed); the CPU is net of the contender's *fixed cost*: the "
        "same command on an input of the 4 probes only (imports, connecting, stopping), run once;",
        "- *outputs + dead letters*: counted on the broker. The bare loop passes every record on "
        "(the events and the 4 probes); the others write the decisions (responses) and dead "
        "letters of the same work, the probes among the dead letters;",
        "- *latency*: a paced producer (a process of its own) writes the surge at half the "
        f"contender's median events/s (at most {LATENCY_RATE_CAP:,.0f}) while the contender "
        "tails the topic; latency is the "
        "broker append time (`LogAppendTime`) of a decision minus that of the scan that closed "
        "its window (the shipment's first scan at or past the window's end plus the allowed "
        "lateness; `window_closed` decisions only), for tickets of the response minus its "
        "message; the first quarter of the run is left out as warm-up.",
        "",
        "The hand-written loop runs the flows' own code (`benchmarks/peers_loops.py`): "
        "`parse_record`, the polars join of each batch, one `ShipmentWindows` per shipment with "
        "its timers (or `SessionHistory` per session, the router and the reply worker), the "
        "agent on the rules path (`AgentRunner.answer_now`), the end-of-input flush, and the "
        "flows' delivery-checked idempotent producer flushed per batch; one consumer reads the "
        "4 partitions in batches of `SURGEFLOW_IO_BATCH_SIZE`. Quix Streams "
        f"{QUIX_VERSION} runs from a venv of its own (`.cache/peers/`, made by the full run) "
        "with the same validation, windows, rules and agent one record at a time "
        "(`benchmarks/peers_quix.py`): the reference join is a dict lookup per record, the "
        "windows are held in the app's memory (Quix's tumbling windows cannot carry a "
        "shipment's history into the next window's rules, fire the stuck timer, or close open "
        "windows when a bounded input ends), and the end-of-input flush goes out through Quix's "
        "producer; its producer has the flows' settings (idempotent, `acks=all`, lz4, murmur2). "
        "Surgeflow is `python -m bytewax.run flows.<flow>` (`-w 2`; 2 processes: `-i 0/1 -a`), "
        "`SURGEFLOW_KAFKA_TAIL=false`.",
        "",
        "What 2 processes add per event: a keyed step (the shipment window, the session "
        "history) routes each item to the worker that owns its key, and with 2 processes about "
        "half of the input is read by the other process's worker. `route_by_key` "
        "(`operators.runtime.exchange`) sends those items a batch at a time, one message per "
        "owning worker, pickled once as a list (a shipment scan about 4 µs to pickle and "
        "unpickle in all, as `EnrichedGroup`; 20 µs twice and 15 µs when Bytewax moves it on "
        "its own; a parsed ticket message about 3.5 µs, as `ParsedGroup`; see the `crossing` "
        "and `crossing-tickets` sections). The "
        "agent steps give each item a lane that Bytewax routes to the worker it is already on "
        "(`operators.runtime.placement`), so decisions and replies do not cross. What is left is "
        "that crossing of the input and Bytewax's work per message. Idle, a process spins "
        "little (2-3% of a core with nothing to read).",
        "",
        f"![events/s and CPU per 1,000 events]({png})",
        "",
        "| contender | events/s | × bare loop | × hand-written loop | CPU s / 1k events | "
        "peak RSS MB | fixed cost s (CPU s) | outputs + dead letters | latency p50 / p99 ms "
        "(at events/s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in chosen:
        runs = figures.runs[c.label]
        fixed = figures.fixed[c.label]
        rate = _median([figures.rate(c, r) for r in runs])
        cpu = _median([figures.cpu_per_k(c, r) for r in runs])
        rss = max(r.rss_mb for r in runs)
        bare = _median(figures.ratios[c.label]["bare loop"])
        hand = _median(figures.ratios[c.label]["hand-written loop"])
        counts = ", ".join(sorted({f"{r.outputs:,} + {r.dead:,}" for r in runs}))
        lat = figures.latency.get(c.label)
        shown = f"{lat.p50_ms:.0f} / {lat.p99_ms:.0f} ({lat.rate:,.0f})" if lat else "—"
        lines.append(
            f"| {c.label} | {rate:,.0f} | {bare:.2f} | {hand:.2f} | {cpu:.3f} | {rss:.0f} | "
            f"{fixed.wall:.1f} ({fixed.cpu:.1f}) | {counts} | {shown} |"
        )
    problems = count_check(chosen, figures)
    lines += [
        "",
        "Output counts: "
        + ("equal across contenders of each flow." if not problems else "; ".join(problems)),
    ]
    return "\n".join(lines) + "\n"


def _per_round(figures: Figures, c: Contender) -> list[float]:
    return [figures.cpu_per_k(c, r) for r in figures.runs[c.label]]


@dataclass(frozen=True)
class RuntimeCost:
    """One runtime's CPU s / 1k events: alone (`runtime_only`), with the domain code (`full`),
    and the domain code's share (`domain` = full - runtime only), each per round."""

    name: str
    runtime_only: list[float]
    full: list[float]

    @property
    def domain(self) -> list[float]:
        return [f - r for f, r in zip(self.full, self.runtime_only, strict=True)]


def runtime_costs(chosen: list[Contender], figures: Figures) -> dict[str, RuntimeCost]:
    """Per runtime (`plain`, `quix`, `surgeflow`, `surgeflow keyed`, `surgeflow lanes`) of the run,
    when both its runtime-only contender and its domain contender ran."""
    single = [c for c in chosen if c.workers == c.processes == 1]
    full = {c.kind: c for c in single if not c.runtime_only}
    found = {}
    for alone in (c for c in single if c.runtime_only):
        domain = full.get(RUNTIMES[alone.kind])
        if domain is None:
            continue
        name = alone.name.replace(RUNTIME_ONLY, "")
        kind = "plain" if alone.kind == "bare" else alone.kind
        kind += " keyed" if alone.keyed else " lanes" if alone.lanes else ""
        name = "plain loop" if kind == "plain" else name
        found[kind] = RuntimeCost(name, _per_round(figures, alone), _per_round(figures, domain))
    return found


def _ratio(a: list[float], b: list[float]) -> float:
    """Median of the within-round ratios a / b."""
    return _median([x / y for x, y in zip(a, b, strict=True) if y > 0])


def runtimes_body(chosen: list[Contender], figures: Figures, mode: dict[str, Any]) -> str:
    """The `--runtimes` section: each contender's figures, then each runtime's own cost, the
    domain code's, and what the issue's targets mean on them."""
    lines = [
        f"Shipments, {figures.events['shipments']:,} events on one input topic (as in the main "
        f"table), {mode['rounds']} interleaved rounds. A *runtime only* contender does the "
        "same small work in each runtime (`benchmarks.peers_loops.pass_through`: every record "
        "parsed as JSON with orjson, its `shipment_id` read, the value produced unchanged under "
        "that key to the output topic; no validation, no dead letters): the plain confluent-kafka "
        "loop of the hand-written contender, a Quix Streams app (`StreamingDataFrame.apply`, "
        "`to_topic`), and Surgeflow 1 worker (`python -m bytewax.run benchmarks.peers_runtime`: "
        "the flows' `KafkaRecordSource`, the counted `ingest` step, one `flat_map_batch`, the "
        "flows' `KafkaRecordSink`); *+ keyed step* (`benchmarks.peers_runtime:keyed_flow`) adds "
        "the keyed part of the shipments flow's shape: `route_by_key` by shipment and a Bytewax "
        "`stateful` logic per key that emits each record (no timers); *+ state per lane* "
        "(`:lanes_flow`) keeps the same counts per key in 16 `stateful_batch` logics, one per "
        "lane (a hash of the key), a batch at a time. The contenders that run "
        "the domain code on the same runtimes "
        "(the hand-written loop, Quix Streams, Surgeflow 1 worker) run in the same rounds, so "
        "the domain code's cost on each runtime is *with domain code* minus *runtime only*. "
        "CPU is net of each contender's fixed cost, as in the main table; ratios are medians of "
        "within-round ratios.",
        "",
        "| contender | events/s | CPU s / 1k events | peak RSS MB | fixed cost s (CPU s) | "
        "outputs + dead letters |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in chosen:
        runs = figures.runs[c.label]
        fixed = figures.fixed[c.label]
        rate = _median([figures.rate(c, r) for r in runs])
        counts = ", ".join(sorted({f"{r.outputs:,} + {r.dead:,}" for r in runs}))
        lines.append(
            f"| {c.label} | {rate:,.0f} | {_median(_per_round(figures, c)):.4f} | "
            f"{max(r.rss_mb for r in runs):.0f} | {fixed.wall:.1f} ({fixed.cpu:.1f}) | {counts} |"
        )
    costs = runtime_costs(chosen, figures)
    plain = costs.get("plain")
    lines += [
        "",
        "| runtime | runtime only, CPU s / 1k | above the plain loop's | with domain code | "
        "domain code (difference) | runtime share of the total |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for cost in costs.values():
        above = (
            _median([a - b for a, b in zip(cost.runtime_only, plain.runtime_only, strict=True)])
            if plain is not None
            else float("nan")
        )
        lines.append(
            f"| {cost.name} | {_median(cost.runtime_only):.4f} | {above:.4f} | "
            f"{_median(cost.full):.4f} | {_median(cost.domain):.4f} | "
            f"{_ratio(cost.runtime_only, cost.full):.2f} |"
        )
    lines += ["", *targets_lines(chosen, figures, costs)]
    problems = count_check(chosen, figures)
    lines += [
        "",
        "Output counts: "
        + ("as expected (runtime only and the bare loop: every record; the contenders with "
           "domain code: equal)." if not problems else "; ".join(problems)),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def targets_lines(
    chosen: list[Contender], figures: Figures, costs: dict[str, RuntimeCost]
) -> list[str]:
    """What issue 13's shipments targets mean on these figures (CPU per event, 1 process).

    Surgeflow's domain code is its contender's CPU minus its runtime's, the runtime with the
    flow's keyed step when that ran (the closer shape), else the plain runtime-only flow."""
    quix, plain = costs.get("quix"), costs.get("plain")
    sf = costs.get("surgeflow keyed") or costs.get("surgeflow")
    bare = next((c for c in chosen if c.kind == "bare" and not c.runtime_only), None)
    lines: list[str] = []
    if sf is None:
        return lines
    lines.append(
        f"- Surgeflow ({sf.name}): its domain code costs {_median(sf.domain):.4f} CPU s / 1k "
        f"events, its runtime {_median(sf.runtime_only):.4f}."
    )
    if quix is not None:
        for kind in ("surgeflow", "surgeflow keyed", "surgeflow lanes"):
            mine = costs.get(kind)
            if mine is None:
                continue
            ratio = _ratio(mine.runtime_only, quix.runtime_only)
            above = (
                f"{_ratio(_minus(mine.runtime_only, plain.runtime_only), _minus(quix.runtime_only, plain.runtime_only)):.2f}x"  # noqa: E501
                if plain is not None
                else "—"
            )
            verdict = "met" if ratio <= 0.5 else "not met"
            lines.append(
                f"- {mine.name}: its runtime costs {ratio:.2f}x Quix's (runtime only, CPU per "
                f"event; {above} of Quix's cost above the plain loop's): *Surgeflow's runtime "
                f"at most half of Quix's* is {verdict}."
            )
        half = [0.5 * q - d for q, d in zip(quix.full, sf.domain, strict=True)]
        full_ratio = _ratio(sf.full, quix.full)
        lines.append(
            f"- *>= 2x Quix Streams* (Surgeflow at most half Quix's CPU per event, "
            f"{_median([0.5 * q for q in quix.full]):.4f} s / 1k): with the domain code Surgeflow "
            f"takes {full_ratio:.2f}x Quix's CPU per event; its domain code as it is leaves "
            f"{_median(half):.4f} s / 1k for its runtime, so it is "
            + ("met." if full_ratio <= 0.5 else "not met, and not reachable by runtime work "
               "alone." if _median(half) <= 0 else "not met.")
        )  # fmt: skip
    if bare is not None:
        ceiling = [4 * figures.cpu_per_k(bare, r) for r in figures.runs[bare.label]]
        left = [c - d for c, d in zip(ceiling, sf.domain, strict=True)]
        lines.append(
            f"- *>= 0.25x the bare loop* (on one core, CPU per event at most 4x the bare loop's, "
            f"{_median(ceiling):.4f} s / 1k in all): the domain code alone takes "
            f"{_ratio(sf.domain, ceiling):.1f}x that, so "
            + ("it is met." if _ratio(sf.full, ceiling) <= 1 else
               "no runtime meets it until the domain code costs less."
               if _median(left) <= 0 else f"{_median(left):.4f} s / 1k is left for the runtime.")
        )  # fmt: skip
    return lines


def _minus(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, 1 round, no Quix")
    parser.add_argument("--rounds", type=int)
    parser.add_argument(
        "--steady", type=int, metavar="N",
        help="steady events of each flow's surge (its burst makes 11x N records)",
    )  # fmt: skip
    parser.add_argument("--flows", nargs="+", default=["shipments", "tickets"])
    parser.add_argument("--no-quix", action="store_true", help="leave Quix Streams out")
    parser.add_argument("--with-quix", action="store_true", help="Quix Streams even with --quick")
    parser.add_argument(
        "--contenders", nargs="+", metavar="NAME",
        help='only these contenders (their names, e.g. "Surgeflow 1 worker")',
    )  # fmt: skip
    parser.add_argument(
        "--baseline", type=Path, metavar="DIR",
        help="another checkout (e.g. `git archive <commit> | tar -x -C DIR`): each Surgeflow "
        "contender also runs from there, in the same rounds",
    )  # fmt: skip
    parser.add_argument("--no-latency", action="store_true", help="leave the latency runs out")
    parser.add_argument(
        "--runtimes", action="store_true",
        help="the runtimes' own cost (shipments; runtime-only contenders next to the ones with "
        "domain code), written to a section of its own",
    )  # fmt: skip
    parser.add_argument("--doc", type=Path, default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    mode = dict(QUICK if args.quick else FULL)
    if args.rounds:
        mode["rounds"] = args.rounds
    if args.steady:
        mode["shipments"] = mode["tickets"] = args.steady
    if args.no_latency:
        mode["latency"] = ()
    quix = args.with_quix or not (args.quick or args.no_quix)
    found = runtime_contenders(quix=quix) if args.runtimes else contenders(args.flows, quix=quix)
    if args.runtimes:
        mode["latency"] = ()
    chosen = chosen_contenders(found, args.contenders, args.baseline)
    if any(c.kind == "quix" for c in chosen):
        quix_venv()
    from scripts.kafka_broker import given_or_started

    with given_or_started() as bootstrap:
        b = Broker(bootstrap)
        try:
            figures = benchmark(b, chosen, mode)
        finally:
            b.delete_all()
    if args.runtimes:
        body = runtimes_body(chosen, figures, mode)
        write_section(RUNTIMES_SECTION, RUNTIMES_TITLE, command_line(), body, args.doc)
    else:
        png = args.doc.parent / PNG_NAME
        plot(chosen, figures, png)
        body = section_body(chosen, figures, mode, PNG_NAME)
        write_section(SECTION, TITLE, command_line(), body, args.doc)
    print(body)
    problems = count_check(chosen, figures)
    for p in problems:
        print(f"output counts differ: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
