"""Helpers for flows over a real Kafka broker: fresh topics, loading input, reading topics back."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Optional

from bytewax.dataflow import Dataflow
from bytewax.testing import run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from operators.config.settings import Settings
from operators.connectors.kafka.config import client_config
from operators.connectors.kafka.topics import create_topics, flow_topics
from operators.surge.engine import Generated
from tests.flows.flow_runs import embedded_settings


@dataclass(frozen=True)
class Consumed:
    """One record read back from a topic."""

    topic: str
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: dict[str, bytes]

    def json(self) -> Any:
        return json.loads(self.value) if self.value else None


def kafka_settings(bootstrap: str, **overrides: Any) -> Settings:
    """Settings on a real broker with topics of their own (a unique prefix), stopping at the end
    of the input; everything else on embedded defaults."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topics = {
        name: f"{prefix}.{default}"
        for name, default in [
            ("topic_shipments_events", "shipments.events"),
            ("topic_shipments_decisions", "shipments.decisions"),
            ("topic_shipments_dlq", "shipments.dlq"),
            ("topic_tickets_messages", "tickets.messages"),
            ("topic_tickets_responses", "tickets.responses"),
            ("topic_tickets_dlq", "tickets.dlq"),
        ]
    }
    values = {
        "kafka_bootstrap_servers": bootstrap,
        "kafka_tail": False,
        "kafka_delivery_timeout_seconds": 20.0,
        **topics,
        **overrides,
    }
    return embedded_settings(**values)


def with_topics(settings: Settings, flow: str) -> Settings:
    """`settings`, after creating its flow's topics."""
    create_topics(settings, flow_topics(settings, flow))  # type: ignore[arg-type]
    return settings


def produce_raw(
    settings: Settings, topic: str, messages: Iterable[tuple[Optional[bytes], Optional[bytes]]]
) -> list[tuple[int, int]]:
    """Produce `(key, value)` pairs as they are (any bytes, tombstones); return (partition,
    offset) of each, in order. Keys are placed like the flows' producer places them."""
    producer = Producer({**client_config(settings.kafka), "partitioner": "murmur2_random"})
    placed: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def report(index: int):
        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err.str())
            else:
                placed[index] = (msg.partition(), msg.offset())

        return delivered

    count = 0
    for index, (key, value) in enumerate(messages):
        producer.produce(topic, value, key, on_delivery=report(index))
        producer.poll(0)
        count += 1
    assert producer.flush(30) == 0 and not errors, errors
    return [placed[i] for i in range(count)]


def read_topic(settings: Settings, topic: str, timeout: float = 30.0) -> list[Consumed]:
    """Every record of `topic`, from the beginning to the end of each partition."""
    admin = AdminClient(client_config(settings.kafka))
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    consumer = Consumer(
        {
            **client_config(settings.kafka),
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,  # the broker answers at once at the end of a partition
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    pending, out = set(partitions), []
    deadline = time.monotonic() + timeout
    try:
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                    pending.discard(msg.partition())
                    continue
                out.append(_consumed(msg))
    finally:
        consumer.close()
    assert not pending, f"partitions {pending} of {topic} not read to the end in {timeout} s"
    return out


def _consumed(msg: Any) -> Consumed:
    return Consumed(
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        key=msg.key(),
        value=msg.value(),
        headers=dict(msg.headers() or []),
    )


@dataclass
class KafkaRun:
    """One flow run over Kafka: where each input landed, and the output topics read back."""

    settings: Settings
    placed: list[tuple[int, int]]
    outputs: list[Consumed]
    dead_letters: list[Consumed]

    def dead_at(self) -> dict[tuple[int, int], list[dict]]:
        """Dead letters by the (partition, offset) of the input they stand for."""
        found: dict[tuple[int, int], list[dict]] = {}
        for record in self.dead_letters:
            letter = record.json()
            where = (letter["source"]["partition"], letter["source"]["offset"])
            found.setdefault(where, []).append(letter)
        return found


def run_over_kafka(
    build: Callable[[Settings], Dataflow],
    settings: Settings,
    *,
    topics: tuple[str, str, str],
    messages: Iterable[tuple[Optional[bytes], Optional[bytes]]],
) -> KafkaRun:
    """Produce `messages` to the input topic, run the flow to the end of it, read the outputs.

    `topics` is (input, output, dead letters); the flow reads and writes Kafka because the
    settings name a broker.
    """
    source, output, dlq = topics
    placed = produce_raw(settings, source, messages)
    run_main(build(settings))
    return KafkaRun(settings, placed, read_topic(settings, output), read_topic(settings, dlq))


def keyed(generated: Iterable[Generated]) -> list[tuple[Optional[bytes], Optional[bytes]]]:
    """Surge records as Kafka messages: the flow key (when the record has one) and the bytes."""
    return [
        (None if g.record.key is None else g.record.key.encode(), g.record.value) for g in generated
    ]


def io_topics(settings: Settings, flow: str) -> tuple[str, str, str]:
    """(input, output, dead letters) of `flow`."""
    source, output, dlq = flow_topics(settings, flow)  # type: ignore[arg-type]
    return source, output, dlq


def input_partitions(generated: list[Generated], placed: list[tuple[int, int]]) -> dict[str, int]:
    """The one partition each flow key's input went to (fails if a key was spread)."""
    found: dict[str, set[int]] = {}
    for g, (partition, _) in zip(generated, placed, strict=True):
        if g.record.key is not None:
            found.setdefault(g.record.key, set()).add(partition)
    assert all(len(p) == 1 for p in found.values()), "a key's input spans partitions"
    return {key: next(iter(p)) for key, p in found.items()}


BadEntry = tuple[Optional[bytes], Optional[bytes], str, str]


def run_with_bad_input(
    build: Callable[[Settings], Dataflow],
    settings: Settings,
    *,
    flow: str,
    generated: list[Generated],
    bad: dict[str, BadEntry],
) -> KafkaRun:
    """Run the flow on half the surge, then every `bad` (key, value, error_type, words) message,
    then the rest; each bad message must have exactly one dead letter of its type and words."""
    half = len(generated) // 2
    messages = keyed(generated[:half]) + [(k, v) for k, v, _, _ in bad.values()]
    messages += keyed(generated[half:])
    run = run_over_kafka(build, settings, topics=io_topics(settings, flow), messages=messages)
    dead_at = run.dead_at()
    for (name, (_, _, kind, words)), where in zip(bad.items(), run.placed[half:], strict=False):
        (letter,) = dead_at[where]
        assert letter["error_type"] == kind, (name, letter["error"])
        assert words in letter["error"], (name, letter["error"])
    return run
