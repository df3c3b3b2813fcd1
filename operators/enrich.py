"""Enrichment: a polars join of each batch with the reference data.

`join_shipments` / `join_tickets` are the plain-Python cores (a batch in, enriched records and
dead letters out); the operators run them once per Bytewax batch with `flat_map_batch`, so the
join is columnar over hundreds of records at a time, not a dict lookup per record. The batch is
guarded (`operators.guard`): a record the join raises on (an SLA deadline past the end of the
calendar, say) is a `processing_error` dead letter and the rest of its batch is enriched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeGuard, TypeVar, Union, cast

import bytewax.operators as op
import orjson
import polars as pl
from bytewax.dataflow import Stream, operator
from pydantic import BaseModel

from operators.domain import EnrichedEvent, EnrichedTicket, Valid
from operators.guard import Guarded, guarded_flat_map_batch
from operators.reference import ChannelReference, ShipmentReference
from schemas.dead_letter import DeadLetter, FlowName
from schemas.shipments import ShipmentEvent
from schemas.tickets import TicketMessage

E = TypeVar("E")
M = TypeVar("M", bound=BaseModel)


def _unknown_reference(
    item: Valid[M], step: str, flow: FlowName, key: str, what: str
) -> DeadLetter:
    raw = orjson.dumps(item.model.model_dump(mode="json"))
    return DeadLetter.build(
        flow=flow,
        step=step,
        error_type="unknown_reference",
        error=what,
        raw=raw,
        source=item.source,
        key=key,
    )


def join_shipments(
    batch: list[Valid[ShipmentEvent]], reference: ShipmentReference, *, step: str
) -> list[Union[EnrichedEvent, DeadLetter]]:
    """Join scans with carriers and hubs; an unknown carrier or hub is dead-lettered."""
    if not batch:
        return []
    keys = pl.DataFrame(
        {
            "i": range(len(batch)),
            "carrier_id": [v.model.carrier_id for v in batch],
            "hub_id": [v.model.hub_id for v in batch],
        },
        schema={"i": pl.Int64, "carrier_id": pl.String, "hub_id": pl.String},
    )
    joined = (
        keys.join(reference.carriers, on="carrier_id", how="left")
        .join(reference.hubs, on="hub_id", how="left")
        .sort("i")
        .select("carrier_name", "sla_hours", "reliability", "region", "congestion")
    )
    out: list[Union[EnrichedEvent, DeadLetter]] = []
    for item, (name, sla, reliability, region, congestion) in zip(
        batch, joined.iter_rows(), strict=True
    ):
        ev = item.model
        if name is None or region is None:
            missing = f"carrier {ev.carrier_id!r}" if name is None else f"hub {ev.hub_id!r}"
            what = f"{missing} is not in the reference data"
            out.append(_unknown_reference(item, step, "shipments", ev.shipment_id, what))
            continue
        out.append(
            EnrichedEvent(
                event=ev,
                source=item.source,
                carrier_name=name,
                sla_hours=sla,
                carrier_reliability=reliability,
                region=region,
                hub_congestion=congestion,
                sla_due_at=ev.shipped_at + timedelta(hours=sla),
            )
        )
    return out


def join_tickets(
    batch: list[Valid[TicketMessage]], reference: ChannelReference, *, step: str
) -> list[Union[EnrichedTicket, DeadLetter]]:
    """Join messages with their channel's base priority and response target."""
    if not batch:
        return []
    keys = pl.DataFrame(
        {"i": range(len(batch)), "channel": [v.model.channel for v in batch]},
        schema={"i": pl.Int64, "channel": pl.String},
    )
    joined = (
        keys.join(reference.channels, on="channel", how="left")
        .sort("i")
        .select("base_priority", "response_sla_minutes")
    )
    out: list[Union[EnrichedTicket, DeadLetter]] = []
    for item, (priority, sla_minutes) in zip(batch, joined.iter_rows(), strict=True):
        msg = item.model
        if priority is None:
            what = f"channel {msg.channel!r} is not in the reference data"
            out.append(_unknown_reference(item, step, "tickets", msg.session_id, what))
            continue
        out.append(
            EnrichedTicket(
                message=msg,
                source=item.source,
                base_priority=priority,
                response_sla_minutes=sla_minutes,
            )
        )
    return out


@dataclass(frozen=True)
class EnrichOut(Generic[E]):
    """The two outputs of an enrich operator."""

    enriched: Stream[E]
    dead_letters: Stream[DeadLetter]


def _split(joined: Guarded[Union[E, DeadLetter]]) -> EnrichOut[E]:

    def enriched(item: Union[E, DeadLetter]) -> TypeGuard[E]:
        return not isinstance(item, DeadLetter)

    split = op.branch("split", joined.results, enriched)
    # A TypeGuard narrows the trues only; the falses are the rest: the dead letters.
    dead = op.merge("dead_letters", cast(Stream[DeadLetter], split.falses), joined.dead_letters)
    return EnrichOut(enriched=split.trues, dead_letters=dead)


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
    )  # fmt: skip
    return _split(joined)


@operator
def enrich_with_channel(
    step_id: str, up: Stream[Valid[TicketMessage]], *, reference: ChannelReference
) -> EnrichOut[EnrichedTicket]:
    """Join each batch of messages with the channel's base priority and response target.

    Consumes: `Valid[TicketMessage]`. Emits: `EnrichedTicket` on `enriched`; `DeadLetter`
    (`unknown_reference`, or `processing_error` for a message the join raised on) on
    `dead_letters`. State: none.
    """
    joined = guarded_flat_map_batch(
        "join", up, lambda b: join_tickets(b, reference, step=step_id), flow="tickets",
        key=lambda v: v.model.session_id, source=lambda v: v.source,
    )  # fmt: skip
    return _split(joined)
