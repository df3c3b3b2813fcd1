"""The Kafka source tells the live clock when its input is catching up, against the real broker."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from operators.clock import LiveClock
from operators.kafka.source import KafkaRecordSource
from tests.flows.kafka_runs import kafka_settings, produce_raw, with_topics

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize(("threshold", "ever_behind"), [(20, True), (0, False)])
def test_a_partition_far_behind_its_end_pauses_the_live_clock_until_it_catches_up(
    kafka_bootstrap: str, threshold: int, ever_behind: bool
) -> None:
    """100 records on one partition read 10 at a time: more than 20 behind the end is catching
    up, and the live clock stands still; read to the end, it is caught up again. A threshold of
    0 never reports a catch-up."""
    settings = kafka_settings(kafka_bootstrap, batch_size=10, catch_up_lag_records=threshold)
    with_topics(settings, "shipments")
    topic = settings.topic_shipments_events
    ((partition, _), *_) = produce_raw(settings, topic, [(b"S-1", b"{}")] * 100)
    walls = {"now": datetime(2030, 1, 1, tzinfo=UTC)}
    clock = LiveClock(now=lambda: walls["now"])
    source = KafkaRecordSource(settings, [topic], clock=clock)
    part = source.build_part("in", f"{partition}-{topic}", None)
    states: list[bool] = []  # catching up after each call, one wall minute apart
    seen: list[tuple[int, bool]] = []
    deadline = time.monotonic() + 30
    read = 0
    try:
        while read < 100:
            assert time.monotonic() < deadline, f"read {read} of 100 records in 30 s"
            walls["now"] += timedelta(minutes=1)
            batch = part.next_batch()
            read += len(batch)
            states.append(clock.catching_up)
            if batch:
                seen.append((read, clock.catching_up))
    finally:
        part.close()
    behind = [count for count, catching_up in seen if catching_up]
    assert bool(behind) is ever_behind, seen
    if ever_behind:
        assert min(behind) <= 20 and max(behind) < 100 - threshold, seen
    assert seen[-1] == (100, False), "read to the end: caught up"
    paused = sum(states)  # minutes from the call that fell behind to the one that caught up
    assert clock.read().live == timedelta(minutes=len(states) - paused)
