"""Shipments flow, keyed by `shipment_id`.

ingest → validate → enrich_with_carrier_and_hub → decision_window → enrich_with_llm → decisions;
bad records, late scans, failed enrichments and records a step failed on → dead letters.

Run: `python -m bytewax.run flows.shipments` (see README for settings, scaling and recovery).
The spec (topics, models, surge, reference data) is `flows.registry.SHIPMENTS`; the frame around
these steps (ingest, validate, publish, dead letters) is `operators.runtime.skeleton`.
"""

from __future__ import annotations

from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.registry import SHIPMENTS
from flows.startup import start
from operators.config.settings import Settings
from operators.llm.agent import AgentRunner
from operators.llm.service import build_service
from operators.runtime import skeleton
from operators.runtime.agents import agent_step
from operators.runtime.async_step import StepParams
from operators.runtime.clock import StreamClock
from operators.runtime.exchange import route_by_key
from operators.runtime.records import OutRecord, RawRecord, Valid
from operators.runtime.shutdown import StopSignal
from operators.runtime.skeleton import FlowSteps, Frame
from operators.shipments.agent import ShipmentAgent
from operators.shipments.decision_state import WindowParams
from operators.shipments.domain import EnrichedGroup
from operators.shipments.enrich import enrich_with_carrier_and_hub
from operators.shipments.late_events import late_events_to_dead_letters
from operators.shipments.reference import ShipmentReference
from operators.shipments.windows import decision_window
from schemas.shipments import ShipmentDecision, ShipmentEvent

FLOW = SHIPMENTS.name


def decide(
    frame: Frame[ShipmentReference], events: Stream[Valid[ShipmentEvent]]
) -> FlowSteps[ShipmentDecision]:
    """The shipments flow's own steps, from validated scans to enriched decisions."""
    s, stop = frame.settings, frame.stop
    enricher = AgentRunner(ShipmentAgent(s.llm), build_service(s, flow=FLOW))

    enriched = enrich_with_carrier_and_hub(
        "enrich_with_carrier_and_hub", events, reference=frame.reference
    )
    # Scans cross to their shipment's worker a batch at a time, not one by one.
    by_shipment = route_by_key(
        "key_by_shipment", enriched.enriched, lambda e: e.event.shipment_id, group=EnrichedGroup
    )
    windows = decision_window(
        "decision_window", by_shipment, params=WindowParams.from_settings(s.shipments),
        topic=frame.topics.input, clock=StreamClock(), stop=stop,
    )  # fmt: skip
    decided = agent_step(
        "enrich_with_llm", op.key_rm("unkey_decisions", windows.decisions), enricher.answer,
        params=StepParams.from_settings(s.llm), flow=FLOW, key=lambda d: d.shipment_id,
        source=frame.derived,
        ready=enricher.answer_now, stop=stop,
    )  # fmt: skip
    late = late_events_to_dead_letters("late_events", op.key_rm("unkey_late", windows.late))
    dead = (enriched.dead_letters, late, windows.dead_letters, decided.dead_letters)
    return FlowSteps(output=decided.results, dead_letters=dead)


def build_flow(
    settings: Optional[Settings] = None,
    *,
    source: Optional[Source[RawRecord]] = None,
    sink: Optional[Sink[OutRecord]] = None,
    stop: Optional[StopSignal] = None,
) -> Dataflow:
    """The shipments dataflow; `source`/`sink` replace the configured transports and `stop`
    the graceful stop that SIGTERM/SIGINT request (tests)."""
    return skeleton.build(
        SHIPMENTS, decide, settings, start=start, source=source, sink=sink, stop=stop
    )


def __getattr__(name: str) -> Dataflow:
    """`flow`, built when Bytewax asks for it (`python -m bytewax.run flows.shipments`): importing
    this module contacts no service and configures nothing."""
    if name == "flow":
        return build_flow()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
