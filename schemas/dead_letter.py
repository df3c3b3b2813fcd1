"""The dead-letter contract shared by `shipments.dlq` and `tickets.dlq`."""

from __future__ import annotations

import base64
from typing import Any, Literal, Optional

from pydantic import Field

from schemas.common import (
    SCHEMA_VERSION,
    Id,
    NonNegativeInt,
    Record,
    UtcDatetime,
    deterministic_id,
    utc_now,
)

FlowName = Literal["shipments", "tickets"]
ErrorType = Literal[
    "decode_error",  # bytes are not UTF-8
    "invalid_json",  # text is not one JSON object
    "too_large",  # record over the size bound
    "too_deep",  # JSON nested deeper than the bound
    "validation_error",  # JSON does not match the model
    "key_mismatch",  # message key differs from the record's key field
    "unknown_reference",  # carrier or hub not in the reference data
    "late_event",  # event arrived after its decision window closed
    "consumer_error",  # the source reported an error for this record
    "processing_error",  # a step failed on this record
]

RAW_BOUND = 4096
"""Bytes of the raw input kept in a dead letter; the rest is cut and `raw_truncated` is set."""


class SourceRef(Record):
    """Where the bad input came from."""

    topic: str = Field(min_length=1, max_length=249)
    partition: Optional[NonNegativeInt] = None
    offset: Optional[NonNegativeInt] = None


class FieldError(Record):
    """One entry of pydantic's error list."""

    loc: str = Field(max_length=300)
    msg: str = Field(max_length=500)
    type: str = Field(max_length=100)


class DeadLetter(Record):
    """A record that could not be processed, and why (topics `*.dlq`; key = flow key or null)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    dead_letter_id: Id = Field(
        description="Deterministic id of the dead letter: a hash of flow, step, source topic, "
        "partition, offset and the raw record. A replay after a crash or a restart gives the same "
        "id (delivery is at-least-once): keep the first record per id and drop the rest."
    )
    flow: FlowName
    step: str = Field(min_length=1, max_length=100)
    error_type: ErrorType
    error: str = Field(min_length=1, max_length=2000)
    errors: list[FieldError] = Field(default_factory=list, max_length=50)
    key: Optional[str] = Field(default=None, max_length=256)
    source: SourceRef
    raw_base64: str
    raw_size: NonNegativeInt
    raw_truncated: bool
    failed_at: UtcDatetime

    @classmethod
    def build(
        cls,
        *,
        flow: FlowName,
        step: str,
        error_type: ErrorType,
        error: str,
        raw: bytes,
        source: SourceRef,
        key: Optional[str] = None,
        errors: Optional[list[dict[str, Any]]] = None,
    ) -> DeadLetter:
        """Make a dead letter with a deterministic id and the raw input bounded to RAW_BOUND."""
        kept = raw[:RAW_BOUND]
        field_errors = [
            FieldError(
                loc=".".join(str(p) for p in e.get("loc", ()))[:300] or "$",
                msg=str(e.get("msg", ""))[:500],
                type=str(e.get("type", ""))[:100],
            )
            for e in (errors or [])[:50]
        ]
        return cls(
            dead_letter_id=deterministic_id(
                flow, step, source.topic, source.partition, source.offset, raw
            ),
            flow=flow,
            step=step,
            error_type=error_type,
            error=(error or error_type)[:2000],
            errors=field_errors,
            key=key[:256] if key is not None else None,
            source=source,
            raw_base64=base64.b64encode(kept).decode("ascii"),
            raw_size=len(raw),
            raw_truncated=len(raw) > RAW_BOUND,
            failed_at=utc_now(),
        )
