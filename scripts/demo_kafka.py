"""Run both flows through real Kafka and Redis, the production way, and print what came out.

Uses `KAFKA_BOOTSTRAP_SERVERS` / `REDIS_URL` when set; otherwise starts a single-node broker
(`scripts/kafka_broker.py`) and a `redis-server` (`scripts/redis_server.py`) and stops them at
the end, also on error. Every run gets topics of its own (`demo-<hex>.shipments.events`, ...,
set through the SURGEFLOW_TOPIC_* variables) so reruns on a shared broker do not mix. For each
flow the seeded surge is produced to the input topic, `python -m bytewax.run flows.<name> -w 2`
runs with `SURGEFLOW_KAFKA_TAIL=false` (it stops at the end of the topic), and the output and
dead-letter topics are read back and summarised. Any other setting (SURGEFLOW_SURGE_*,
OPENAI_BASE_URL, ...) is passed through.

On a terminal, bars count the records produced, each flow's records out (outputs and dead
letters, from the topics' end offsets) and the records read back (`--no-progress` or
`SURGEFLOW_NO_PROGRESS=1` turns them off; piped or redirected there are none, and the plain lines
are the same).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from operators.config.settings import Settings  # noqa: E402
from operators.connectors.kafka.config import client_config  # noqa: E402
from operators.connectors.kafka.load import (  # noqa: E402
    load_with_progress,
    surge_records,
    surge_size,
)
from operators.connectors.kafka.topics import create_topics, flow_topics  # noqa: E402
from operators.llm.redis_cache import redacted_url  # noqa: E402
from operators.runtime import progress  # noqa: E402
from scripts.demo import print_records  # noqa: E402
from scripts.kafka_broker import KafkaBroker  # noqa: E402
from scripts.redis_server import RedisServer  # noqa: E402

WORKERS = 2
FLOW_TIMEOUT_SECONDS = 1800
READ_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Flow:
    """One flow: its settings' topic fields, its key, output id and the field counted."""

    name: str
    topics: tuple[str, str, str]  # flat settings names: input, output, dead letters
    key: str
    id: str
    field: str
    stamp: str  # when the output was made: the only field a repeated answer may differ in

    def topic(self, settings: Settings, which: int) -> str:
        return settings.flat()[self.topics[which]]


FLOWS = [
    Flow(
        "shipments",
        ("topic_shipments_events", "topic_shipments_decisions", "topic_shipments_dlq"),
        key="shipment_id",
        id="decision_id",
        field="action",
        stamp="decided_at",
    ),
    Flow(
        "tickets",
        ("topic_tickets_messages", "topic_tickets_responses", "topic_tickets_dlq"),
        key="session_id",
        id="response_id",
        field="route",
        stamp="responded_at",
    ),
]


def start_services(stack: contextlib.ExitStack) -> bool:
    """Point the environment at Kafka and Redis, starting either one that is not given;
    return whether anything was started."""
    given = Settings()
    if given.kafka.bootstrap_servers:
        print(f"Kafka: KAFKA_BOOTSTRAP_SERVERS={given.kafka.bootstrap_servers}")
    else:
        broker = stack.enter_context(KafkaBroker())
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        print(
            f"Kafka: broker {broker.bootstrap_servers} started here (storage formatted in "
            f"{broker.format_seconds:.1f} s, ready {broker.started_in:.1f} s after launch)"
        )
    if given.redis.url:
        print(f"Redis: REDIS_URL={redacted_url(given.redis.url.get_secret_value())}")
    else:
        server = stack.enter_context(RedisServer())
        os.environ["REDIS_URL"] = server.url
        print(f"Redis: redis-server {server.url} started here")
    return not (given.kafka.bootstrap_servers and given.redis.url)


def fresh_topics() -> Settings:
    """Give this run topics of its own (a unique prefix) and create them."""
    base = Settings()
    prefix = f"demo-{uuid.uuid4().hex[:8]}"
    for flow in FLOWS:
        for field in flow.topics:
            os.environ[f"SURGEFLOW_{field.upper()}"] = f"{prefix}.{base.flat()[field]}"
    os.environ["SURGEFLOW_KAFKA_TAIL"] = "false"
    settings = Settings()
    states = create_topics(settings, flow_topics(settings))
    partitions = sorted({s.partitions for s in states})
    print(f"topics: {prefix}.* ({len(states)} topics, {'/'.join(map(str, partitions))} partitions)")
    return settings


def load(settings: Settings, flow: Flow, *, no_progress: bool = False) -> int:
    """Produce the seeded surge onto the flow's input topic; return how many records."""
    topic = flow.topic(settings, 0)
    started = time.perf_counter()
    records, total = surge_records(settings, flow.name), surge_size(settings, flow.name)
    sent = load_with_progress(
        settings, topic, records, flow=flow.name, total=total, off=no_progress
    )
    print(f"  loaded {sent} records onto {topic} in {time.perf_counter() - started:.1f} s")
    return sent


class EndOffsets:
    """The records on some topics so far: the sum of their partitions' end offsets (the topics
    are new, so they start at 0). The consumer that asks is made at the first call."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self._settings = settings
        self._topics = topics
        self._consumer: Consumer | None = None

    def __call__(self) -> int:
        if self._consumer is None:
            self._consumer = Consumer(
                {**client_config(self._settings.kafka), "group.id": f"demo-{uuid.uuid4().hex}"}
            )
        metadata = self._consumer.list_topics(timeout=5).topics
        return sum(
            self._consumer.get_watermark_offsets(TopicPartition(t, p), timeout=5)[1]
            for t in self._topics
            for p in metadata[t].partitions
        )

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


def run_flow(flow: Flow, settings: Settings, *, no_progress: bool = False) -> float:
    """Run the flow as a user would, to the end of its input topic; return the wall time."""
    cmd = [sys.executable, "-m", "bytewax.run", f"flows.{flow.name}", "-w", str(WORKERS)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = EndOffsets(settings, [flow.topic(settings, 1), flow.topic(settings, 2)])
    started = time.perf_counter()
    try:
        with progress.progress(f"flows.{flow.name}", unit="records out", off=no_progress) as bar:
            code = progress.run_counting(
                cmd, bar, out, cwd=ROOT, env=env, timeout=FLOW_TIMEOUT_SECONDS, every=0.5
            )
    except subprocess.TimeoutExpired:
        sys.exit(f"flows.{flow.name} did not finish within {FLOW_TIMEOUT_SECONDS} s")
    finally:
        out.close()
    if code != 0:
        sys.exit(f"flows.{flow.name} failed: exit code {code} (its log is above)")
    return time.perf_counter() - started


def read_topics(settings: Settings, topics: list[str], *, no_progress: bool = False) -> list[dict]:
    """Every record of `topics` to the end of each partition, as `{"topic", "key", "value"}`."""
    metadata = AdminClient(client_config(settings.kafka)).list_topics(timeout=10).topics
    pending = {(t, p) for t in topics for p in metadata[t].partitions}
    consumer = Consumer(
        {
            **client_config(settings.kafka),
            "group.id": f"surgeflow-demo-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,  # an empty partition reports its end at once
        }
    )
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in pending])
    lines: list[dict] = []
    deadline = time.monotonic() + READ_TIMEOUT_SECONDS
    try:
        with progress.progress("reading back", off=no_progress) as bar:
            if bar.drawn:
                ends = [consumer.get_watermark_offsets(TopicPartition(t, p)) for t, p in pending]
                bar.total(sum(high - low for low, high in ends))
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(1000, 0.1):
                    if msg.error() is None:
                        lines.append(_line(msg))
                    elif msg.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard((msg.topic(), msg.partition()))
                    else:
                        sys.exit(f"reading {msg.topic()} failed: {msg.error().str()}")
                bar.completed(len(lines))
    finally:
        consumer.close()
    if pending:
        sys.exit(f"partitions {sorted(pending)} not read to the end in {READ_TIMEOUT_SECONDS} s")
    return lines


def _line(msg: Any) -> dict:
    key = msg.key().decode() if msg.key() is not None else None
    return {"topic": msg.topic(), "key": key, "value": json.loads(msg.value())}


def ids_line(flow: Flow, outputs: list[dict]) -> str:
    """Whether every output id is unique; if not, whether repeats are the same answer again."""
    by_id: dict[str, list[dict]] = defaultdict(list)
    for value in outputs:
        by_id[value[flow.id]].append(value)
    if len(by_id) == len(outputs):
        return f"  ids unique: yes ({len(by_id)} distinct {flow.id})"
    repeats = [group for group in by_id.values() if len(group) > 1]
    unstamped = [[{**v, flow.stamp: None} for v in group] for group in repeats]
    same = all(v == group[0] for group in unstamped for v in group)
    why = (
        f"each the same answer again apart from {flow.stamp}: an input sent twice"
        if same
        else "and repeats DIFFER in content"
    )
    return (
        f"  ids unique: no ({len(by_id)} distinct {flow.id} for {len(outputs)} outputs; "
        f"{len(outputs) - len(by_id)} repeats, {why})"
    )


def summarise(
    flow: Flow, settings: Settings, records_in: int, elapsed: float, *, no_progress: bool = False
) -> None:
    """Read the flow's output and dead-letter topics back and print what came out."""
    output, dlq = flow.topic(settings, 1), flow.topic(settings, 2)
    reading = time.perf_counter()
    lines = read_topics(settings, [output, dlq], no_progress=no_progress)
    read_in = time.perf_counter() - reading
    outputs = [line for line in lines if line["topic"] == output]
    dead = len(lines) - len(outputs)
    print(
        f"  flow: {records_in} records in -> {len(outputs)} outputs + {dead} dead letters "
        f"in {elapsed:.1f} s ({records_in / elapsed:.0f} records/s, {WORKERS} workers)"
    )
    print(f"  read back {len(lines)} records from {output} and {dlq} in {read_in:.1f} s")
    print_records(lines, output, flow.field)
    print(ids_line(flow, [line["value"] for line in outputs]))
    keyed = sum(line["key"] == line["value"][flow.key] for line in outputs)
    verdict = "yes" if keyed == len(outputs) else "NO"
    print(f"  Kafka key = {flow.key}: {verdict} ({keyed} of {len(outputs)} outputs)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    progress.add_flag(parser)
    quiet = parser.parse_args(argv).no_progress
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        started_here = start_services(stack)
        settings = fresh_topics()
        for flow in FLOWS:
            print(f"\n== flows.{flow.name} over Kafka")
            records_in = load(settings, flow, no_progress=quiet)
            elapsed = run_flow(flow, settings, no_progress=quiet)
            summarise(flow, settings, records_in, elapsed, no_progress=quiet)
        stopping = time.perf_counter()
    if started_here:
        print(f"\nservices started here stopped in {time.perf_counter() - stopping:.1f} s")
    print(f"\ndemo-kafka finished in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
