"""Transport-neutral records that cross the edges of a flow (no Bytewax import).

Sources emit `RawRecord`s (bytes plus where they came from); sinks take `OutRecord`s (topic, key,
JSON bytes, headers). A Kafka backend, the surge generator and the JSON-lines file all speak these,
so flows never change when the transport does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Generic, Optional, TypeVar

from pydantic import BaseModel

from schemas.common import SCHEMA_VERSION
from schemas.dead_letter import ErrorType, SourceRef

CONTENT_TYPE = b"application/json"

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RawRecord:
    """One input record as bytes, with its origin (topic/partition/offset when known)."""

    value: bytes
    key: Optional[str] = None
    topic: str = "unknown"
    partition: Optional[int] = None
    offset: Optional[int] = None
    error: Optional[str] = None
    """Set by a transport that could not deliver this record intact (validation dead-letters it)."""
    error_type: ErrorType = "consumer_error"

    def source_ref(self) -> SourceRef:
        return SourceRef(topic=self.topic, partition=self.partition, offset=self.offset)


@dataclass(frozen=True)
class OutRecord:
    """One output record: the topic, the flow key, the JSON value and headers."""

    topic: str
    key: Optional[str]
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)


def to_out_record(topic: str, key: Optional[str], model: BaseModel) -> OutRecord:
    """Serialise a topic model to an `OutRecord` with content-type and schema-version headers.

    The JSON is made as bytes once (what `model_dump_json()` returns, before it is decoded to
    text) and the headers are shared by every record of a model class."""
    return OutRecord(
        topic=topic,
        key=key,
        value=model.__pydantic_serializer__.to_json(model),
        headers=_headers(model.__class__),
    )


@functools.cache
def _headers(model: type[BaseModel]) -> tuple[tuple[str, bytes], ...]:
    return (
        ("content-type", CONTENT_TYPE),
        ("schema-version", str(SCHEMA_VERSION).encode("ascii")),
        ("schema", model.__name__.encode("ascii")),
    )


@dataclass(frozen=True)
class Valid(Generic[M]):
    """A record that passed validation, with where it came from."""

    model: M
    source: SourceRef
