"""`KafkaRecordSink` / `DeliveryCheckedProducer` against a real broker: every record acknowledged,
keyed like Java producers, and a broker-side refusal raised instead of lost."""

from __future__ import annotations

import base64
import os
import time
from unittest import mock

import pytest
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import REGISTRY

from operators.connectors.kafka.config import client_config, producer_config
from operators.connectors.kafka.sink import (
    DeliveryCheckedProducer,
    KafkaDeliveryError,
    KafkaRecordSink,
)
from operators.runtime.records import OutRecord, to_out_record
from schemas import TicketMessage
from schemas.common import SCHEMA_VERSION
from tests.flows.kafka_runs import kafka_settings, read_topic, with_topics
from tests.support.bad_records import TICKET

pytestmark = pytest.mark.kafka


def java_murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (the Java producer's key hash), as a signed 32-bit int."""
    m, h = 0x5BD1E995, (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    whole = len(data) & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h = ((h ^ tail[0]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: str, partitions: int) -> int:
    return (java_murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def test_murmur2_matches_kafkas_own_test_vectors() -> None:
    vectors = {"21": -973932308, "foobar": -790332482, "abc": 479470107}
    vectors["a-little-bit-long-string"] = -985981536
    vectors["a-little-bit-longer-string"] = -1486304829
    assert {k: java_murmur2(k.encode()) for k in vectors} == vectors


def test_every_record_is_acknowledged_keyed_and_placed_like_java(kafka_bootstrap: str) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap), "tickets")
    topic = settings.topics.tickets_responses
    keys = [f"S-{i}" for i in range(200)]
    acknowledged: list[tuple[str, int]] = []
    producer = DeliveryCheckedProducer.from_settings(settings.kafka, flow="test")
    records = [OutRecord(topic=topic, key=k, value=b'{"n": 1}') for k in keys]
    sent = producer.send(records, lambda r, msg: acknowledged.append((r.key, msg.partition())))
    assert sent == 200 and len(acknowledged) == 200
    back = read_topic(settings, topic)
    assert sorted(r.key.decode() for r in back) == sorted(keys)
    for record in back:
        assert record.partition == java_partition(record.key.decode(), settings.topics.partitions)
    assert len({r.partition for r in back}) == settings.topics.partitions


def test_keys_reach_the_broker_as_utf8_and_no_key_as_none(kafka_bootstrap: str) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap), "tickets")
    topic = settings.topics.tickets_responses
    keys = ["S-1", "S-é-✓-日本", None]
    records = [OutRecord(topic=topic, key=k, value=str(i).encode()) for i, k in enumerate(keys)]
    assert DeliveryCheckedProducer.from_settings(settings.kafka, flow="test").send(records) == 3
    back = {r.value: r.key for r in read_topic(settings, topic)}
    assert back == {b"0": b"S-1", b"1": "S-é-✓-日本".encode(), b"2": None}


def test_headers_carry_content_type_and_schema_version(kafka_bootstrap: str) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap), "tickets")
    topic = settings.topics.tickets_messages
    model = TicketMessage.model_validate(TICKET)
    DeliveryCheckedProducer.from_settings(settings.kafka, flow="test").send(
        [to_out_record(topic, "S-1", model)]
    )
    (record,) = read_topic(settings, topic)
    assert record.headers["content-type"] == b"application/json"
    assert record.headers["schema-version"] == str(SCHEMA_VERSION).encode()
    assert record.headers["schema"] == b"TicketMessage"
    assert TicketMessage.model_validate_json(record.value) == model


def test_a_record_the_broker_refuses_raises(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap, kafka_delivery_timeout_seconds=10.0)
    topic = settings.topics.shipments_decisions
    admin = AdminClient(client_config(settings.kafka))
    small = NewTopic(topic, 1, 1, config={"max.message.bytes": "2048"})
    admin.create_topics([small])[topic].result(10)
    producer = DeliveryCheckedProducer.from_settings(settings.kafka, flow="test")
    fine = OutRecord(topic=topic, key="SHP-1", value=b"{}")
    noise = base64.b64encode(os.urandom(8000))  # lz4 cannot shrink it under 2 KiB
    too_big = OutRecord(topic=topic, key="SHP-2", value=b'"' + noise + b'"')
    assert producer.send([fine]) == 1
    with pytest.raises(KafkaDeliveryError) as caught:
        producer.send([too_big])
    assert [(t, k) for t, k, _ in caught.value.failures] == [(topic, "SHP-2")]
    assert [r.key for r in read_topic(settings, topic)] == [b"SHP-1"]
    assert "MSG_SIZE_TOO_LARGE" in str(caught.value) or "too large" in str(caught.value)


def test_an_unknown_topic_raises_within_the_delivery_bound(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap, kafka_delivery_timeout_seconds=3.0)
    producer = DeliveryCheckedProducer.from_settings(settings.kafka, flow="test")
    record = OutRecord(topic=settings.topics.tickets_dlq, key="S-1", value=b"{}")
    with pytest.raises(KafkaDeliveryError, match="not delivered"):
        producer.send([record])


def test_the_producer_is_idempotent_and_waits_for_all_replicas(kafka_bootstrap: str) -> None:
    config = producer_config(kafka_settings(kafka_bootstrap, kafka_config={"acks": "1"}).kafka)
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["partitioner"] == "murmur2_random"


def test_a_full_local_queue_drains_and_every_record_is_delivered(kafka_bootstrap: str) -> None:
    """A local queue of 5 messages fills many times over in a batch of 60: each record that
    finds it full waits for deliveries to drain and is sent, with its headers, exactly once."""
    settings = with_topics(kafka_settings(kafka_bootstrap), "tickets")
    topic = settings.topics.tickets_responses
    config = {**producer_config(settings.kafka), "queue.buffering.max.messages": 5}
    producer = DeliveryCheckedProducer(config, flow="test", timeout_seconds=30.0)
    model_record = to_out_record(topic, "S-0", _message())
    records = [OutRecord(topic, f"S-{i}", str(i).encode(), model_record.headers) for i in range(60)]
    with mock.patch.object(producer, "_drain", wraps=producer._drain) as drained:
        assert producer.send(records) == 60
    assert drained.call_count >= 10  # the queue was full at least that often
    back = read_topic(settings, topic)
    assert sorted(int(r.value) for r in back) == list(range(60))
    assert {r.key.decode() for r in back} == {f"S-{i}" for i in range(60)}
    assert all(r.headers["schema"] == b"TicketMessage" for r in back)


def _message() -> TicketMessage:
    return TicketMessage.model_validate(TICKET)


def delivered_count(topic: str) -> float:
    value = REGISTRY.get_sample_value(
        "surgeflow_kafka_delivered_total", {"flow": "test-failures-only", "topic": topic}
    )
    return value or 0.0


def test_a_producer_told_of_failures_only_still_checks_and_counts_every_record(
    kafka_bootstrap: str,
) -> None:
    """The flows' sink (`report_each=False`: no delivery report per acknowledged record) counts
    what it delivered by topic, raises for a record the broker refuses and for a topic that
    does not exist, and takes no per-record callback."""
    settings = kafka_settings(kafka_bootstrap, kafka_delivery_timeout_seconds=5.0)
    ok = settings.topics.shipments_decisions
    admin = AdminClient(client_config(settings.kafka))
    admin.create_topics([NewTopic(ok, 2, 1, config={"max.message.bytes": "2048"})])[ok].result(10)
    producer = DeliveryCheckedProducer.from_settings(
        settings.kafka, flow="test-failures-only", report_each=False
    )
    records = [OutRecord(ok, f"SHP-{i}", b"{}") for i in range(200)]
    assert producer.send(records) == 200
    assert producer.send(records[:50]) == 50
    assert delivered_count(ok) == 250
    assert len(read_topic(settings, ok)) == 250

    noise = base64.b64encode(os.urandom(8000))  # lz4 cannot shrink it under 2 KiB
    too_big = OutRecord(ok, "SHP-big", b'"' + noise + b'"')
    with pytest.raises(KafkaDeliveryError) as caught:
        producer.send([records[0], too_big, records[1]])
    assert [(t, k) for t, k, _ in caught.value.failures] == [(ok, "SHP-big")]
    assert delivered_count(ok) == 252  # the two others were delivered and counted

    missing = OutRecord(settings.topics.tickets_dlq, "S-1", b"{}")
    with pytest.raises(KafkaDeliveryError, match="not delivered"):
        producer.send([missing])
    assert delivered_count(settings.topics.tickets_dlq) == 0
    with pytest.raises(ValueError, match="failed deliveries only"):
        producer.send(records[:1], lambda record, msg: None)


def test_the_flows_sink_asks_for_failure_reports_only(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap)
    part = KafkaRecordSink(settings.kafka, flow="test").build("publish", 0, 1)
    assert part._producer._report_each is False
    part.close()


def test_a_failures_only_producer_places_and_stamps_records_as_the_client_s_defaults(
    kafka_bootstrap: str,
) -> None:
    """`produce` takes its arguments by position, the partition and timestamp given as their
    defaults: each record lands where the Java producer puts its key, stamped by the client
    when produced (CreateTime), with its headers."""
    settings = with_topics(kafka_settings(kafka_bootstrap), "tickets")
    topic = settings.topics.tickets_responses
    producer = DeliveryCheckedProducer.from_settings(settings.kafka, flow="test", report_each=False)
    headers = (("schema", b"TicketResponse"),)
    records = [OutRecord(topic, f"S-{i}", b"{}", headers) for i in range(40)]
    before = int(time.time() * 1000)
    assert producer.send(records) == 40
    after = int(time.time() * 1000)
    consumer = Consumer(
        {**client_config(settings.kafka), "group.id": f"stamps-{topic}",
         "enable.partition.eof": True},
    )  # fmt: skip
    partitions = range(settings.topics.partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    back, pending, deadline = [], set(partitions), time.monotonic() + 30
    try:
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.5):
                if msg.error() is not None:
                    pending.discard(msg.partition())
                else:
                    back.append(msg)
    finally:
        consumer.close()
    assert sorted(m.key().decode() for m in back) == sorted(r.key for r in records)
    for msg in back:
        assert msg.partition() == java_partition(msg.key().decode(), settings.topics.partitions)
        kind, stamp = msg.timestamp()
        assert kind == TIMESTAMP_CREATE_TIME and before - 1000 <= stamp <= after + 1000
        assert msg.headers() == [("schema", b"TicketResponse")]
