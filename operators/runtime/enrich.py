"""What the enrich operators of both flows share: their two outputs and their dead letters.

An enrich step joins each batch with reference data (`operators.shipments.enrich`,
`operators.tickets.enrich`); a record whose reference is unknown becomes an `unknown_reference`
dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import orjson
from bytewax.dataflow import Stream
from pydantic import BaseModel

from operators.runtime.records import Valid
from schemas.dead_letter import DeadLetter, FlowName

E = TypeVar("E")
M = TypeVar("M", bound=BaseModel)


def unknown_reference(item: Valid[M], step: str, flow: FlowName, key: str, what: str) -> DeadLetter:
    """An `unknown_reference` dead letter for `item`, whose reference (`what`) is not known."""
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


@dataclass(frozen=True)
class EnrichOut(Generic[E]):
    """The two outputs of an enrich operator."""

    enriched: Stream[E]
    dead_letters: Stream[DeadLetter]
