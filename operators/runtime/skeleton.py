"""The frame every flow shares, built around a flow's own steps.

    start (logging, recovery check, graceful stop, endpoints, preflight)
    → ingest → validate (the spec's input model and key field)
    → the flow's own steps (`steps(frame, valid)` → its output + its dead letters)
    → publish_<output_name>, and dead_letters → publish_dead_letters

A flow module is its spec (`flows/registry.py`) and its own steps:

    def build_flow(settings=None, *, source=None, sink=None, stop=None) -> Dataflow:
        return skeleton.build(SHIPMENTS, decide, settings, start=start, source=source, ...)

The step ids of the frame (`ingest`, `validate`, `publish_<output_name>`, `dead_letters`,
`publish_dead_letters`) are part of a recovery store: keep them. What starting a flow means for
its process (`start`) is given by the caller: it reads the services' settings (Kafka, the files,
the LLM endpoint) that this generic layer knows nothing of.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Optional, Protocol, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink
from pydantic import BaseModel

from operators.config.settings import Settings
from operators.runtime import gc_policy, io, malloc_policy
from operators.runtime.flow_spec import AnySpec, FlowSpec, FlowTopics
from operators.runtime.records import OutRecord, RawRecord, Valid
from operators.runtime.shutdown import StopSignal, until_stopped
from operators.runtime.validate import Limits, validate
from schemas.dead_letter import DeadLetter, SourceRef

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)
Ref = TypeVar("Ref")


@dataclass(frozen=True)
class Started:
    """A flow's process, started: where its records come from and go, and its graceful stop."""

    source: Source[RawRecord]
    sink: Sink[OutRecord]
    stop: StopSignal


class Start(Protocol):
    """Start a flow's process: configure logging, check the recovery store, install the
    graceful stop (unless `stop` is given), open the endpoints (unless given) and check them."""

    def __call__(
        self,
        spec: AnySpec,
        settings: Settings,
        *,
        source: Optional[Source[RawRecord]],
        sink: Optional[Sink[OutRecord]],
        stop: Optional[StopSignal],
    ) -> Started: ...


@dataclass(frozen=True)
class Frame(Generic[Ref]):
    """What a flow's own steps are given: the settings, the graceful stop, the flow's topics and
    its reference data (loaded once, when the flow is built)."""

    settings: Settings
    stop: StopSignal
    topics: FlowTopics
    reference: Ref

    def derived(self, _record: object) -> SourceRef:
        """The source of a record the flow derived from its input (`io.derived`)."""
        return io.derived(self.topics.input)


@dataclass(frozen=True)
class FlowSteps(Generic[Out]):
    """The two outputs of a flow's own steps: its output models and its dead letters (in the
    order they are merged after the ones of `validate`)."""

    output: Stream[Out]
    dead_letters: tuple[Stream[DeadLetter], ...] = ()


Steps = Callable[[Frame[Ref], Stream[Valid[In]]], FlowSteps[Out]]
"""A flow's own steps, from its validated input to its output and dead letters."""


def build(
    spec: FlowSpec[In, Out, Ref],
    steps: Steps[Ref, In, Out],
    settings: Optional[Settings] = None,
    *,
    start: Start,
    source: Optional[Source[RawRecord]] = None,
    sink: Optional[Sink[OutRecord]] = None,
    stop: Optional[StopSignal] = None,
) -> Dataflow:
    """The dataflow of `spec`: the shared frame around `steps`.

    `source`/`sink` replace the configured transports and `stop` the graceful stop that
    SIGTERM/SIGINT request (tests). Every record the flow cannot process ends in the flow's
    dead-letter topic, keeping of its raw input what `SURGEFLOW_DEAD_LETTER_RAW` (else the
    spec's `dead_letter_raw`) allows.
    """
    s = settings or Settings()
    started = start(spec, s, source=source, sink=sink, stop=stop)
    topics = spec.topics(s)
    frame = Frame(settings=s, stop=started.stop, topics=topics, reference=spec.reference())

    flow = Dataflow(spec.name)
    raw = io.input_records(
        "ingest", flow, source=until_stopped(started.source, started.stop), flow_name=spec.name
    )
    valid = validate(
        "validate", raw, model=spec.input_model, key_field=spec.key_field, flow=spec.name,
        limits=Limits.from_settings(s.io),
    )  # fmt: skip
    own = steps(frame, valid.valid)
    unwritable = io.publish(
        f"publish_{spec.output_name}", own.output, topic=topics.output, key=spec.key_of,
        sink=started.sink, flow_name=spec.name, source=frame.derived, count=spec.output_count,
    )  # fmt: skip
    dead = op.merge("dead_letters", valid.dead_letters, *own.dead_letters, unwritable)
    io.publish_dead_letters(
        "publish_dead_letters", dead, topic=topics.dead_letters, sink=started.sink,
        flow_name=spec.name, keep_raw=s.io.dead_letter_raw or spec.dead_letter_raw,
    )  # fmt: skip
    gc_policy.apply(s.process.gc_tuning)
    malloc_policy.apply(s.process.malloc_trim_seconds)
    return flow
