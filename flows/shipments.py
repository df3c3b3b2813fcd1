"""Shipments flow, keyed by `shipment_id`.

ingest → validate → enrich_with_carrier_and_hub → decision_window → enrich_with_llm → decisions;
bad records, late scans, failed enrichments and records a step failed on → dead letters.

Run: `python -m bytewax.run flows.shipments` (see README for settings, scaling and recovery).
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.startup import preflight, prepare_process
from operators.config.settings import Settings
from operators.connectors import io
from operators.connectors.sources import until_stopped
from operators.llm.service import build_service
from operators.runtime.agents import agent_step
from operators.runtime.clock import StreamClock
from operators.runtime.records import OutRecord, RawRecord
from operators.runtime.recovery import bytewax_run_argv, check_recovery
from operators.runtime.shutdown import StopSignal, on_signals
from operators.runtime.validate import Limits, validate
from operators.shipments.agent import enrich_decision, enrich_without_llm
from operators.shipments.enrich import enrich_with_carrier_and_hub
from operators.shipments.late_events import late_events_to_dead_letters
from operators.shipments.reference import ShipmentReference
from operators.shipments.surge import shipment_surge
from operators.shipments.windows import decision_window
from schemas.shipments import ShipmentEvent

FLOW = "shipments"


def build_flow(
    settings: Optional[Settings] = None,
    *,
    source: Optional[Source[RawRecord]] = None,
    sink: Optional[Sink[OutRecord]] = None,
    stop: Optional[StopSignal] = None,
) -> Dataflow:
    """The shipments dataflow; `source`/`sink` replace the configured transports and `stop`
    the graceful stop that SIGTERM/SIGINT request (tests)."""
    s = settings or Settings()
    prepare_process(s, flow=FLOW)
    check_recovery(s)
    topic = s.topic_shipments_events
    stop = stop or on_signals(
        s.shutdown_grace_seconds, install=bytewax_run_argv() is not None,
        unbounded_input=source is None and s.kafka_enabled and s.kafka_tail,
    )  # fmt: skip
    source, sink = io.endpoints(s, topic=topic, generator=shipment_surge, source=source, sink=sink)
    preflight(s, flow=FLOW, source=source, sink=sink)
    service = build_service(s, flow=FLOW)
    enrich_with_llm = partial(enrich_decision, service=service, settings=s)
    enrich_at_once = partial(enrich_without_llm, service=service, settings=s)

    flow = Dataflow(FLOW)
    raw = io.input_records("ingest", flow, source=until_stopped(source, stop), flow_name=FLOW)
    events = validate(
        "validate", raw, model=ShipmentEvent, key_field="shipment_id", flow=FLOW,
        limits=Limits.from_settings(s),
    )  # fmt: skip
    enriched = enrich_with_carrier_and_hub(
        "enrich_with_carrier_and_hub", events.valid, reference=ShipmentReference.load()
    )
    by_shipment = op.key_on("key_by_shipment", enriched.enriched, lambda e: e.event.shipment_id)
    windows = decision_window(
        "decision_window", by_shipment, settings=s, clock=StreamClock(), stop=stop
    )
    decided = agent_step(
        "enrich_with_llm", op.key_rm("unkey_decisions", windows.decisions), enrich_with_llm,
        settings=s, flow=FLOW, key=lambda d: d.shipment_id, source=lambda _: io.derived(topic),
        ready=enrich_at_once, stop=stop,
    )  # fmt: skip
    late = late_events_to_dead_letters("late_events", op.key_rm("unkey_late", windows.late))
    unwritable = io.publish(
        "publish_decisions", decided.results, topic=s.topic_shipments_decisions,
        key=lambda d: d.shipment_id, sink=sink, flow_name=FLOW, source=lambda _: io.derived(topic),
    )  # fmt: skip
    dead = op.merge(
        "dead_letters", events.dead_letters, enriched.dead_letters, late, windows.dead_letters,
        decided.dead_letters, unwritable,
    )  # fmt: skip
    io.publish_dead_letters(
        "publish_dead_letters", dead, topic=s.topic_shipments_dlq, sink=sink, flow_name=FLOW,
        keep_raw=s.dead_letter_raw,
    )  # fmt: skip
    return flow


def __getattr__(name: str) -> Dataflow:
    """`flow`, built when Bytewax asks for it (`python -m bytewax.run flows.shipments`): importing
    this module contacts no service and configures nothing."""
    if name == "flow":
        return build_flow()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
