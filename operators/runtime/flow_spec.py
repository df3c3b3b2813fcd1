"""A flow, declared once: its name, key, topics, models, surge and reference data.

A `FlowSpec` names no flow here: each flow's spec is written in `flows/registry.py` (the top
floor), and the generic modules take a spec (`operators.connectors.kafka.topics.flow_topics`,
`operators.connectors.kafka.load.surge_records`, `schemas.export.topic_models`, the skeleton
`operators.runtime.skeleton.build`). The command lines that take a flow by name
(`python -m operators.connectors.kafka.topics --flow tickets`,
`python -m operators.connectors.kafka.load shipments`, `python -m operators.surge shipments`,
`python -m schemas.export`) look it up in the registry
module, imported by its name when they run (as `bytewax.run` imports a flow module), so nothing
below `flows/` imports `flows/`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Optional, Protocol, TypeVar, Union

from pydantic import BaseModel

from operators.config.settings import Settings
from operators.runtime.metrics import OutputCount
from operators.runtime.records import RawRecord
from schemas.dead_letter import RawPolicy

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)
Ref = TypeVar("Ref")

FLOW_REGISTRY = "flows.registry"
"""The module whose `SPECS` maps every flow's name to its spec."""


class FlowTopics(NamedTuple):
    """The three topics of a flow: what it reads, what it writes, where its dead letters go."""

    input: str
    output: str
    dead_letters: str

    @classmethod
    def named(cls, flow: str, input: str, output: str) -> FlowTopics:
        """`<flow>.<input>`, `<flow>.<output>` and `<flow>.dlq`."""
        return cls(f"{flow}.{input}", f"{flow}.{output}", f"{flow}.dlq")


class Surged(Protocol):
    """One record of a surge and what it is (`valid`, `duplicate`, `malformed:<what>`, ...)."""

    @property
    def record(self) -> RawRecord: ...

    @property
    def kind(self) -> str: ...


Surge = Callable[..., Iterator[Surged]]
"""A seeded surge generator: keyword arguments `seed`, `steady_events`, `burst_factor`, `topic`."""


def no_reference() -> None:
    """The reference data of a flow that joins none."""
    return None


@dataclass(frozen=True)
class FlowSpec(Generic[In, Out, Ref]):
    """What a flow is, apart from its own steps.

    - `name`: the flow's name (its `Dataflow` id, metrics label, dead letters' `flow`);
    - `key_field`: the field of the input model, and of the output model, that keys the flow
      (the Kafka message key of its input and output, the key of its keyed state);
    - `topics`: its three topics under the given settings;
    - `input_model` / `output_model`: the pydantic models of its input and output topics;
    - `output_name`: what its output is called (`decisions`): the publishing step is
      `publish_<output_name>`;
    - `surge`: the seeded surge generator of its input (the embedded source), if it has one;
    - `reference`: loads its reference data, once per build, for its own steps;
    - `dead_letter_raw`: what its dead letters keep of their raw input unless
      `SURGEFLOW_DEAD_LETTER_RAW` says otherwise;
    - `output_count`: the counter of its outputs by one of their fields (`surgeflow_decisions_total`
      by action), counted as each output is published; none when not given.
    """

    name: str
    key_field: str
    topics: Callable[[Settings], FlowTopics]
    input_model: type[In]
    output_model: type[Out]
    output_name: str
    reference: Callable[[], Ref]
    surge: Optional[Surge] = None
    dead_letter_raw: RawPolicy = "bounded"
    output_count: Optional[OutputCount[Out]] = None

    def surge_records(self, **options: Any) -> Iterator[RawRecord]:
        """The records of `surge` (same keyword arguments); none for a flow without a surge."""
        if self.surge is None:
            return iter(())
        return (generated.record for generated in self.surge(**options))

    def key_of(self, model: Out) -> Optional[str]:
        """The flow key of an output model."""
        key = getattr(model, self.key_field)
        return key if isinstance(key, str) else None


AnySpec = FlowSpec[Any, Any, Any]


def flow_specs(module: str = FLOW_REGISTRY) -> Mapping[str, AnySpec]:
    """The registered flows (`SPECS` of the registry `module`), by name."""
    specs: Mapping[str, AnySpec] = importlib.import_module(module).SPECS
    return specs


def flow_spec(flow: Union[str, AnySpec], module: str = FLOW_REGISTRY) -> AnySpec:
    """`flow` itself, or the registered flow of that name (`KeyError` naming the known ones)."""
    if isinstance(flow, FlowSpec):
        return flow
    specs = flow_specs(module)
    if flow not in specs:
        raise KeyError(f"no flow named {flow!r}; the flows are {', '.join(sorted(specs))}")
    return specs[flow]
