"""Shipments flow, keyed by `shipment_id`.

ingest → validate → enrich_with_carrier_and_hub → decision_window → enrich_with_llm → decisions;
every failure on the way → dead letters.

Run: `python -m bytewax.run flows.shipments` (see README for settings, scaling and recovery).
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.settings import Settings
from operators import io
from operators.clock import StreamClock
from operators.dead_letter import late_events_to_dead_letters, split_failures
from operators.enrich import enrich_with_carrier_and_hub
from operators.llm.operator import map_async
from operators.llm.service import build_service
from operators.llm.shipments import enrich_decision
from operators.records import OutRecord, RawRecord
from operators.reference import ShipmentReference
from operators.surge import shipment_surge
from operators.validate import Limits, count_dead_letters, validate
from operators.windows import decision_window
from schemas.shipments import ShipmentEvent


def build_flow(
    settings: Optional[Settings] = None,
    *,
    source: Optional[Source[RawRecord]] = None,
    sink: Optional[Sink[OutRecord]] = None,
) -> Dataflow:
    """The shipments dataflow; `source`/`sink` replace the configured transports (tests)."""
    settings = settings or Settings()
    io.check_services(settings)
    topic = settings.topic_shipments_events
    source = source or io.embedded_source(settings, topic=topic, generator=shipment_surge)
    sink = sink or io.embedded_sink(settings)
    service = build_service(settings)
    limits = Limits(max_bytes=settings.max_record_bytes, max_depth=settings.max_json_depth)

    flow = Dataflow("shipments")
    raw = io.input_records("ingest", flow, source=source, flow_name="shipments")
    events = validate(
        "validate",
        raw,
        model=ShipmentEvent,
        key_field="shipment_id",
        flow="shipments",
        limits=limits,
    )
    enriched = enrich_with_carrier_and_hub(
        "enrich_with_carrier_and_hub", events.valid, reference=ShipmentReference.load()
    )
    by_shipment = op.key_on("key_by_shipment", enriched.enriched, lambda e: e.event.shipment_id)
    windows = decision_window(
        "decision_window", by_shipment, settings=settings, clock=StreamClock()
    )
    decided = split_failures(
        "collect_llm_failures",
        map_async(
            "enrich_with_llm",
            op.key_rm("unkey_decisions", windows.decisions),
            partial(enrich_decision, service=service, settings=settings),
            settings=settings,
        ),
        flow="shipments",
        key=lambda d: d.shipment_id,
        source=lambda _d: io.derived_source(topic),
    )
    late = late_events_to_dead_letters("late_events", op.key_rm("unkey_late", windows.late))
    dead = op.merge(
        "dead_letters", events.dead_letters, enriched.dead_letters, late, decided.dead_letters
    )
    io.publish(
        "publish_decisions",
        decided.results,
        topic=settings.topic_shipments_decisions,
        key=lambda d: d.shipment_id,
        sink=sink,
        flow_name="shipments",
    )
    io.publish(
        "publish_dead_letters",
        count_dead_letters("count_dead_letters", dead, flow="shipments"),
        topic=settings.topic_shipments_dlq,
        key=lambda d: d.key,
        sink=sink,
        flow_name="shipments",
    )
    return flow


flow = build_flow()
