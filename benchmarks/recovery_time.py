"""Time from a kill -9 to caught-up, and events replayed, against the snapshot interval.

For each snapshot interval (`-s 1`, `-s 5`) a producer writes the bundled surge to a fresh
4-partition topic at a steady rate; `python -m bytewax.run "benchmarks.recovery_time:tracked_flow()"
-r DIR -s S -b 0` (the shipments flow, rules path, whose Kafka partitions report their read
positions to small files) keeps up with it. The flow is killed with SIGKILL at a random moment,
restarted at once, and measured: events replayed (read before the kill and read again, i.e. the
position at the kill minus the position the restart resumed from) and the time from the restart
command to caught-up (its read position within `CAUGHT_UP_SECONDS` of input of the producer's).

Needs `KAFKA_BOOTSTRAP_SERVERS`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

from bytewax.dataflow import Dataflow
from bytewax.inputs import StatefulSourcePartition
from bytewax.recovery import init_db_dir
from confluent_kafka import Producer

from operators.config.settings import Settings
from operators.connectors.kafka.config import client_config
from operators.connectors.kafka.source import KafkaRecordSource
from operators.connectors.kafka.topics import create_topics, flow_topics
from operators.runtime import progress
from operators.runtime.records import RawRecord
from operators.shipments.surge import shipment_surge

ROOT = Path(__file__).resolve().parent.parent
STATUS_DIR = "SURGEFLOW_BENCH_STATUS_DIR"
"""Where the tracked flow's partitions write their positions (a benchmark-only variable)."""

RATE = 1000.0
CAUGHT_UP_SECONDS = 0.25
CATCH_UP_LIMIT_SECONDS = 120.0
INTERVALS = (1, 5)
KILLS = {"full": 3, "quick": 1}


class _Tracked(StatefulSourcePartition[RawRecord, Optional[int]]):
    """A Kafka partition that writes `{"resume", "next"}` to its status file after each batch."""

    def __init__(
        self,
        inner: StatefulSourcePartition[RawRecord, Optional[int]],
        status: Path,
        resume: Optional[int],
    ) -> None:
        self._inner, self._status = inner, status
        self._resume = resume
        self._write()

    def next_batch(self) -> Iterable[RawRecord]:
        batch = self._inner.next_batch()
        if batch:
            self._write()
        return batch

    def _write(self) -> None:
        tmp = self._status.with_suffix(".tmp")
        tmp.write_text(json.dumps({"resume": self._resume, "next": self._inner.snapshot()}))
        os.replace(tmp, self._status)

    def next_awake(self) -> Any:
        return self._inner.next_awake()

    def snapshot(self) -> Optional[int]:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class TrackedSource(KafkaRecordSource):
    """`KafkaRecordSource` whose partitions report positions to `<dir>/<pid>-<part>.json`."""

    def __init__(self, settings: Settings, topics: list[str], status_dir: Path) -> None:
        super().__init__(settings, topics, flow="shipments")
        self._dir = status_dir

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> _Tracked:
        status = self._dir / f"{os.getpid()}-{for_part}.json"
        return _Tracked(super().build_part(step_id, for_part, resume_state), status, resume_state)


def tracked_flow() -> Dataflow:
    """The shipments flow reading Kafka through `TrackedSource` (for `bytewax.run`)."""
    from flows.shipments import build_flow

    settings = Settings()
    status_dir = Path(os.environ[STATUS_DIR])
    source = TrackedSource(settings, [settings.topics.shipments_events], status_dir)
    return build_flow(settings, source=source)


def positions(status_dir: Path, pid: int) -> dict[str, dict[str, Optional[int]]]:
    """Per partition, the resume and next positions the process `pid` last reported."""
    found = {}
    for path in status_dir.glob(f"{pid}-*.json"):
        try:
            found[path.stem.split("-", 1)[1]] = json.loads(path.read_text())
        except (ValueError, OSError):
            continue
    return found


def read_position(status: dict[str, dict[str, Optional[int]]]) -> int:
    return sum(p["next"] or 0 for p in status.values())


class PacedProducer:
    """Writes surge records to `topic` at `RATE` per second, from the caller's loop."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._producer = Producer(
            {**client_config(settings.kafka), "partitioner": "murmur2_random"}
        )
        self._records = shipment_surge(steady_events=50_000, burst_factor=10)
        self._topic, self._started, self.sent = topic, time.monotonic(), 0

    def pump(self) -> int:
        """Produce what is due by now; the number produced so far."""
        due = int((time.monotonic() - self._started) * RATE)
        while self.sent < due:
            record = next(self._records)
            key = None if record.key is None else record.key.encode()
            self._producer.produce(self._topic, record.value, key)
            self.sent += 1
        self._producer.poll(0)
        return self.sent

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump()
            time.sleep(0.01)

    def close(self) -> None:
        self._producer.flush(30)


def start(env: dict[str, str], store: Path, interval: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bytewax.run", "benchmarks.recovery_time:tracked_flow()"]
    command += ["-r", str(store), "-s", str(interval), "-b", "0"]
    # its log comes through this process while a bar is drawn (above the bar, not across it)
    return progress.popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def kill_and_restart(
    proc: subprocess.Popen[bytes],
    producer: PacedProducer,
    env: dict[str, str],
    store: Path,
    interval: int,
) -> tuple[subprocess.Popen[bytes], dict[str, float]]:
    """SIGKILL `proc`, restart at once; figures of the restart once it has caught up."""
    status_dir = Path(env[STATUS_DIR])
    producer.pump()
    before = read_position(positions(status_dir, proc.pid))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    restarted_at = time.monotonic()
    proc = start(env, store, interval)
    first_read, deadline = None, restarted_at + CATCH_UP_LIMIT_SECONDS
    while True:
        head = producer.pump()
        status = positions(status_dir, proc.pid)
        position = read_position(status)
        if first_read is None and position > sum(p["resume"] or 0 for p in status.values()):
            first_read = time.monotonic() - restarted_at
        if status and position >= head - RATE * CAUGHT_UP_SECONDS:
            break
        assert proc.poll() is None, "the restarted flow ended"
        assert time.monotonic() < deadline, f"no catch-up within {CATCH_UP_LIMIT_SECONDS} s"
        time.sleep(0.01)
    resumed = sum(p["resume"] or 0 for p in status.values())
    return proc, {
        "replayed": before - resumed,
        "caught_up_s": time.monotonic() - restarted_at,
        "first_read_s": first_read or 0.0,
    }


def measure_interval(
    settings: Settings, interval: int, kills: int, bar: Optional[progress.Bar] = None
) -> list[dict[str, float]]:
    """Kill and restart the flow `kills` times at `-s interval`; figures of each restart (`bar`
    advances by one a restart)."""
    work = Path(tempfile.mkdtemp(prefix="surgeflow-recovery-"))
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    topics = {f: f"{prefix}.{settings.flat()[f]}" for f in _SHIPMENT_TOPICS}
    run_settings = settings.replaced(**topics)
    create_topics(run_settings, flow_topics(run_settings, "shipments"), partitions=4)
    (work / "store").mkdir()
    init_db_dir(work / "store", 4)
    (work / "status").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), STATUS_DIR: str(work / "status")}
    env |= {f"SURGEFLOW_{f.upper()}": t for f, t in topics.items()}
    producer = PacedProducer(run_settings, topics["topic_shipments_events"])
    proc = start(env, work / "store", interval)
    results = []
    try:
        producer.run_for(10.0)
        for _ in range(kills):
            producer.run_for(random.uniform(interval, 2 * interval + 2))
            proc, figures = kill_and_restart(proc, producer, env, work / "store", interval)
            results.append(figures)
            if bar is not None:
                bar.advance()
    finally:
        proc.kill()
        producer.close()
        shutil.rmtree(work, ignore_errors=True)
    return results


_SHIPMENT_TOPICS = ("topic_shipments_events", "topic_shipments_decisions", "topic_shipments_dlq")


def recovery_section(mode: str) -> str:
    """Measure every interval; the markdown table."""
    settings = Settings()
    if not settings.kafka.enabled:
        return "Recovery after kill -9: skipped (set KAFKA_BOOTSTRAP_SERVERS).\n"
    rows = [
        f"Recovery after kill -9 (Kafka input at {RATE:.0f} records/s, 4 partitions, "
        f"{KILLS[mode]} kill(s) per interval; caught up = read position within "
        f"{CAUGHT_UP_SECONDS} s of input of the producer). The flow is the shipments flow (rules "
        "path, Kafka in and out, one process); the restart time includes about a second of "
        "process start (imports). A kill replays at most the input of one snapshot interval "
        "plus the batch in flight.\n",
        "| snapshot interval | events replayed (mean, max) | restart to first read, s | "
        "restart to caught up, s (mean, max) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    total = len(INTERVALS) * KILLS[mode]
    with progress.progress("kill -9 and restart", total=total, unit="restarts") as bar:
        measured = [measure_interval(settings, i, KILLS[mode], bar) for i in INTERVALS]
    for interval, runs in zip(INTERVALS, measured, strict=True):
        replayed = [r["replayed"] for r in runs]
        caught = [r["caught_up_s"] for r in runs]
        first = statistics.mean(r["first_read_s"] for r in runs)
        rows.append(
            f"| -s {interval} | {statistics.mean(replayed):,.0f}, {max(replayed):,.0f} | "
            f"{first:.1f} | {statistics.mean(caught):.1f}, {max(caught):.1f} |"
        )
    return "\n".join(rows) + "\n"
