"""Transport-neutral records that cross the edges of a flow (no Bytewax import).

Sources emit `RawRecord`s (bytes plus where they came from); sinks take `OutRecord`s (topic, key,
JSON bytes, headers). A Kafka backend, the surge generator and the JSON-lines file all speak these,
so flows never change when the transport does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Optional, TypeVar

from pydantic import BaseModel

from schemas.common import SCHEMA_VERSION, _set_extra, _set_fields_set, _set_private
from schemas.common import _set_dict as _set_model_dict
from schemas.dead_letter import ErrorType, SourceRef

CONTENT_TYPE = b"application/json"

M = TypeVar("M", bound=BaseModel)


def _dict_setter(cls: type) -> Callable[[object, dict[str, Any]], None]:
    """The `__set__` of `cls`'s `__dict__` descriptor, called directly (what
    `object.__setattr__(obj, "__dict__", ...)` finds on the class each time).

    The records of this module are frozen dataclasses whose `__init__` sets the instance's
    `__dict__` in one call (a frozen dataclass's own `__init__` makes one `object.__setattr__`
    call per field); equality, hashing, `repr`, `dataclasses.replace` and pickling are the
    dataclass's."""
    setter: Callable[[object, dict[str, Any]], None] = vars(cls)["__dict__"].__set__
    return setter


@dataclass(frozen=True, init=False)
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

    def __init__(
        self,
        value: bytes,
        key: Optional[str] = None,
        topic: str = "unknown",
        partition: Optional[int] = None,
        offset: Optional[int] = None,
        error: Optional[str] = None,
        error_type: ErrorType = "consumer_error",
    ) -> None:
        _set_raw_dict(
            self,
            {
                "value": value, "key": key, "topic": topic, "partition": partition,
                "offset": offset, "error": error, "error_type": error_type,
            },
        )  # fmt: skip

    def source_ref(self) -> SourceRef:
        return source_ref(self.topic, self.partition, self.offset)


_set_raw_dict = _dict_setter(RawRecord)


def source_ref(topic: str, partition: Optional[int], offset: Optional[int]) -> SourceRef:
    """`SourceRef(topic=topic, partition=partition, offset=offset)`, built without running its
    validators when the values need none (a topic of 1-249 characters that stripping leaves as
    it is, partition and offset None or non-negative ints); other values are validated (and
    normalised or refused) as before."""
    if (
        type(topic) is str
        and 0 < len(topic) <= 249
        and topic == topic.strip()
        and (partition is None or (type(partition) is int and partition >= 0))
        and (offset is None or (type(offset) is int and offset >= 0))
    ):
        ref = _new(SourceRef)  # `trusted(SourceRef, values, fields_set)`, written out
        _set_model_dict(ref, {"topic": topic, "partition": partition, "offset": offset})
        _set_fields_set(ref, {"topic", "partition", "offset"})
        _set_extra(ref, None)
        _set_private(ref, None)
        return ref
    return SourceRef(topic=topic, partition=partition, offset=offset)


@dataclass(frozen=True, init=False)
class OutRecord:
    """One output record: the topic, the flow key, the JSON value and headers."""

    topic: str
    key: Optional[str]
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)

    def __init__(
        self,
        topic: str,
        key: Optional[str],
        value: bytes,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        _set_out_dict(self, {"topic": topic, "key": key, "value": value, "headers": headers})


_set_out_dict = _dict_setter(OutRecord)


def to_out_record(topic: str, key: Optional[str], model: BaseModel) -> OutRecord:
    """Serialise a topic model to an `OutRecord` with content-type and schema-version headers.

    The JSON is made as bytes once (what `model_dump_json()` returns, before it is decoded to
    text), by the model's own `json_bytes()` when it has one (`JSON_BYTES`: it must return
    those same bytes), and the headers are shared by every record of a model class."""
    cls = model.__class__
    found = _serialisers.get(cls)
    if found is None:
        found = _serialisers[cls] = _serialiser(cls)
    serialise, headers = found
    record = _new(OutRecord)  # `OutRecord(topic, key, value, headers)`, its `__init__` inline
    _set_out_dict(
        record, {"topic": topic, "key": key, "value": serialise(model), "headers": headers}
    )
    return record


def _serialiser(
    model: type[BaseModel],
) -> tuple[Callable[[BaseModel], bytes], tuple[tuple[str, bytes], ...]]:
    """What `to_out_record` writes a `model` with: its JSON serialiser (`json_bytes`, else
    pydantic's) and headers."""
    own = _json_bytes(model)
    serialise: Callable[[BaseModel], bytes] = (
        own if own is not None else model.__pydantic_serializer__.to_json
    )
    return serialise, _headers(model)


_serialisers: dict[
    type[BaseModel], tuple[Callable[[BaseModel], bytes], tuple[tuple[str, bytes], ...]]
] = {}
"""`_serialiser` of each model class met, read without a call."""
_new = object.__new__


JSON_BYTES = "json_bytes"
"""The method a model may offer that returns its JSON faster, byte for byte what
`model.__pydantic_serializer__.to_json(model)` returns (each model's tests prove it)."""


@functools.cache
def _json_bytes(model: type[BaseModel]) -> Optional[Callable[[BaseModel], bytes]]:
    """`model`'s `json_bytes` method, if any, looked up once per class: a pydantic model answers
    a missing attribute slowly, through an exception (about 1.5 µs per record otherwise)."""
    found: Optional[Callable[[BaseModel], bytes]] = getattr(model, JSON_BYTES, None)
    return found


@functools.cache
def _headers(model: type[BaseModel]) -> tuple[tuple[str, bytes], ...]:
    return (
        ("content-type", CONTENT_TYPE),
        ("schema-version", str(SCHEMA_VERSION).encode("ascii")),
        ("schema", model.__name__.encode("ascii")),
    )


@dataclass(frozen=True, init=False)
class Valid(Generic[M]):
    """A record that passed validation, with where it came from."""

    model: M
    source: SourceRef

    def __init__(self, model: M, source: SourceRef) -> None:
        _set_valid_dict(self, {"model": model, "source": source})


_set_valid_dict = _dict_setter(Valid)
