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

from bytewax.inputs import Source
from bytewax.outputs import Sink
from pydantic import BaseModel

from operators.config.settings import Settings
from operators.connectors.kafka.sink import KafkaRecordSink
from operators.connectors.kafka.source import KafkaRecordSource
from operators.connectors.sinks import DirectorySink, StdoutSink
from operators.connectors.sources import GeneratorSource, JsonLinesSource
from operators.errors import ConfigurationError
from operators.runtime.records import OutRecord, RawRecord

M = TypeVar("M", bound=BaseModel)


def check_services(settings: Settings) -> None:
    """Refuse settings that ask for two transports at once (which one would win is a guess)."""
    if settings.kafka.enabled and (settings.io.input_file or settings.io.output_dir):
        raise ConfigurationError(
            "KAFKA_BOOTSTRAP_SERVERS and SURGEFLOW_INPUT_FILE/SURGEFLOW_OUTPUT_DIR are both set; "
            "a flow reads and writes Kafka or the embedded transports, not both: unset one"
        )


def embedded_source(
    settings: Settings, *, topic: str, generator: Callable[..., Iterator[RawRecord]]
) -> Source[RawRecord]:
    """The embedded input: the JSON-lines file if one is set, else the seeded surge generator."""
    if settings.io.input_file is not None:
        if not settings.io.input_file.is_file():
            raise ConfigurationError(f"SURGEFLOW_INPUT_FILE {settings.io.input_file} is not a file")
        return JsonLinesSource(
            settings.io.input_file, topic=topic, batch_size=settings.io.batch_size
        )
    factory = partial(
        generator,
        seed=settings.surge.seed,
        steady_events=settings.surge.steady_events,
        burst_factor=settings.surge.burst_factor,
        topic=topic,
    )
    return GeneratorSource(
        factory, name=topic, batch_size=settings.io.batch_size, rate=settings.surge.rate
    )


def embedded_sink(settings: Settings) -> Sink[OutRecord]:
    """The embedded output: one file per topic under SURGEFLOW_OUTPUT_DIR, else stdout."""
    if settings.io.output_dir is not None:
        return DirectorySink(settings.io.output_dir)
    return StdoutSink()


def endpoints(
    settings: Settings,
    *,
    flow: str,
    topic: str,
    generator: Callable[..., Iterator[RawRecord]],
    source: Optional[Source[RawRecord]] = None,
    sink: Optional[Sink[OutRecord]] = None,
) -> tuple[Source[RawRecord], Sink[OutRecord]]:
    """A flow's input and output: the ones given (tests), else those the settings configure.

    With `KAFKA_BOOTSTRAP_SERVERS` set: the flow's input `topic` and a delivery-checked producer
    writing each record to its own topic; else the embedded source and sink. The Kafka ones
    count their errors and deliveries under `flow`.
    """
    check_services(settings)
    if settings.kafka.enabled:
        return source or KafkaRecordSource(settings, [topic], flow=flow), sink or KafkaRecordSink(
            settings.kafka, flow=flow
        )
    source = source or embedded_source(settings, topic=topic, generator=generator)
    return source, sink or embedded_sink(settings)
