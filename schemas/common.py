"""Shared field types and the base model for every topic contract.

Rules every model follows:

- timestamps are timezone-aware and normalised to UTC (a naive datetime is rejected,
  because a naive datetime handed to Bytewax crashes the dataflow);
- every string is bounded;
- unknown fields and unknown enum values are rejected;
- models are frozen, so a record cannot change after it was validated.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

SCHEMA_VERSION = 1
"""Version of the topic contracts; sent as a Kafka header and stored in every output record."""


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware timestamp, normalised to UTC; naive timestamps are rejected."""

Id = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")
]
"""An identifier: 1-64 characters of letters, digits and `_ . : -`."""

ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=4000)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=300)]

NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class Record(BaseModel):
    """Base of every topic model: strict, frozen, bounded."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def deterministic_id(*parts: object, length: int = 32) -> str:
    """A stable id from its parts, so a replayed output carries the id it had the first time.

    >>> deterministic_id("SHP-1", "2026-11-27T10:00:00+00:00")
    '...'  # doctest: +SKIP
    """
    text = "\x1f".join(str(part) for part in parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=length // 2).hexdigest()


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
