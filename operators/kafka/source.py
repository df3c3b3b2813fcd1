"""Kafka input: Bytewax's `KafkaSource` with its messages turned into `RawRecord`s.

Every Kafka partition is a Bytewax input partition; its read position is the resume state, kept in
Bytewax recovery snapshots (there is no consumer group, so nothing is committed to Kafka). Errors
are not raised: a consumer error at an offset, a key that is not UTF-8 or too long becomes a
`RawRecord` with `error` set, which `validate` turns into a dead letter with the topic, partition
and offset; a consumer error that belongs to no record (the broker is down) is logged and counted
in `surgeflow_kafka_consumer_errors_total` while the consumer retries.
Partition listing is bounded by `SURGEFLOW_KAFKA_TIMEOUT_SECONDS` and fails clearly when a topic
does not exist. After each batch a partition tells the process's `LiveClock` whether it is more
than `SURGEFLOW_CATCH_UP_LAG_RECORDS` behind its end (the consumer's cached high watermark), so
windows close on event time only while the input catches up.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Optional, Union

from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from flows.settings import Settings
from operators import metrics
from operators.clock import LiveClock, live_clock
from operators.kafka.config import bootstrap_servers, client_config, connection_config
from operators.kafka.topics import partitions_of
from operators.records import RawRecord

log = logging.getLogger(__name__)

MAX_KEY_CHARS = 256
"""Longest message key accepted (the flow keys are far shorter)."""

Message = Union[KafkaSourceMessage[Optional[bytes], Optional[bytes]], KafkaError[Any, Any]]


def to_raw_record(item: Message) -> RawRecord:
    """A Kafka message, or a consumer error with its message, as a `RawRecord`."""
    msg = item.msg if isinstance(item, KafkaError) else item
    key, key_error = _decode_key(msg.key)
    error, error_type = key_error, "validation_error"
    if key_error is not None and "UTF-8" in key_error:
        error_type = "decode_error"
    if isinstance(item, KafkaError):
        error, error_type = f"Kafka consumer error: {item.err.str()}", "consumer_error"
    return RawRecord(
        value=msg.value or b"",
        key=key,
        topic=msg.topic or "unknown",
        partition=_non_negative(msg.partition),
        offset=_non_negative(msg.offset),
        error=error,
        error_type=error_type,
    )


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


def _has_record(item: Message) -> bool:
    """False for a consumer error that belongs to no record (broker down, transport failure).

    Such errors are logged and counted, not dead-lettered: there is no record to send, and the
    consumer retries by itself. An error at a real offset is a record that could not be read.
    """
    if not isinstance(item, KafkaError) or _non_negative(item.msg.offset) is not None:
        return True
    code = item.err.name() if hasattr(item.err, "name") else "unknown"
    metrics.KAFKA_CONSUMER_ERRORS.labels(item.msg.topic or "unknown", code).inc()
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
    """One Kafka partition; resumes after the last record it emitted."""

    def __init__(
        self,
        inner: StatefulSourcePartition[Message, Optional[int]],
        catch_up: Optional[_CatchUp] = None,
    ) -> None:
        self._inner = inner
        self._next_offset: Optional[int] = None
        self._catch_up = catch_up

    def next_batch(self) -> list[RawRecord]:
        records = [to_raw_record(item) for item in self._inner.next_batch() if _has_record(item)]
        offsets = [r.offset for r in records if r.offset is not None and r.error is None]
        if offsets:
            self._next_offset = max(offsets) + 1
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


class KafkaRecordSource(FixedPartitionedSource[RawRecord, Optional[int]]):
    """Read `topics` from the cluster in the settings, as `RawRecord`s.

    `SURGEFLOW_KAFKA_TAIL=false` stops at the end of every partition (replays, batch runs, tests);
    `SURGEFLOW_KAFKA_STARTING_OFFSET` is where a partition without resume state starts. Lag
    over `SURGEFLOW_CATCH_UP_LAG_RECORDS` is reported to `clock` (this process's by default).
    """

    def __init__(
        self, settings: Settings, topics: list[str], *, clock: Optional[LiveClock] = None
    ) -> None:
        self._settings = settings
        self._clock = clock if clock is not None else live_clock()
        self._topics = list(topics)
        start = OFFSET_BEGINNING if settings.kafka_starting_offset == "beginning" else OFFSET_END
        self._inner = KafkaSource(
            bootstrap_servers(settings),
            self._topics,
            tail=settings.kafka_tail,
            starting_offset=start,
            add_config={k: str(v) for k, v in connection_config(settings).items()},
            batch_size=settings.batch_size,
            raise_on_errors=False,
        )

    def list_parts(self) -> list[str]:
        """`<partition>-<topic>` for every partition of every topic, within the timeout."""
        admin = AdminClient(client_config(self._settings))
        timeout = self._settings.kafka_timeout_seconds
        return [
            f"{i}-{topic}" for topic in self._topics for i in partitions_of(admin, topic, timeout)
        ]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Optional[int]
    ) -> _RecordPartition:
        inner = self._inner.build_part(step_id, for_part, resume_state)
        threshold = self._settings.catch_up_lag_records
        return _RecordPartition(inner, _CatchUp(self._clock, for_part, inner, threshold))
