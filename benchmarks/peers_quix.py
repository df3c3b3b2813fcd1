"""The Quix Streams contender of `benchmarks.peers`: the shipments flow's work as a Quix app.

Run by the Python of the benchmark's own venv (`.cache/peers/quix-<version>`, which holds Quix
Streams and the project's runtime dependencies, never ours), with the checkout on `PYTHONPATH`:

    .cache/peers/quix-3.28.1/bin/python -m benchmarks.peers_quix IN OUT DLQ [--tail]
    .cache/peers/quix-3.28.1/bin/python -m benchmarks.peers_quix IN OUT DLQ --runtime-only

Quix consumes IN through its consumer group and `StreamingDataFrame`, one record at a time: the
same validation (`parse_record`), the carrier and hub join (a dict lookup per record, the way a
per-record pipeline joins small reference tables; the same `EnrichedEvent`), the per-shipment
decision windows with their timers, the rules and the agent on the rules path
(`benchmarks.peers_loops.ShipmentsLogic`), then `to_topic` writes decisions and dead letters with
the flows' producer settings (idempotent, `acks=all`, lz4, murmur2). Quix's own tumbling windows
are not used: they close per key too, but cannot carry a shipment's history (delays of earlier
windows, delivery) into the next window's rules, fire the stuck timer, or close the open windows
when a bounded input ends. Here the windows are held in the app's memory, as Bytewax holds its
stateful logic; at the end of the input (every partition read to the offset it had when the app
started) the app stops and flushes the open windows through Quix's producer.

With `--runtime-only` the app does only what every runtime-only contender does
(`benchmarks.peers_loops.pass_through`: each record parsed as JSON, its flow key read, the value
written to OUT unchanged under that key), through the same consumer, `StreamingDataFrame.apply`,
end-of-input stop and `to_topic`: Quix's own cost per record.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from datetime import timedelta
from typing import Any, Optional

from confluent_kafka import Consumer, TopicPartition
from quixstreams import Application, message_context
from quixstreams.models.serializers import Serializer

from benchmarks.peers_loops import Emitted, ShipmentsLogic, _dead, pass_through
from operators.config.settings import Settings
from operators.connectors.kafka.config import producer_config
from operators.runtime.enrich import unknown_reference
from operators.runtime.records import OutRecord, RawRecord
from operators.shipments.domain import EnrichedEvent
from schemas.common import utc_now

PRODUCER_KEYS = ("linger.ms", "compression.type", "enable.idempotence", "acks", "partitioner")


class RecordValue(Serializer):  # type: ignore[misc]  # quixstreams is untyped here
    """An `OutRecord`'s value bytes (the schema JSON the flows write)."""

    def __call__(self, value: Any, ctx: Any) -> bytes:
        return value.value  # type: ignore[no-any-return]


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "surgeflow-peers-ignored"})
    meta = consumer.list_topics(topic, timeout=30).topics[topic]
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
        for p in meta.partitions
    }
    consumer.close()
    return ends


def application(settings: Settings) -> Any:
    """A Quix app on the broker with a consumer group of its own and the flows' producer
    settings."""
    kafka = settings.kafka
    tuning = {k: v for k, v in producer_config(kafka).items() if k in PRODUCER_KEYS}
    return Application(
        broker_address=kafka.bootstrap_servers,
        consumer_group=f"surgeflow-peers-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="surgeflow-peers-quix-"),
        use_changelog_topics=False,
        loglevel="WARNING",
        producer_extra_config=tuning,
    )


def runtime_only(settings: Settings, topic_in: str, out: str, *, tail: bool) -> int:
    """`pass_through` of every record of `topic_in` to `out` in a Quix app, to the end of the
    input (or SIGTERM with `tail`)."""
    assert settings.kafka.bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS is not set"
    pending = {
        p: end for p, end in end_offsets(settings.kafka.bootstrap_servers, topic_in).items() if end
    }
    app = application(settings)
    source = app.topic(topic_in, value_deserializer="bytes", key_deserializer="str")
    target = app.topic(out, value_serializer=RecordValue(), key_serializer="str")

    def process(value: Optional[bytes], _key: Any, _ts: int, _h: Any) -> OutRecord:
        ctx = message_context()
        record = pass_through(out, value or b"")
        if not tail and ctx.partition in pending and ctx.offset + 1 >= pending[ctx.partition]:
            del pending[ctx.partition]
            if not pending:
                app.stop()
        return record

    sdf = app.dataframe(source).apply(process, metadata=True)
    sdf.to_topic(target, key=lambda v: v.key)
    if pending or tail:
        app.run()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Quix Streams contender (shipments).")
    parser.add_argument("topics", nargs=3)
    parser.add_argument("--tail", action="store_true")
    parser.add_argument("--runtime-only", action="store_true", help="pass_through, no domain work")
    args = parser.parse_args(argv)
    topic_in, out, dlq = args.topics
    settings = Settings()
    kafka = settings.kafka
    assert kafka.bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS is not set"
    if args.runtime_only:
        return runtime_only(settings, topic_in, out, tail=args.tail)
    logic = ShipmentsLogic(settings, out, dlq)
    carriers = {r[0]: r[1:] for r in logic.reference.carriers.select(
        "carrier_id", "carrier_name", "sla_hours", "reliability").iter_rows()}  # fmt: skip
    hubs = {r[0]: r[1:] for r in logic.reference.hubs.select(
        "hub_id", "region", "congestion").iter_rows()}  # fmt: skip
    pending = {p: end for p, end in end_offsets(kafka.bootstrap_servers, topic_in).items() if end}
    app = application(settings)
    source = app.topic(topic_in, value_deserializer="bytes", key_deserializer="str")
    outputs = {
        t: app.topic(t, value_serializer=RecordValue(), key_serializer="str") for t in (out, dlq)
    }

    def enrich(valid: Any, records: Emitted) -> Optional[EnrichedEvent]:
        ev = valid.model
        carrier, hub = carriers.get(ev.carrier_id), hubs.get(ev.hub_id)
        if carrier is None or hub is None:
            missing = f"carrier {ev.carrier_id!r}" if carrier is None else f"hub {ev.hub_id!r}"
            what = f"{missing} is not in the reference data"
            letter = unknown_reference(valid, "shipments.enrich", "shipments", ev.shipment_id, what)
            records.append(_dead(dlq, letter, logic.keep))
            return None
        name, sla, reliability = carrier
        region, congestion = hub
        return EnrichedEvent(
            event=ev, source=valid.source, carrier_name=name, sla_hours=sla,
            carrier_reliability=reliability, region=region, hub_congestion=congestion,
            sla_due_at=ev.shipped_at + timedelta(hours=sla),
        )  # fmt: skip

    def process(value: Optional[bytes], key: Optional[str], _ts: int, _h: Any) -> Emitted:
        ctx = message_context()
        raw = RawRecord(
            value=value or b"", key=key, topic=topic_in, partition=ctx.partition,
            offset=ctx.offset, error_type="validation_error",
        )  # fmt: skip
        records: Emitted = []
        valid = logic.validate(raw, utc_now(), records)
        if valid is not None:
            enriched = enrich(valid, records)
            if enriched is not None:
                logic.add(enriched, records)
        logic.fire_timers(records)
        if not args.tail and ctx.partition in pending and ctx.offset + 1 >= pending[ctx.partition]:
            del pending[ctx.partition]
            if not pending:
                app.stop()
        return records

    sdf = app.dataframe(source)
    sdf = sdf.apply(process, expand=True, metadata=True)
    sdf.to_topic(lambda v, _k, _t, _h: outputs[v.topic], key=lambda v: v.key)
    if pending or args.tail:
        app.run()
    if not args.tail:
        records: list[OutRecord] = []
        logic.end_of_input(records)
        with app.get_producer() as producer:
            for r in records:
                producer.produce(topic=r.topic, key=r.key, value=r.value)
            producer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
