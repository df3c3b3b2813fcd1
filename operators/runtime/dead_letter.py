"""Turn failures found after validation into dead letters.

Validation makes its own dead letters from raw bytes. Later steps hold parsed records, so the
dead letter's raw bytes are the record re-serialised as JSON, and its source is the
`SourceRef` the record has carried since it was read.
"""

from __future__ import annotations

from typing import Any, Optional

import orjson
from pydantic import BaseModel

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
