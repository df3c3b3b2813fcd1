"""The dead-letter contract shared by every flow's dead-letter topic (`shipments.dlq`, ...)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Optional, SupportsIndex

from pydantic import Field, create_model
from pydantic_core import ErrorDetails

from schemas.common import (
    SCHEMA_VERSION,
    Id,
    NonNegativeInt,
    Record,
    UtcDatetime,
    deterministic_id,
    trusted,
    utc_now,
)

FlowName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*$")]
"""A flow's name (`shipments`, `tickets`, ...: the names of `flows.registry`)."""

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

RawPolicy = Literal["bounded", "hash", "none"]
"""What a dead letter keeps of its raw input: `bounded` the first RAW_BOUND bytes (and the sha256
of all of it), `hash` the sha256 and length only, `none` the length only. A flow's spec gives its
default (`FlowSpec.dead_letter_raw`); `SURGEFLOW_DEAD_LETTER_RAW` wins."""


class SourceRef(Record):
    """Where the bad input came from."""

    topic: str = Field(min_length=1, max_length=249)
    partition: Optional[NonNegativeInt] = None
    offset: Optional[NonNegativeInt] = None

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        """Pickled as `(topic, partition, offset)` (and the fields set, when not all three), not
        as pydantic's state dict: every scan that crosses to another process carries one
        (`operators.runtime.exchange`). A subclass, or one with extra or private values, is
        pickled as pydantic pickles it; pickles of pydantic's form still load. JSON unchanged."""
        if (
            type(self) is not SourceRef
            or self.__pydantic_extra__ is not None
            or self.__pydantic_private__ is not None
        ):
            return super().__reduce_ex__(protocol)
        values = self.__dict__
        fields_set = self.__pydantic_fields_set__
        if len(fields_set) == 3:
            return (_source_ref, (values["topic"], values["partition"], values["offset"]))
        return (
            _source_ref,
            (values["topic"], values["partition"], values["offset"], tuple(sorted(fields_set))),
        )


_ALL_SET = ("topic", "partition", "offset")


def _source_ref(
    topic: str,
    partition: Optional[int],
    offset: Optional[int],
    fields_set: tuple[str, ...] = _ALL_SET,
) -> SourceRef:
    """A `SourceRef` unpickled from its values (`SourceRef.__reduce_ex__`): they were valid when
    it was pickled, so they are not validated again."""
    return trusted(
        SourceRef, {"topic": topic, "partition": partition, "offset": offset}, set(fields_set)
    )


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
    raw_base64: str = Field(
        description="The raw input as base64: its first 4 KiB with `raw_policy` `bounded`, "
        "empty with `hash` and `none`"
    )
    raw_size: NonNegativeInt
    raw_truncated: bool = Field(description="Some of the raw input is not in `raw_base64`")
    raw_policy: RawPolicy = Field(
        default="bounded",
        description="What was kept of the raw input: `bounded` (first 4 KiB), `hash` (sha256 "
        "and length) or `none` (length); records without it are `bounded`",
    )
    raw_sha256: Optional[str] = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Hex sha256 of the whole raw input (`bounded` and `hash`); it identifies a "
        "record, it does not hide a short or guessable one",
    )
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
        errors: Optional[Sequence[ErrorDetails]] = None,
        keep_raw: RawPolicy = "bounded",
    ) -> DeadLetter:
        """Make a dead letter with a deterministic id, keeping of `raw` what `keep_raw` says.

        Flows build bounded dead letters and apply their policy where dead letters leave the
        flow (`operators.connectors.io.publish_dead_letters`, `kept`)."""
        kept = raw[:RAW_BOUND] if keep_raw == "bounded" else b""
        digest = None if keep_raw == "none" else hashlib.sha256(raw).hexdigest()
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
            raw_truncated=len(raw) > len(kept),
            raw_policy=keep_raw,
            raw_sha256=digest,
            failed_at=utc_now(),
        )

    def kept(self, policy: RawPolicy) -> DeadLetter:
        """This dead letter with no more of the raw input than `policy` allows (never more than
        it holds: a `hash` letter stays `hash` under `bounded`)."""
        order = {"bounded": 0, "hash": 1, "none": 2}
        if order[policy] <= order[self.raw_policy]:
            return self
        digest = self.raw_sha256 if policy == "hash" else None
        return self.model_copy(
            update={
                "raw_base64": "",
                "raw_truncated": self.raw_size > 0,
                "raw_policy": policy,
                "raw_sha256": digest,
            }
        )


def dead_letter_of(flow: str) -> type[DeadLetter]:
    """`DeadLetter` whose `flow` is `flow`: the model of that flow's dead-letter topic, so that
    its JSON Schema says which flow writes it."""
    only: Any = Literal[flow]
    model: type[DeadLetter] = create_model(
        "DeadLetter",
        __base__=DeadLetter,
        __doc__=DeadLetter.__doc__,
        flow=(only, Field(description=f"Always `{flow}`: this topic's flow")),
    )
    return model
