"""A broker outage seen by the Kafka source: counted, logged a few times, lag never negative.

The test stops and restarts a broker of its own (the shared one must stay up), reading a real
partition through `KafkaRecordSource` before, during and after the outage.
"""

from __future__ import annotations

import logging
import time

import pytest
from prometheus_client import REGISTRY

from operators.connectors.kafka.source import KafkaRecordSource, consumer_lag
from operators.connectors.kafka.topics import create_topics
from scripts.kafka_broker import KafkaBroker
from tests.flows.kafka_runs import kafka_settings, produce_raw

STEP = "outage_source"


def consumer_errors(topic: str) -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "surgeflow_kafka_consumer_errors"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("topic") == topic
    )


def lag(topic: str) -> float | None:
    labels = {"step_id": STEP, "topic": topic, "partition": "0"}
    return REGISTRY.get_sample_value("bytewax_kafka_consumer_lag", labels)


@pytest.mark.kafka
def test_a_broker_outage_is_counted_and_the_lag_never_goes_negative(capfd, caplog) -> None:
    caplog.set_level(logging.INFO, logger="operators.connectors.kafka")
    with KafkaBroker() as broker:
        settings = kafka_settings(broker.bootstrap_servers, kafka_tail=True)
        topic = settings.topics.shipments_events
        create_topics(settings, [topic], partitions=1)
        produce_raw(settings, topic, [(b"SHP-1", b"%d" % i) for i in range(20)])
        part = KafkaRecordSource(settings, [topic], flow="test").build_part(
            STEP, f"0-{topic}", None
        )
        lags: list[float] = []

        def read(until: int, seconds: float, at_least: float = 1.5) -> int:
            """Poll until `until` records or `seconds`, for at least `at_least` s (statistics
            and the lag they carry come every second)."""
            began = time.monotonic()
            seen = 0
            while time.monotonic() - began < seconds and (
                seen < until or time.monotonic() - began < at_least
            ):
                seen += len(part.next_batch())
                if (value := lag(topic)) is not None:
                    lags.append(value)
                time.sleep(0.01)
            return seen

        try:
            assert read(20, 20) == 20
            before = consumer_errors(topic)
            capfd.readouterr()
            broker.stop_process()
            assert read(1, 4.0, at_least=4.0) == 0  # 4 s of outage, polled all along
            during = consumer_errors(topic) - before
            librdkafka_lines = [
                line for line in capfd.readouterr().err.splitlines() if line.startswith("%")
            ]
            broker.restart()
            produce_raw(settings, topic, [(b"SHP-1", b"%d" % i) for i in range(20, 25)])
            assert read(5, 30) == 5
        finally:
            part.close()
    logged = [r for r in caplog.records if r.name.startswith("operators.connectors.kafka")]
    print(
        f"outage: {during:.0f} consumer errors counted, {len(logged)} log lines, "
        f"{len(librdkafka_lines)} raw librdkafka lines; lag samples {len(lags)}, min {min(lags)}"
    )
    assert during > 0  # was 0: broker-level errors never reached the counter
    assert librdkafka_lines == [] and 0 < len(logged) <= 20  # was 84 raw lines in 4 s
    assert lags and min(lags) >= 0


def stats(end: int) -> dict:
    return {"topics": {"t": {"partitions": {"0": {"ls_offset": end}}}}}


@pytest.mark.parametrize(
    ("end", "position", "expected"),
    [
        (120, 100, 20),
        (-1001, 100, None),  # the broker is unreachable: the end is unknown, not -1001
        (120, -2, None),  # OFFSET_BEGINNING before the first record
        (90, 100, 0),  # an end older than the read position (stale statistics)
    ],
)
def test_the_lag_is_unknown_or_non_negative(end: int, position: int, expected) -> None:
    assert consumer_lag(stats(end), "t", 0, position) == expected
    assert consumer_lag({"topics": {}}, "t", 0, position) is None
