"""Helpers for flows run the production way, as `python -m bytewax.run` subprocesses on a real
broker: settings turned into environment variables, single processes and clusters started and
killed, a producer that keeps adding input during a run, a reader that follows the output topics,
and the checks that every input is accounted for once outputs are deduplicated by id."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from bytewax.recovery import init_db_dir
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from operators.config.settings import Settings, flat_names
from operators.connectors.kafka.config import client_config
from operators.connectors.kafka.topics import create_topics
from tests.flows.kafka_runs import Consumed

ROOT = Path(__file__).resolve().parents[2]
SERVICE_VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")

Message = tuple[Optional[bytes], Optional[bytes]]


# --- settings as environment -----------------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """The variables that give a subprocess these settings: every field not at its default."""
    env = {}
    for group_name, name in flat_names().values():
        group = getattr(settings, group_name)
        value = getattr(group, name)
        info = type(group).model_fields[name]
        if value is None or value == info.get_default(call_default_factory=True):
            continue
        env[type(group).variables()[name][0]] = _env_value(value)
    return env


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def flow_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment without any Surgeflow, Bytewax or service variable, plus the
    settings' variables and `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SURGEFLOW_", "BYTEWAX_")) and k not in SERVICE_VARIABLES
    }
    return {**env, **settings_env(settings), "PYTHONPATH": str(ROOT), **extra}


def with_outputs(settings: Settings, flow: str) -> Settings:
    """`settings` with output and dead-letter topics of their own (created), same input."""
    fields = {
        "shipments": ("topic_shipments_decisions", "topic_shipments_dlq"),
        "tickets": ("topic_tickets_responses", "topic_tickets_dlq"),
    }[flow]
    suffix = uuid.uuid4().hex[:6]
    fresh = settings.replaced(**{f: f"{settings.flat()[f]}.{suffix}" for f in fields})
    create_topics(fresh, [fresh.flat()[f] for f in fields])
    return fresh


# --- processes -----------------------------------------------------------------------------------


@dataclass
class FlowProcess:
    """One `python -m bytewax.run` process; stdout and stderr go to `log`."""

    args: list[str]
    proc: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.monotonic)

    def kill(self) -> None:
        """SIGKILL, as a crash: no snapshot, no flush, nothing the process can do."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        """Wait for the process to end by itself; fail with its log if it does not in time."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self} did not end in {timeout} s:\n{self.log_tail()}") from None

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def __str__(self) -> str:
        return " ".join(self.args[1:])


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def init_recovery(directory: Path, partitions: int) -> Path:
    """A fresh recovery store, as `python -m bytewax.recovery DIR N` creates it."""
    directory.mkdir(parents=True)
    init_db_dir(directory, partitions)
    return directory


def start_flow(
    flow: str,
    env: dict[str, str],
    logs: Path,
    *,
    processes: int = 1,
    workers: int = 1,
    recovery: Optional[Path] = None,
    snapshot_seconds: int = 1,
) -> list[FlowProcess]:
    """Start `flows.<flow>` as one process, or as a cluster of `processes` on loopback ports."""
    command = [sys.executable, "-m", "bytewax.run", f"flows.{flow}", "-w", str(workers)]
    if recovery is not None:
        command += ["-r", str(recovery), "-s", str(snapshot_seconds), "-b", "0"]
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(processes))
    logs.mkdir(parents=True, exist_ok=True)
    started = []
    for index in range(processes):
        args = command + (["-i", str(index), "-a", addresses] if processes > 1 else [])
        log = logs / f"{flow}-{uuid.uuid4().hex[:6]}-p{index}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        started.append(FlowProcess(args, proc, log))
    return started


def kill_all(processes: Iterable[FlowProcess]) -> None:
    for process in processes:
        process.kill()


def wait_all(processes: Sequence[FlowProcess], timeout: float) -> None:
    """Wait for every process to end by itself, each with exit code 0."""
    deadline = time.monotonic() + timeout
    for process in processes:
        code = process.wait(max(deadline - time.monotonic(), 1.0))
        assert code == 0, f"{process} exited with {code}:\n{process.log_tail()}"


# --- input and output ----------------------------------------------------------------------------


class LiveProducer(threading.Thread):
    """Produces `messages` to `topic` at `rate` per second in the background, keyed the way the
    flows' producer keys (murmur2), and records the partition and offset of each.

    The last `held` messages wait for `release()` (at most `HOLD_SECONDS`), so a test can be
    sure input still arrives after a moment it picks, however slowly the flow started."""

    HOLD_SECONDS = 300.0

    def __init__(
        self,
        settings: Settings,
        topic: str,
        messages: Sequence[Message],
        rate: float,
        *,
        held: int = 0,
    ) -> None:
        super().__init__(name="live-producer", daemon=True)
        self._producer = Producer(
            {**client_config(settings.kafka), "partitioner": "murmur2_random"}
        )
        self._topic, self._messages, self._rate = topic, list(messages), rate
        self._placed: dict[int, tuple[int, int]] = {}
        self._errors: list[str] = []
        self._held_from = len(self._messages) - held
        self._released = threading.Event()

    def release(self) -> None:
        """Let the held messages go (at `rate`, from now)."""
        self._released.set()

    def run(self) -> None:
        started = time.monotonic()
        for index, (key, value) in enumerate(self._messages):
            if index == self._held_from:
                self._producer.flush(30)
                self._released.wait(self.HOLD_SECONDS)
                started = time.monotonic() - index / self._rate
            delay = started + index / self._rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._producer.produce(self._topic, value, key, on_delivery=self._report(index))
            self._producer.poll(0)
        self._producer.flush(30)

    def _report(self, index: int) -> Callable[[Any, Any], None]:
        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                self._errors.append(err.str())
            else:
                self._placed[index] = (msg.partition(), msg.offset())

        return delivered

    @property
    def sent(self) -> int:
        return len(self._placed)

    def finish(self, timeout: float = 60.0) -> list[tuple[int, int]]:
        """Wait until everything is delivered; (partition, offset) of each message, in order."""
        self.join(timeout)
        assert not self.is_alive(), "the producer did not finish"
        assert not self._errors and len(self._placed) == len(self._messages), self._errors
        return [self._placed[i] for i in range(len(self._messages))]


class TopicFollower:
    """Reads topics from the beginning and keeps reading what is added (its own consumer)."""

    def __init__(self, settings: Settings, topics: Sequence[str]) -> None:
        metadata = AdminClient(client_config(settings.kafka)).list_topics(timeout=10).topics
        self._consumer = Consumer(
            {
                **client_config(settings.kafka),
                "group.id": f"follower-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
            }
        )
        self._assigned = [
            TopicPartition(topic, partition, OFFSET_BEGINNING)
            for topic in topics
            for partition in metadata[topic].partitions
        ]
        self._consumer.assign(self._assigned)
        self.records: list[Consumed] = []

    def poll(self, seconds: float = 0.2) -> list[Consumed]:
        """Read what arrives within `seconds`; return every record read so far."""
        for msg in self._consumer.consume(1000, seconds):
            if msg.error() is None:
                self.records.append(_record(msg))
            elif msg.error().code() != KafkaError._PARTITION_EOF:
                raise AssertionError(f"reading {msg.topic()} failed: {msg.error().str()}")
        return self.records

    def read_to_end(self, timeout: float = 30.0) -> list[Consumed]:
        """Read until every partition's end as the broker has it now; return every record."""
        deadline = time.monotonic() + timeout
        ends = {
            tp: self._consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in self._assigned
        }
        while any(self._next_offset(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, f"topics not read to the end in {timeout} s"
            self.poll()
        return self.records

    def _next_offset(self, tp: TopicPartition) -> int:
        (position,) = self._consumer.position([tp])
        return max(position.offset, 0)

    def wait_for(
        self,
        ready: Callable[[list[Consumed]], bool],
        *,
        timeout: float,
        running: Sequence[FlowProcess] = (),
        what: str = "the outputs",
    ) -> list[Consumed]:
        """Read until `ready(records)`; fail if a `running` process ends or time runs out."""
        deadline = time.monotonic() + timeout
        while not ready(self.poll()):
            for process in running:
                assert process.running, f"{process} ended early:\n{process.log_tail()}"
            assert time.monotonic() < deadline, f"{what} did not show up in {timeout} s"
        return self.records

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _record(msg: Any) -> Consumed:
    headers = dict(msg.headers() or [])
    return Consumed(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), headers)


def wait_until(ready: Callable[[], bool], *, timeout: float, poll: float = 0.05) -> bool:
    """Poll `ready()` until it holds or `timeout` passes; whether it held."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True
