"""`KafkaRecordSource`: Kafka messages and consumer errors become `RawRecord`s, never exceptions."""

from __future__ import annotations

import time
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING
from confluent_kafka import KafkaError as ConfluentError
from prometheus_client import REGISTRY

from operators.connectors.kafka.config import client_config
from operators.connectors.kafka.source import (
    KafkaRecordSource,
    _RecordPartition,
    _top_offset,
    to_raw_record,
)
from operators.connectors.kafka.topics import TopicNotFound
from operators.runtime import metrics
from tests.flows.kafka_runs import kafka_settings


def message(key=b"SHP-1", value=b"{}", offset=41, partition=2) -> KafkaSourceMessage:
    return KafkaSourceMessage(
        key=key, value=value, topic="shipments.events", offset=offset, partition=partition
    )


def test_a_message_keeps_its_bytes_key_and_coordinates() -> None:
    raw = to_raw_record(message())
    assert (raw.value, raw.key, raw.topic, raw.partition, raw.offset) == (
        b"{}", "SHP-1", "shipments.events", 2, 41,
    )  # fmt: skip
    assert raw.error is None


def test_a_consumer_error_carries_its_reason_and_where_it_happened() -> None:
    err = ConfluentError(ConfluentError._MSG_TIMED_OUT, "fetch failed")
    raw = to_raw_record(KafkaError(err, message(value=None)))
    assert raw.error_type == "consumer_error" and "fetch failed" in raw.error
    assert (raw.value, raw.partition, raw.offset) == (b"", 2, 41)


def test_invalid_coordinates_are_left_out_not_negative() -> None:
    err = ConfluentError(ConfluentError._TRANSPORT, "broker down")
    raw = to_raw_record(KafkaError(err, message(offset=-1001, partition=-1)))
    assert (raw.partition, raw.offset) == (None, None)


@pytest.mark.parametrize(
    ("key", "error_type", "words"),
    [(b"\xff\xfe", "decode_error", "not valid UTF-8"), (b"K" * 257, "validation_error", "256")],
)
def test_bad_message_keys_are_marked_for_the_dead_letter_topic(key, error_type, words) -> None:
    raw = to_raw_record(message(key=key))
    assert raw.key is None and raw.error_type == error_type and words in raw.error


class _Batches(StatefulSourcePartition):
    """An inner partition that returns prepared batches (pure logic of the wrapper)."""

    def __init__(self, batches: list[list]) -> None:
        self._batches = batches

    def next_batch(self) -> list:
        return self._batches.pop(0)

    def snapshot(self) -> int:
        return -1000  # what Bytewax's own partition holds after an error event


def test_resume_position_is_after_the_last_record_not_after_an_error() -> None:
    err = KafkaError(ConfluentError(ConfluentError._TRANSPORT, "down"), message(offset=-1001))
    part = _RecordPartition(_Batches([[message(offset=7), message(offset=8)], [err]]), flow="test")
    part.next_batch()
    part.next_batch()
    assert part.snapshot() == 9


def test_an_error_of_no_record_is_counted_not_dead_lettered(caplog) -> None:
    down = KafkaError(ConfluentError(ConfluentError._TRANSPORT, "down"), message(offset=-1001))
    at_offset = KafkaError(ConfluentError(ConfluentError._BAD_MSG, "crc"), message(offset=12))
    labels = {"flow": "test", "topic": "shipments.events", "error": "_TRANSPORT"}
    before = REGISTRY.get_sample_value("surgeflow_kafka_consumer_errors_total", labels) or 0
    records = _RecordPartition(
        _Batches([[down, message(offset=11), at_offset]]), flow="test"
    ).next_batch()
    assert [(r.offset, r.error_type if r.error else None) for r in records] == [
        (11, None), (12, "consumer_error"),
    ]  # fmt: skip
    assert REGISTRY.get_sample_value("surgeflow_kafka_consumer_errors_total", labels) == before + 1
    assert "consumer retries" in caplog.text


@pytest.mark.kafka
def test_a_missing_topic_fails_clearly_at_start(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap, kafka_timeout_seconds=1.0)
    source = KafkaRecordSource(settings, [settings.topics.shipments_events], flow="shipments")
    with pytest.raises(TopicNotFound, match=r"operators\.connectors\.kafka\.topics"):
        source.list_parts()


@pytest.mark.kafka
def test_records_read_straight_from_the_consumer_match_bytewaxs_messages(
    kafka_bootstrap: str,
) -> None:
    """`_LagSafePartition.next_records` (no Bytewax message per record) gives what converting
    Bytewax's messages gives: the same records, keys checked, coordinates, end and resume."""
    from operators.connectors.kafka.source import _LagSafePartition
    from operators.connectors.kafka.topics import create_topics
    from tests.flows.kafka_runs import produce_raw

    settings = kafka_settings(kafka_bootstrap, kafka_tail=False)
    topic = settings.topics.shipments_events
    create_topics(settings, [topic], partitions=1)
    messages = [(b"SHP-1", b'{"a": 1}'), (None, b"x"), (b"\xff\xfe", b"{}"), (b"K" * 300, b"")]
    messages += [(b"K" * 256, b"{}"), (b"K" * 257, b"{}"), (("é" * 200).encode(), b"{}")]
    produce_raw(settings, topic, messages * 3)

    errors = metrics.Children(metrics.KAFKA_CONSUMER_ERRORS, "test")

    def read(fast: bool) -> tuple[list[Any], Any]:
        config = {**client_config(settings.kafka), "group.id": "BYTEWAX_IGNORED"}
        config |= {"enable.auto.commit": "false", "enable.partition.eof": "true"}
        part = _LagSafePartition("read", config, topic, 0, OFFSET_BEGINNING, None, 5, False)
        out: list[Any] = []
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                if fast:
                    records, top = part.next_records(errors)
                    assert top == _top_offset(records)
                    out.extend(records)
                else:
                    out.extend(to_raw_record(m) for m in part.next_batch())
        except StopIteration:
            pass
        finally:
            part.close()
        return out, part.snapshot()

    fast, slow = read(True), read(False)
    assert fast == slow
    assert [list(vars(r).items()) for r in fast[0]] == [list(vars(r).items()) for r in slow[0]]
    assert len(fast[0]) == 21 and fast[1] == 21
    assert [r.error_type for r in fast[0][:7] if r.error] == [
        "decode_error", "validation_error", "validation_error",
    ]  # fmt: skip
    assert [r.key for r in fast[0][4:7]] == ["K" * 256, None, "é" * 200]
