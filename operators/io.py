"""Input and output operators: where records enter and leave a flow.

The flows call `input_records` and `publish` only; which transport is behind them is decided by
the settings (`SURGEFLOW_INPUT_FILE`, `SURGEFLOW_OUTPUT_DIR`, or the bundled surge generator and
stdout when unset), or by a source/sink passed in (tests pass Bytewax's testing connectors).
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

from flows.settings import Settings
from operators import metrics
from operators.records import OutRecord, RawRecord, to_out_record
from operators.sinks import DirectorySink, StdoutSink
from operators.sources import GeneratorSource, JsonLinesSource
from schemas.dead_letter import DeadLetter, SourceRef

M = TypeVar("M", bound=BaseModel)


class ConfigurationError(RuntimeError):
    """The settings ask for something this build cannot do; raised at flow build time."""


def check_services(settings: Settings) -> None:
    """Refuse to start when a service is configured that this build cannot use.

    Running on the embedded defaults instead would silently ignore the configuration.
    """
    if settings.kafka_enabled:
        raise ConfigurationError(
            "KAFKA_BOOTSTRAP_SERVERS is set, but this build has only the embedded transports; "
            "unset it to run on the bundled surge or SURGEFLOW_INPUT_FILE"
        )
    if settings.redis_enabled:
        raise ConfigurationError(
            "REDIS_URL is set, but this build has only the in-process LLM cache; unset it"
        )


def embedded_source(
    settings: Settings, *, topic: str, generator: Callable[..., Iterator[RawRecord]]
) -> Source[RawRecord]:
    """The embedded input: the JSON-lines file if one is set, else the seeded surge generator."""
    check_services(settings)
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
    """A flow's input and output: the ones given (tests), else those the settings configure."""
    check_services(settings)
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
    flow_name: str,
) -> None:
    """Serialise topic models to JSON `OutRecord`s keyed by the flow key and write them to `sink`.

    Consumes: pydantic models of `topic`'s contract; those with an `enrichment` block are counted
    by its source in `surgeflow_enrichments_total`. Emits: nothing downstream. State: none.
    """

    def count_enrichment(_step: str, model: M) -> None:
        enrichment = getattr(model, "enrichment", None)
        if enrichment is not None:
            metrics.ENRICHMENTS.labels(flow_name, enrichment.source).inc()

    counted_models = op.inspect("count_enrichments", up, count_enrichment)
    records = op.map("serialise", counted_models, lambda m: to_out_record(topic, key(m), m))
    counted = op.inspect(
        "count_out", records, lambda _s, r: metrics.RECORDS_OUT.labels(flow_name, r.topic).inc()
    )
    op.output("write", counted, sink)


def derived(topic: str) -> SourceRef:
    """The source of a record a flow derived from its input (no single partition/offset)."""
    return SourceRef(topic=topic)


@operator
def publish_dead_letters(
    step_id: str, up: Stream[DeadLetter], *, topic: str, sink: Sink[OutRecord], flow_name: str
) -> None:
    """Count dead letters by reason (`surgeflow_dead_letters_total`) and publish them.

    Consumes: `DeadLetter`. The Kafka key is the flow key of the bad record when it was found.
    """
    counted = op.inspect(
        "count", up, lambda _s, d: metrics.DEAD_LETTERS.labels(flow_name, d.error_type).inc()
    )
    publish("publish", counted, topic=topic, key=lambda d: d.key, sink=sink, flow_name=flow_name)
