"""Input and output operators: where records enter and leave a flow.

The flows call `input_records` and `publish` only; which transport is behind them is decided by
the settings (Kafka when `KAFKA_BOOTSTRAP_SERVERS` is set; else `SURGEFLOW_INPUT_FILE`,
`SURGEFLOW_OUTPUT_DIR`, or the bundled surge generator and stdout), or by a source/sink passed in
(tests pass Bytewax's testing connectors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Optional, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import Source
from bytewax.outputs import Sink
from pydantic import BaseModel

from operators.config.settings import Settings
from operators.connectors.kafka.sink import KafkaRecordSink
from operators.connectors.kafka.source import KafkaRecordSource
from operators.connectors.sinks import DirectorySink, StdoutSink
from operators.connectors.sources import GeneratorSource, JsonLinesSource
from operators.errors import ConfigurationError
from operators.runtime import metrics
from operators.runtime.guard import describe, guarded_map
from operators.runtime.records import OutRecord, RawRecord, to_out_record
from schemas.dead_letter import DeadLetter, FlowName, RawPolicy, SourceRef, raw_policy

M = TypeVar("M", bound=BaseModel)


def check_services(settings: Settings) -> None:
    """Refuse settings that ask for two transports at once (which one would win is a guess)."""
    if settings.kafka_enabled and (settings.input_file or settings.output_dir):
        raise ConfigurationError(
            "KAFKA_BOOTSTRAP_SERVERS and SURGEFLOW_INPUT_FILE/SURGEFLOW_OUTPUT_DIR are both set; "
            "a flow reads and writes Kafka or the embedded transports, not both: unset one"
        )


def embedded_source(
    settings: Settings, *, topic: str, generator: Callable[..., Iterator[RawRecord]]
) -> Source[RawRecord]:
    """The embedded input: the JSON-lines file if one is set, else the seeded surge generator."""
    if settings.input_file is not None:
        if not settings.input_file.is_file():
            raise ConfigurationError(f"SURGEFLOW_INPUT_FILE {settings.input_file} is not a file")
        return JsonLinesSource(settings.input_file, topic=topic, batch_size=settings.batch_size)
    factory = partial(
        generator,
        seed=settings.surge_seed,
        steady_events=settings.surge_steady_events,
        burst_factor=settings.surge_burst_factor,
        topic=topic,
    )
    return GeneratorSource(
        factory, name=topic, batch_size=settings.batch_size, rate=settings.surge_rate
    )


def embedded_sink(settings: Settings) -> Sink[OutRecord]:
    """The embedded output: one file per topic under SURGEFLOW_OUTPUT_DIR, else stdout."""
    if settings.output_dir is not None:
        return DirectorySink(settings.output_dir)
    return StdoutSink()


def endpoints(
    settings: Settings,
    *,
    topic: str,
    generator: Callable[..., Iterator[RawRecord]],
    source: Optional[Source[RawRecord]] = None,
    sink: Optional[Sink[OutRecord]] = None,
) -> tuple[Source[RawRecord], Sink[OutRecord]]:
    """A flow's input and output: the ones given (tests), else those the settings configure.

    With `KAFKA_BOOTSTRAP_SERVERS` set: the flow's input `topic` and a delivery-checked producer
    writing each record to its own topic; else the embedded source and sink.
    """
    check_services(settings)
    if settings.kafka_enabled:
        return source or KafkaRecordSource(settings, [topic]), sink or KafkaRecordSink(settings)
    source = source or embedded_source(settings, topic=topic, generator=generator)
    return source, sink or embedded_sink(settings)


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
    return op.inspect(
        "count_in", records, lambda _s, _r: metrics.RECORDS_IN.labels(flow_name).inc()
    )


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
) -> Stream[DeadLetter]:
    """Serialise topic models to JSON `OutRecord`s keyed by the flow key and write them to `sink`.

    Consumes: pydantic models of `topic`'s contract; those with an `enrichment` block are counted
    by its source in `surgeflow_enrichments_total` (and by each reply-policy rule it broke in
    `surgeflow_reply_policy_blocked_total`). Emits: a `processing_error` `DeadLetter` for
    each model that cannot be serialised (its source is `source(model)`, by default `topic`);
    the flow publishes them with its dead letters. A record the sink cannot write stops the
    flow (`KafkaDeliveryError`). State: none.
    """

    def count_enrichment(_step: str, model: M) -> None:
        enrichment = getattr(model, "enrichment", None)
        if enrichment is not None:
            metrics.ENRICHMENTS.labels(flow_name, enrichment.source).inc()
            for rule in enrichment.policy_violations:
                metrics.POLICY_BLOCKED.labels(flow_name, rule).inc()

    counted_models = op.inspect("count_enrichments", up, count_enrichment)
    records = guarded_map(
        "serialise", counted_models, lambda m: to_out_record(topic, key(m), m), flow=flow_name,
        key=key, source=source or (lambda _: SourceRef(topic=topic)),
    )  # fmt: skip
    counted = op.inspect(
        "count_out",
        records.results,
        lambda _s, r: metrics.RECORDS_OUT.labels(flow_name, r.topic).inc(),
    )
    op.output("write", counted, sink)
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
    keep_raw: Optional[RawPolicy] = None,
) -> None:
    """Count dead letters by reason (`surgeflow_dead_letters_total`) and publish them, keeping of
    their raw input what `keep_raw` allows (default: the flow's, `schemas.dead_letter.raw_policy`).

    Consumes: `DeadLetter`. The Kafka key is the flow key of the bad record when it was found.
    A dead letter that cannot be serialised is replaced by a plain one that says so.
    """
    policy = raw_policy(flow_name, keep_raw)
    letters = op.map("serialisable", up, partial(_serialisable, step=step_id, flow=flow_name))
    reduced = op.map("keep_raw", letters, lambda d: d.kept(policy))
    counted = op.inspect(
        "count", reduced, lambda _s, d: metrics.DEAD_LETTERS.labels(flow_name, d.error_type).inc()
    )
    publish("publish", counted, topic=topic, key=lambda d: d.key, sink=sink, flow_name=flow_name)
