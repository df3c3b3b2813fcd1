"""Surgeflow's runtime with the domain work taken out: the runtime-only contender of
`benchmarks.peers --runtimes`.

    python -m bytewax.run benchmarks.peers_runtime
    python -m bytewax.run benchmarks.peers_runtime:keyed_flow
    python -m bytewax.run benchmarks.peers_runtime:lanes_flow

The shipments flow's frame without its steps: the flow's Kafka source (`KafkaRecordSource`, every
partition of the input topic, batches of `SURGEFLOW_IO_BATCH_SIZE`), the counted `ingest` step
(`operators.runtime.io.input_records`), one batch step that does what every runtime-only contender
does (`benchmarks.peers_loops.pass_through`: each record parsed as JSON, its flow key read, the
value produced unchanged under that key), and the flows' delivery-checked Kafka sink
(`KafkaRecordSink`) writing to the output topic; the process's GC and allocator policies as the
flows apply them. Topics and Kafka settings come from the environment as for `flows.shipments`
(`SURGEFLOW_TOPIC_SHIPMENTS_*`, `KAFKA_BOOTSTRAP_SERVERS`); with `SURGEFLOW_KAFKA_TAIL=false` it
stops at the end of every partition. Nothing is validated and nothing is dead-lettered.

`keyed_flow` adds the keyed part of the shipments flow's shape between the batch step and the sink:
the records cross to the worker that owns their key a batch at a time (`route_by_key`, as the scans
do), a Bytewax `stateful` step keeps a logic per key (a count; it emits each record as it comes,
sets no timer), and the key is dropped (`key_rm`). Records without a key share the key "".

`lanes_flow` keeps the same per-key state another way: the records are keyed by one of `LANES`
lanes (a hash of their key) and a `stateful_batch` logic per lane holds a dict of counts by key,
a batch at a time, so Bytewax keeps 16 logics instead of one per shipment.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from benchmarks.peers_loops import pass_through
from flows.registry import SHIPMENTS
from operators.config.settings import Settings
from operators.connectors.kafka.sink import KafkaRecordSink
from operators.connectors.kafka.source import KafkaRecordSource
from operators.runtime import gc_policy, io, malloc_policy
from operators.runtime.exchange import route_by_key
from operators.runtime.records import OutRecord, RawRecord


class _Count(op.StatefulLogic[OutRecord, OutRecord, int]):
    """One key's logic: counts its records and emits each one as it comes."""

    def __init__(self, seen: Optional[int]) -> None:
        self.seen = seen or 0

    def on_item(self, value: OutRecord) -> tuple[Iterable[OutRecord], bool]:
        self.seen += 1
        return (value,), op.StatefulLogic.RETAIN

    def snapshot(self) -> int:
        return self.seen


LANES = 16


def _lane(record: OutRecord) -> str:
    return str(zlib.crc32((record.key or "").encode()) % LANES)


class _Lane(op.StatefulBatchLogic[OutRecord, OutRecord, dict[str, int]]):
    """One lane's logic: counts the records of each key in a dict, emits each batch as it comes."""

    def __init__(self, seen: Optional[dict[str, int]]) -> None:
        self.seen = dict(seen or {})

    def on_batch(self, values: list[OutRecord]) -> tuple[Iterable[OutRecord], bool]:
        seen = self.seen
        for v in values:
            key = v.key or ""
            seen[key] = seen.get(key, 0) + 1
        return values, op.StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict[str, int]:
        return dict(self.seen)


def build_flow(
    settings: Optional[Settings] = None, *, keyed: bool = False, lanes: bool = False
) -> Dataflow:
    """Kafka source → ingest → `pass_through` a batch at a time (→ by key → a logic per key,
    with `keyed`; → a logic per lane, with `lanes`) → Kafka sink."""
    s = settings or Settings()
    topics = SHIPMENTS.topics(s)
    out = topics.output

    def passed(batch: list[RawRecord]) -> list[OutRecord]:
        return [pass_through(out, r.value) for r in batch]

    flow = Dataflow("peers_runtime")
    source = KafkaRecordSource(s, [topics.input], flow=SHIPMENTS.name)
    raw = io.input_records("ingest", flow, source=source, flow_name=SHIPMENTS.name)
    records = op.flat_map_batch("pass_through", raw, passed)
    if keyed:
        by_key = route_by_key("key_by_shipment", records, lambda r: r.key or "")
        records = op.key_rm("unkey", op.stateful("count", by_key, _Count))
    elif lanes:
        by_lane = op.key_on("key_by_lane", records, _lane)
        records = op.key_rm("unkey", op.stateful_batch("count", by_lane, _Lane))
    op.output("write", records, KafkaRecordSink(s.kafka, flow=SHIPMENTS.name))
    gc_policy.apply(s.process.gc_tuning)
    malloc_policy.apply(s.process.malloc_trim_seconds)
    return flow


def __getattr__(name: str) -> Dataflow:
    """`flow`, built when Bytewax asks for it: importing this module contacts no service."""
    if name == "flow":
        return build_flow()
    if name == "keyed_flow":
        return build_flow(keyed=True)
    if name == "lanes_flow":
        return build_flow(lanes=True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
