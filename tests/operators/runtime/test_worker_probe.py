"""A dataflow gets one `WorkerProbe` input, at its top level, however many of its operators ask
for one (`route_by_key` and the async steps each call `probe_workers` from inside their own
operator scope)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow, Operator
from bytewax.testing import TestingSource

from flows import shipments, tickets
from operators.config.settings import Settings
from operators.runtime.exchange import PROBE_STEP, route_by_key


def all_steps(steps: list[Operator]) -> Iterator[Operator]:
    for step in steps:
        yield step
        yield from all_steps(step.substeps)


def probes(flow: Dataflow) -> list[str]:
    return [step.step_id for step in all_steps(flow.substeps) if step.step_name == PROBE_STEP]


def test_operators_asking_for_a_probe_share_one_at_the_top_level() -> None:
    flow = Dataflow("probed")
    up = op.input("inp", flow, TestingSource(["a", "b"]))
    first = route_by_key("first", up, lambda item: item)
    route_by_key("second", op.map("values", first, lambda pair: pair[1]), lambda item: item)
    assert probes(flow) == [f"probed.{PROBE_STEP}"]


@pytest.mark.parametrize("build", [shipments.build_flow, tickets.build_flow])
def test_each_flow_has_one_probe(build: Callable[..., Dataflow], settings: Settings) -> None:
    flow = build(settings)
    assert probes(flow) == [f"{flow.flow_id}.{PROBE_STEP}"]
