"""Turn failures found after validation into dead letters.

Validation makes its own dead letters from raw bytes. Later steps hold parsed records, so the
dead letter's raw bytes are the record re-serialised as JSON, and its source is the
`SourceRef` the record has carried since it was read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Optional, TypeVar, Union

import bytewax.operators as op
import orjson
from bytewax.dataflow import Stream, operator
from pydantic import BaseModel

from operators.decisions import LateEvent
from operators.llm.operator import AsyncFailure
from schemas.dead_letter import DeadLetter, ErrorType, FlowName, SourceRef

Y = TypeVar("Y")


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


@dataclass(frozen=True)
class FailuresOut(Generic[Y]):
    """Results of an async step, split from the items it failed on."""

    results: Stream[Y]
    dead_letters: Stream[DeadLetter]


@operator
def split_failures(
    step_id: str,
    up: Stream[Union[Y, AsyncFailure]],
    *,
    flow: FlowName,
    key: Callable[[Any], Optional[str]],
    source: Callable[[Any], SourceRef],
) -> FailuresOut[Y]:
    """Split the output of `map_async` into results and dead letters for the failed items.

    Consumes: results or `AsyncFailure`s. Emits: results on `results`; a `processing_error`
    `DeadLetter` per failure (the failed item re-serialised, with its source) on `dead_letters`.
    State: none.
    """
    split = op.branch("split", up, lambda item: not isinstance(item, AsyncFailure))

    def to_dead_letter(failure: AsyncFailure) -> DeadLetter:
        return dead_letter_for(
            failure.item,
            flow=flow,
            step=step_id,
            error_type="processing_error",
            error=f"{failure.error_type}: {failure.error}",
            source=source(failure.item),
            key=key(failure.item),
        )

    return FailuresOut(
        results=split.trues, dead_letters=op.map("dead_letter", split.falses, to_dead_letter)
    )


@operator
def late_events_to_dead_letters(step_id: str, up: Stream[LateEvent]) -> Stream[DeadLetter]:
    """Dead-letter late scans (`late_event`) so they are visible, not dropped."""
    return op.map("dead_letter", up, lambda late: late_event_dead_letter(late, step=step_id))
