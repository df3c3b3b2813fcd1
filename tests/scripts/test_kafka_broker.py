"""The Maven Central Kafka broker of `scripts/kafka_broker.py`: config, and a real round trip.

The round trip needs Java 17+ and Maven (or jars already in `.cache/kafka`); it is not skipped
without them, so a machine that cannot run the broker fails here, clearly, first.
"""

from __future__ import annotations

import base64
import os
import string
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from scripts.kafka_broker import BrokerError, KafkaBroker, broker_properties, new_cluster_id

URLSAFE = set(string.ascii_letters + string.digits + "-_")


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {key: value for key, value in pairs}


def test_cluster_id_is_16_random_bytes_in_urlsafe_base64() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cid in ids:
        assert len(cid) == 22 and set(cid) <= URLSAFE and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_broker_properties_describe_a_combined_loopback_node(tmp_path) -> None:
    props = parse_properties(broker_properties(19092, 19093, tmp_path / "data"))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["auto.create.topics.enable"] == "false"
    single_replica = [key for key in props if key.endswith((".replication.factor", ".min.isr"))]
    assert len(single_replica) == 5 and {props[key] for key in single_replica} == {"1"}


def consume(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    messages, deadline = [], time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                messages.append(msg)
    finally:
        consumer.close()
    return messages


def round_trip(bootstrap: str) -> None:
    topic = "broker-round-trip"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 2

    producer = Producer({"bootstrap.servers": bootstrap})
    sent = {f"key-{n % 4}".encode(): [] for n in range(4)}
    for n in range(10):
        key = f"key-{n % 4}".encode()
        sent[key].append(f"value-{n}".encode())
        producer.produce(topic, key=key, value=f"value-{n}".encode())
    assert producer.flush(30) == 0

    messages = consume(bootstrap, topic, 10)
    assert len(messages) == 10
    assert {msg.partition() for msg in messages} <= {0, 1}
    received = {key: [m.value() for m in messages if m.key() == key] for key in sent}
    assert received == sent  # every message back, in order per key


@pytest.mark.kafka
def test_real_broker_creates_topics_and_round_trips_keyed_messages() -> None:
    broker = KafkaBroker()
    with broker:
        pid, tmp_dir = broker.pid, broker.tmp_dir
        assert broker.bootstrap_servers.startswith("127.0.0.1:")
        assert broker.started_in > 0 and broker.format_seconds > 0
        assert tmp_dir is not None and tmp_dir.is_dir()
        round_trip(broker.bootstrap_servers)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not tmp_dir.exists()
    broker.stop()  # idempotent


@pytest.mark.kafka
def test_a_broker_that_cannot_start_raises_with_its_log_and_cleans_up(tmp_path) -> None:
    broker = KafkaBroker(log_dir=tmp_path, heap="1m")  # below -Xms256m: the JVM refuses to start
    with pytest.raises(BrokerError, match="java exited") as failure:
        broker.start(timeout=60)
    assert "heap size" in str(failure.value)  # the log tail is in the message
    assert broker.tmp_dir is None and not broker.running()
    assert list(tmp_path.glob("kafka-*.log"))  # log_dir keeps the log
