"""Enrichment of support messages: each batch joined with the channels.

`join_tickets` is the plain-Python core; `enrich_with_channel` runs it once per Bytewax batch
(guarded, see `operators.shipments.enrich` for the pattern; the dead letters it returns leave
with the guard's, through its one branch). The channels table has a few rows: the join is a
lookup in a dict built once from it (`ChannelReference.channel_rows`), which gives what a polars
left join per batch gave, for less CPU.
"""

from __future__ import annotations

from typing import Any, Union, cast

from bytewax.dataflow import Stream, operator

from operators.runtime.enrich import EnrichOut, unknown_reference
from operators.runtime.guard import guarded_flat_map_batch
from operators.runtime.records import Valid
from operators.tickets.domain import EnrichedTicket
from operators.tickets.reference import ChannelReference
from schemas.dead_letter import DeadLetter
from schemas.tickets import TicketMessage


def join_tickets(
    batch: list[Valid[TicketMessage]], reference: ChannelReference, *, step: str
) -> list[Union[EnrichedTicket, DeadLetter]]:
    """Join messages with their channel's base priority and response target."""
    rows = reference.channel_rows
    out: list[Union[EnrichedTicket, DeadLetter]] = []
    for item in batch:
        msg = item.model
        priority, sla_minutes = rows.get(msg.channel, _UNKNOWN)
        if priority is None:
            what = f"channel {msg.channel!r} is not in the reference data"
            out.append(unknown_reference(item, step, "tickets", msg.session_id, what))
            continue
        enriched = _new(EnrichedTicket)  # `domain.made`, without a dict of keyword arguments
        values = enriched.__dict__
        values["message"] = msg
        values["source"] = item.source
        values["base_priority"] = priority
        values["response_sla_minutes"] = sla_minutes
        out.append(enriched)
    return out


_new = object.__new__
_UNKNOWN: tuple[None, Any] = (None, None)
"""What the left join gave a channel the table does not have."""


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
        returned_dead_letters=True,
    )  # fmt: skip
    # The join's own dead letters leave with the guard's: one branch per message.
    return EnrichOut(
        enriched=cast(Stream[EnrichedTicket], joined.results), dead_letters=joined.dead_letters
    )
