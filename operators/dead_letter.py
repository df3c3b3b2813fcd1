"""Turn failures found after validation into dead letters.

Validation makes its own dead letters from raw bytes. Later steps hold parsed records, so the
dead letter's raw bytes are the record re-serialised as JSON, and its source is the
`SourceRef` the record has carried since it was read.
"""

from __future__ import annotations

from typing import Any, Optional

import bytewax.operators as op
import orjson
from bytewax.dataflow import Stream, operator
from pydantic import BaseModel

from operators.decisions import LateEvent
from schemas.dead_letter import DeadLetter, ErrorType, FlowName, SourceRef


def _raw_json(value: Any) -> bytes:
    if isinstance(value, BaseModel):
        return value.model_dump_json().encode("utf-8")
    return orjson.dumps(value, default=repr)


def dead_letter_for(
    record: Any,
    *,
    flow: FlowName,
    step: str,
    error_type: ErrorType,
    error: str,
    source: SourceRef,
    key: Optional[str],
) -> DeadLetter:
    """A dead letter for a parsed `record` that failed at `step`."""
    return DeadLetter.build(
        flow=flow,
        step=step,
        error_type=error_type,
        error=error,
        raw=_raw_json(record),
        source=source,
        key=key,
    )


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
