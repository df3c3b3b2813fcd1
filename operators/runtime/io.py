"""Where records enter and leave a flow, whatever the transport: `input_records`, `publish` and
`publish_dead_letters` take Bytewax sources and sinks (chosen from the settings by
`operators.connectors.io.endpoints`, or passed in by tests) and count what passes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any, Optional, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import Source
from bytewax.outputs import Sink
from pydantic import BaseModel

from operators.runtime import metrics
from operators.runtime.guard import describe, guarded_map
from operators.runtime.records import OutRecord, RawRecord, to_out_record
from schemas.dead_letter import DeadLetter, FlowName, RawPolicy, SourceRef

M = TypeVar("M", bound=BaseModel)


@operator
def input_records(
    step_id: str,
    flow: Dataflow,
    *,
    source: Source[RawRecord],
    flow_name: str,
) -> Stream[RawRecord]:
    """Read `RawRecord`s from `source` and count them.

    Consumes: nothing (an input). Emits: `RawRecord` (bytes plus topic/partition/offset).
    State: the source's read position only.
    """
    records = op.input("read", flow, source)
    counted = metrics.RECORDS_IN.labels(flow_name)

    def count(batch: list[RawRecord]) -> list[RawRecord]:
        counted.inc(len(batch))
        return batch

    return op.flat_map_batch("count_in", records, count)  # one call per batch, not per record


@operator
def publish(
    step_id: str,
    up: Stream[M],
    *,
    topic: str,
    key: Callable[[M], Optional[str]],
    sink: Sink[OutRecord],
    flow_name: FlowName,
    source: Optional[Callable[[M], SourceRef]] = None,
    count: Optional[metrics.OutputCount[M]] = None,
) -> Stream[DeadLetter]:
    """Serialise topic models to JSON `OutRecord`s keyed by the flow key and write them to `sink`.

    Consumes: pydantic models of `topic`'s contract; those with an `enrichment` block are counted
    by its source in `surgeflow_enrichments_total` (and by each reply-policy rule it broke in
    `surgeflow_reply_policy_blocked_total`). Emits: a `processing_error` `DeadLetter` for
    each model that cannot be serialised (its source is `source(model)`, by default `topic`);
    the flow publishes them with its dead letters. A record the sink cannot write stops the
    flow (`KafkaDeliveryError`). `count`, when given, counts each serialised model by one of its
    fields (the flow's `surgeflow_decisions_total{action}` and the like). State: none.
    """
    enrichments = metrics.Children(metrics.ENRICHMENTS, flow_name)
    blocked = metrics.Children(metrics.POLICY_BLOCKED, flow_name)
    records_out = metrics.Children(metrics.RECORDS_OUT, flow_name)
    by_label = count.children(flow_name) if count is not None else None
    label_of = count.label_of if count is not None else None
    batches = threading.local()  # the workers of a process are threads: a tally each

    def counted(model: M) -> OutRecord:
        # one increment per record, of what it counts as: (enrichment source or None, the
        # reply-policy rules it broke, label value or None, written); `flush` adds them up by
        # counter once per batch
        tally: dict[Any, int] = batches.__dict__
        enrichment = getattr(model, "enrichment", None)
        source = rules = None
        if enrichment is not None:
            source, rules = enrichment.source, enrichment.policy_violations
        try:
            record = to_out_record(topic, key(model), model)
            label = label_of(model) if label_of is not None else None
        except BaseException:
            if source is not None:  # counted as enriched all the same
                failed = (source, rules, None, False)
                tally[failed] = tally.get(failed, 0) + 1
            raise
        kind = (source, rules, label, True)
        tally[kind] = tally.get(kind, 0) + 1
        return record

    def flush() -> None:
        """One increment per counter and batch (each `inc` takes a lock)."""
        tally: dict[Any, int] = batches.__dict__
        if not tally:
            return
        counts: dict[tuple[Any, Any], int] = {}  # (children, label value) -> increments
        for (source, rules, label, written), n in tally.items():
            if source is not None:
                counts[enrichments, source] = counts.get((enrichments, source), 0) + n
                for rule in rules:
                    counts[blocked, rule] = counts.get((blocked, rule), 0) + n
            if written:
                if by_label is not None:
                    counts[by_label, label] = counts.get((by_label, label), 0) + n
                counts[records_out, topic] = counts.get((records_out, topic), 0) + n
        tally.clear()
        for (children, value), n in counts.items():
            children(value).inc(n)

    # Counting and serialising run a batch at a time (`guarded_map`): one branch per record
    # between them and the sink.
    records = guarded_map(
        "serialise", up, counted, flow=flow_name, after_batch=flush,
        key=key, source=source or (lambda _: SourceRef(topic=topic)),
    )  # fmt: skip
    op.output("write", records.results, sink)
    return records.dead_letters


def derived(topic: str) -> SourceRef:
    """The source of a record a flow derived from its input (no single partition/offset)."""
    return SourceRef(topic=topic)


def _serialisable(letter: DeadLetter, *, step: str, flow: FlowName) -> DeadLetter:
    """`letter`, or when it cannot be serialised, a plain one saying so with its key and source."""
    try:
        letter.model_dump_json()
        return letter
    except Exception as exc:
        return DeadLetter.build(
            flow=flow,
            step=step[:100],
            error_type="processing_error",
            error=f"a dead letter of step {letter.step} could not be serialised: {describe(exc)}",
            raw=b"",
            source=letter.source,
            key=letter.key,
        )


@operator
def publish_dead_letters(
    step_id: str,
    up: Stream[DeadLetter],
    *,
    topic: str,
    sink: Sink[OutRecord],
    flow_name: FlowName,
    keep_raw: RawPolicy = "bounded",
) -> None:
    """Count dead letters by reason (`surgeflow_dead_letters_total`) and publish them, keeping of
    their raw input what `keep_raw` allows (the skeleton passes the flow's policy).

    Consumes: `DeadLetter`. The Kafka key is the flow key of the bad record when it was found.
    A dead letter that cannot be serialised is replaced by a plain one that says so.
    """
    letters = op.map("serialisable", up, partial(_serialisable, step=step_id, flow=flow_name))
    reduced = op.map("keep_raw", letters, lambda d: d.kept(keep_raw))
    by_reason = metrics.Children(metrics.DEAD_LETTERS, flow_name)
    counted = op.inspect("count", reduced, lambda _s, d: by_reason(d.error_type).inc())
    publish("publish", counted, topic=topic, key=lambda d: d.key, sink=sink, flow_name=flow_name)
