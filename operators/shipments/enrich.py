"""Enrichment of shipment scans: each batch joined with carriers and hubs.

`join_shipments` is the plain-Python core (a batch in, enriched records and dead letters out);
`enrich_with_carrier_and_hub` runs it once per Bytewax batch with `flat_map_batch`. The reference
tables are small (tens of rows): the join is a lookup in dicts built once from the polars tables
(`ShipmentReference.carrier_rows`, `hub_rows`), which measured cheaper than a polars join per
batch (benchmarks/rules_path.py; docs/BENCHMARKS.md). The batch is guarded
(`operators.runtime.guard`): a record the join raises on (an SLA deadline past the end of the
calendar, say) is a `processing_error` dead letter and the rest of its batch is enriched.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Union, cast

from bytewax.dataflow import Stream, operator

from operators.runtime.enrich import EnrichOut, unknown_reference
from operators.runtime.guard import guarded_flat_map_batch
from operators.runtime.memo import remember
from operators.runtime.records import Valid
from operators.shipments.domain import EnrichedEvent
from operators.shipments.reference import ShipmentReference
from schemas.dead_letter import DeadLetter
from schemas.shipments import ShipmentEvent


def join_shipments(
    batch: list[Valid[ShipmentEvent]], reference: ShipmentReference, *, step: str
) -> list[Union[EnrichedEvent, DeadLetter]]:
    """Join scans with carriers and hubs; an unknown carrier or hub is dead-lettered."""
    carriers, hubs = reference.carrier_rows, reference.hub_rows
    out: list[Union[EnrichedEvent, DeadLetter]] = []
    for item in batch:
        ev = item.model
        carrier, hub = carriers.get(ev.carrier_id), hubs.get(ev.hub_id)
        if carrier is None or hub is None:
            missing = f"carrier {ev.carrier_id!r}" if carrier is None else f"hub {ev.hub_id!r}"
            what = f"{missing} is not in the reference data"
            out.append(unknown_reference(item, step, "shipments", ev.shipment_id, what))
            continue
        (name, sla, reliability), (region, congestion) = carrier, hub
        due = _hours(sla)
        out.append(  # positional, in field order
            EnrichedEvent(
                ev, item.source, name, sla, reliability, region, congestion, ev.shipped_at + due
            )
        )
    return out


_SLA: dict[float, timedelta] = {}
"""`timedelta(hours=h)` of the SLA hours seen (a few, one per carrier's SLA)."""
MAX_SLA = 1024


def _hours(hours: float) -> timedelta:
    """`timedelta(hours=hours)`, made once per value."""
    found = _SLA.get(hours)
    if found is None:
        found = remember(_SLA, MAX_SLA, hours, timedelta(hours=hours))
    return found


@operator
def enrich_with_carrier_and_hub(
    step_id: str, up: Stream[Valid[ShipmentEvent]], *, reference: ShipmentReference
) -> EnrichOut[EnrichedEvent]:
    """Join each batch of scans with the carrier SLA and hub region/congestion.

    Consumes: `Valid[ShipmentEvent]`. Emits: `EnrichedEvent` on `enriched`; `DeadLetter`
    (`unknown_reference`, or `processing_error` for a scan the join raised on) on
    `dead_letters`. State: none.
    """
    joined = guarded_flat_map_batch(
        "join", up, lambda b: join_shipments(b, reference, step=step_id), flow="shipments",
        key=lambda v: v.model.shipment_id, source=lambda v: v.source,
        returned_dead_letters=True,
    )  # fmt: skip
    # The join's own dead letters leave with the guard's: one branch per scan.
    return EnrichOut(
        enriched=cast(Stream[EnrichedEvent], joined.results), dead_letters=joined.dead_letters
    )
