"""Scans that arrived after their decision window closed, as dead letters (`late_event`)."""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from operators.runtime.dead_letter import dead_letter_for
from operators.shipments.decisions import LateEvent
from schemas.dead_letter import DeadLetter


def late_event_dead_letter(late: LateEvent, *, step: str) -> DeadLetter:
    """A scan that arrived after its decision window closed."""
    event = late.event.event
    return dead_letter_for(
        event,
        flow="shipments",
        step=step,
        error_type="late_event",
        error=late.reason,
        source=late.event.source,
        key=event.shipment_id,
    )


@operator
def late_events_to_dead_letters(step_id: str, up: Stream[LateEvent]) -> Stream[DeadLetter]:
    """Dead-letter late scans (`late_event`) so they are visible, not dropped."""
    return op.map("dead_letter", up, lambda late: late_event_dead_letter(late, step=step_id))
