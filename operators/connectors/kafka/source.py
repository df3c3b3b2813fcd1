"""Kafka input: Bytewax's `KafkaSource` with its messages turned into `RawRecord`s.

Every Kafka partition is a Bytewax input partition; its read position is the resume state, kept in
Bytewax recovery snapshots (there is no consumer group, so nothing is committed to Kafka). Errors
are not raised: a consumer error at an offset, a key that is not UTF-8 or too long becomes a
`RawRecord` with `error` set, which `validate` turns into a dead letter with the topic, partition
and offset. A consumer error that belongs to no record (the broker is down or refuses the
connection) reaches librdkafka's error callback, not the messages: it is counted in
`surgeflow_kafka_consumer_errors_total{topic,error}` and logged at most once per kind every 10 s
while the consumer reconnects by itself; librdkafka's own log lines go through Python logging the
same way (`operators.connectors.kafka.config.CLIENT_LOG`). The lag gauge
(`bytewax_kafka_consumer_lag`) is
set only when both the partition's end and the read position are known, and never below 0.
Partition listing is bounded by `SURGEFLOW_KAFKA_TIMEOUT_SECONDS` and fails clearly when a topic
does not exist. After each batch a partition tells the process's `LiveClock` whether it is more
than `SURGEFLOW_CATCH_UP_LAG_RECORDS` behind its end (the consumer's cached high watermark), so
windows close on event time only while the input catches up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Optional, Union

from bytewax.connectors.kafka import (
    BYTEWAX_CONSUMER_LAG_GAUGE,
    KafkaError,
    KafkaSourceMessage,
    _KafkaSourcePartition,
)
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition
from confluent_kafka import KafkaError as ConfluentKafkaError
from confluent_kafka.admin import AdminClient
from prometheus_client import Counter

from operators.config.settings import Settings
from operators.connectors.kafka.config import client_config
from operators.connectors.kafka.topics import partitions_of
from operators.runtime import metrics
from operators.runtime.clock import LiveClock, live_clock
from operators.runtime.logs import RateLimitedLog
from operators.runtime.records import RawRecord
from schemas.dead_letter import ErrorType

log = logging.getLogger(__name__)

_ERRORS_LOG = RateLimitedLog(log, interval=10.0, kind=lambda level, msg, args: args[:2])
"""Broker-level consumer errors: one line per topic and error code every 10 s."""

MAX_KEY_CHARS = 256
"""Longest message key accepted (the flow keys are far shorter)."""

Message = Union[KafkaSourceMessage[Optional[bytes], Optional[bytes]], KafkaError[Any, Any]]


def to_raw_record(item: Message) -> RawRecord:
    """A Kafka message, or a consumer error with its message, as a `RawRecord`."""
    msg = item.msg if isinstance(item, KafkaError) else item
    failed = f"Kafka consumer error: {item.err.str()}" if isinstance(item, KafkaError) else None
    return _raw_record(msg.value, msg.key, msg.topic, msg.partition, msg.offset, failed)


def _raw_record(
    value: Optional[bytes],
    raw_key: Optional[bytes],
    topic: Optional[str],
    partition: Optional[int],
    offset: Optional[int],
    consumer_error: Optional[str] = None,
) -> RawRecord:
    """The `RawRecord` of one message's fields (`consumer_error`: the consumer's error)."""
    key, key_error = _decode_key(raw_key)
    error: Optional[str] = key_error
    error_type: ErrorType = _NO_ERROR
    if key_error is not None and "UTF-8" in key_error:
        error_type = "decode_error"
    if consumer_error is not None:
        error, error_type = consumer_error, "consumer_error"
    return RawRecord(
        value=value or b"",
        key=key,
        topic=topic or "unknown",
        partition=_non_negative(partition),
        offset=_non_negative(offset),
        error=error,
        error_type=error_type,
    )


_NO_ERROR: ErrorType = "validation_error"
"""The error type `_raw_record` gives a record without an error (unused while `error` is None)."""


def _decode_key(raw: Optional[bytes]) -> tuple[Optional[str], Optional[str]]:
    if raw is None:
        return None, None
    try:
        key = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"message key is not valid UTF-8: {exc.reason} at byte {exc.start}"
    if len(key) > MAX_KEY_CHARS:
        return None, f"message key is {len(key)} characters, over the {MAX_KEY_CHARS} limit"
    return key, None


def _non_negative(value: Optional[int]) -> Optional[int]:
    return value if value is not None and value >= 0 else None


def _has_record(item: Message, errors: metrics.Children[Counter]) -> bool:
    """False for a consumer error that belongs to no record (broker down, transport failure).

    Such errors are logged and counted, not dead-lettered: there is no record to send, and the
    consumer retries by itself. An error at a real offset is a record that could not be read.
    """
    if not isinstance(item, KafkaError) or _non_negative(item.msg.offset) is not None:
        return True
    code = item.err.name() if hasattr(item.err, "name") else "unknown"
    errors(item.msg.topic or "unknown", code).inc()
    log.warning("Kafka consumer error (the consumer retries): %s", item.err.str())
    return False


class _CatchUp:
    """Reports one partition to a `LiveClock` as behind while its lag is over `threshold`."""

    def __init__(self, clock: LiveClock, for_part: str, inner: Any, threshold: int) -> None:
        index, _, topic = for_part.partition("-")
        self._clock, self._part, self._threshold = clock, for_part, threshold
        self._tp = TopicPartition(topic, int(index))
        self._consumer = getattr(inner, "_consumer", None)  # Bytewax's partition's consumer

    def report(self, next_offset: Optional[int]) -> None:
        behind = False
        if self._threshold > 0 and next_offset is not None and self._consumer is not None:
            try:  # the high watermark of the last fetch: no broker round trip
                _, high = self._consumer.get_watermark_offsets(self._tp, cached=True)
            except KafkaException:
                high = -1
            behind = high >= 0 and high - next_offset > self._threshold
        self._clock.report(self._part, behind)

    def close(self) -> None:
        self._clock.report(self._part, False)


class _RecordPartition(StatefulSourcePartition[RawRecord, Optional[int]]):
    """One Kafka partition of `flow`'s input; resumes after the last record it emitted."""

    def __init__(
        self,
        inner: StatefulSourcePartition[Message, Optional[int]],
        catch_up: Optional[_CatchUp] = None,
        *,
        flow: str,
    ) -> None:
        self._inner = inner
        self._errors = metrics.Children(metrics.KAFKA_CONSUMER_ERRORS, flow)
        self._next_offset: Optional[int] = None
        self._catch_up = catch_up

    def next_batch(self) -> list[RawRecord]:
        if isinstance(self._inner, _LagSafePartition):
            records, top = self._inner.next_records(self._errors)
        else:
            batch = self._inner.next_batch()
            records = [to_raw_record(i) for i in batch if _has_record(i, self._errors)]
            top = _top_offset(records)
        if top is not None:
            self._next_offset = top + 1
        if self._catch_up is not None:
            self._catch_up.report(self._next_offset)
        return records

    def next_awake(self) -> Optional[datetime]:
        return self._inner.next_awake()

    def snapshot(self) -> Optional[int]:
        # Bytewax's partition also advances past error events (offset -1001); ours does not.
        return self._next_offset if self._next_offset is not None else self._inner.snapshot()

    def close(self) -> None:
        if self._catch_up is not None:
            self._catch_up.close()
        self._inner.close()


def count_consumer_error(topic: str, *, flow: str) -> Callable[[ConfluentKafkaError], None]:
    """librdkafka's `error_cb` of `flow`'s consumer of `topic`: count and log (rate-limited) each
    error.

    Broker-level errors (connection refused, all brokers down, authentication) arrive here, not
    as messages; the consumer keeps reconnecting by itself.
    """

    errors = metrics.Children(metrics.KAFKA_CONSUMER_ERRORS, flow, topic)

    def on_error(err: ConfluentKafkaError) -> None:
        code = err.name() if hasattr(err, "name") else "unknown"
        errors(code).inc()
        _ERRORS_LOG.log(
            logging.WARNING, "Kafka consumer of %s: %s: %s (the consumer reconnects)",
            topic, code, err.str(),
        )  # fmt: skip

    return on_error


def consumer_lag(stats: dict[str, Any], topic: str, partition: int, position: int) -> Optional[int]:
    """Lag of `partition` at read `position` from librdkafka statistics; None when unknown.

    The partition's end (`ls_offset`, the last stable offset) is -1001 while the broker is
    unreachable, and the position is negative before the first record (`OFFSET_BEGINNING`):
    then the lag is unknown, not negative. A position past a stale end counts as 0.
    """
    part = stats.get("topics", {}).get(topic, {}).get("partitions", {}).get(str(partition))
    end = part.get("ls_offset", -1) if isinstance(part, dict) else -1
    if not isinstance(end, int) or end < 0 or position < 0:
        return None
    return max(end - position, 0)


class _LagSafePartition(_KafkaSourcePartition):
    """Bytewax's Kafka partition with a lag gauge that is never negative (see `consumer_lag`)."""

    def _process_stats(self, json_stats: str) -> None:
        lag = consumer_lag(json.loads(json_stats), self._topic, self._part_idx, self._offset)
        if lag is not None:
            BYTEWAX_CONSUMER_LAG_GAUGE.labels(**self._metrics_labels).set(lag)

    def next_records(
        self, errors: metrics.Children[Counter]
    ) -> tuple[list[RawRecord], Optional[int]]:
        """`next_batch` made straight into `RawRecord`s, without a `KafkaSourceMessage` per
        message: the same records, errors, end of partition and resume offset as
        `[to_raw_record(m) for m in self.next_batch() if _has_record(m, errors)]`, and their
        `_top_offset`."""
        if self._eof:
            raise StopIteration()
        records: list[RawRecord] = []
        append = records.append
        last_offset = None
        top: Optional[int] = None  # of the records without an error
        for msg in self._consumer.consume(self._batch_size, 0.001):
            error = msg.error()
            if error is None:
                raw_key, topic = msg.key(), msg.topic()
                partition, offset = msg.partition(), msg.offset()
                if (
                    (raw_key is None or (len(raw_key) <= MAX_KEY_CHARS and raw_key.isascii()))
                    and topic
                    and partition is not None
                    and partition >= 0
                    and offset is not None
                    and offset >= 0
                ):  # the common case of `_raw_record`: its checks all pass, nothing to replace
                    key = None if raw_key is None else raw_key.decode("ascii")
                    record = _new(RawRecord)  # `RawRecord(...)`, without a call
                    _set_raw_dict(
                        record,
                        {
                            "value": msg.value() or b"", "key": key, "topic": topic,
                            "partition": partition, "offset": offset, "error": None,
                            "error_type": _NO_ERROR,
                        },
                    )  # fmt: skip
                    append(record)
                    if top is None or offset > top:
                        top = offset
                else:
                    record = _raw_record(msg.value(), raw_key, topic, partition, offset)
                    append(record)
                    read = record.offset if record.error is None else None
                    if read is not None and (top is None or read > top):
                        top = read
                last_offset = offset
                continue
            if error.code() == ConfluentKafkaError._PARTITION_EOF:
                self._eof = True  # emit this batch; the next call ends the partition
                break
            else:
                item = KafkaError(error, _source_message(msg))
                if _has_record(item, errors):
                    records.append(to_raw_record(item))
            last_offset = msg.offset()
        if last_offset is not None:
            self._offset = last_offset + 1
        return records, top


_new = object.__new__
_set_raw_dict: Callable[[object, dict[str, Any]], None] = vars(RawRecord)["__dict__"].__set__
"""`RawRecord.__init__`'s one step: its seven fields set at once, in declaration order."""


def _top_offset(records: list[RawRecord]) -> Optional[int]:
    """The highest offset of `records` that was read without an error (a partition resumes
    after it), or None."""
    offsets = [r.offset for r in records if r.offset is not None and r.error is None]
    return max(offsets) if offsets else None


def _source_message(msg: Any) -> KafkaSourceMessage[Optional[bytes], Optional[bytes]]:
    """Bytewax's message of a confluent-kafka `msg` (as its `KafkaSourcePartition` makes it)."""
    return KafkaSourceMessage(
        key=msg.key(), value=msg.value(), topic=msg.topic(), headers=msg.headers() or [],
        latency=msg.latency(), offset=msg.offset(), partition=msg.partition(),
        timestamp=msg.timestamp(),
    )  # fmt: skip


class KafkaRecordSource(FixedPartitionedSource[RawRecord, Optional[int]]):
    """Read `topics` from the cluster in the settings, as `RawRecord`s.

    `SURGEFLOW_KAFKA_TAIL=false` stops at the end of every partition (replays, batch runs, tests);
    `SURGEFLOW_KAFKA_STARTING_OFFSET` is where a partition without resume state starts. Lag
    over `SURGEFLOW_CATCH_UP_LAG_RECORDS` is reported to `clock` (this process's by default).
    Consumer errors are counted under `flow`, the flow reading the topics.
    """

    def __init__(
        self,
        settings: Settings,
        topics: list[str],
        *,
        flow: str,
        clock: Optional[LiveClock] = None,
    ) -> None:
        self._settings = settings
        self._flow = flow
        self._clock = clock if clock is not None else live_clock()
        self._topics = list(topics)
        self._start = (
            OFFSET_BEGINNING if settings.kafka.starting_offset == "beginning" else OFFSET_END
        )

    @property
    def topics(self) -> list[str]:
        """The topics this source reads."""
        return list(self._topics)

    def list_parts(self) -> list[str]:
        """`<partition>-<topic>` for every partition of every topic, within the timeout."""
        admin = AdminClient(client_config(self._settings.kafka))
        timeout = self._settings.kafka.timeout_seconds
        return [
            f"{i}-{topic}" for topic in self._topics for i in partitions_of(admin, topic, timeout)
        ]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Optional[int]
    ) -> StatefulSourcePartition[RawRecord, Optional[int]]:
        """A consumer of one partition, configured as Bytewax's `KafkaSource` configures it, plus
        the error callback, the rate-limited log and the catch-up report to the live clock."""
        index, topic = for_part.split("-", 1)
        if topic not in self._topics:
            raise ValueError(f"cannot resume partition {for_part!r}: not of topics {self._topics}")
        config = {
            **client_config(self._settings.kafka),
            "group.id": "BYTEWAX_IGNORED",  # no consumer group: positions live in snapshots
            "enable.auto.commit": "false",
            "enable.partition.eof": str(not self._settings.kafka.tail),
            "statistics.interval.ms": 1000,
            "error_cb": count_consumer_error(topic, flow=self._flow),
        }
        inner = _LagSafePartition(
            step_id, config, topic, int(index), self._start, resume_state,
            self._settings.io.batch_size, False,
        )  # fmt: skip
        threshold = self._settings.shipments.catch_up_lag_records
        catch_up = _CatchUp(self._clock, for_part, inner, threshold)
        return _RecordPartition(inner, catch_up, flow=self._flow)
