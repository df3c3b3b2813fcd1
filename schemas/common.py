"""Shared field types and the base model for every topic contract.

Rules every model follows:

- timestamps are timezone-aware and normalised to UTC (a naive datetime is rejected,
  because a naive datetime handed to Bytewax crashes the dataflow); validated with a
  `TimeBounds` context (as the flows' `validate` step does), every timestamp must lie in its
  range and an `EventTime` must not be ahead of the wall clock by more than its skew;
- every string is bounded;
- unknown fields and unknown enum values are rejected;
- models are frozen, so a record cannot change after it was validated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Optional, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
)

SCHEMA_VERSION: Final = 1
"""Version of the topic contracts; sent as a Kafka header and stored in every output record."""


TIME_BOUNDS = "time_bounds"
"""Key of the `TimeBounds` in a validation context: `Model.model_validate(obj, context=...)`."""


@dataclass(frozen=True)
class TimeBounds:
    """The sane range of the timestamps of an input record, checked when given as context.

    Every timestamp must lie in `[earliest, latest]`; an `EventTime` (when the record says it
    happened) must also be at most `max_ahead` after `now`, the wall clock at validation.
    """

    earliest: datetime
    latest: datetime
    now: Optional[datetime] = None
    max_ahead: Optional[timedelta] = None

    def context(self) -> dict[str, Any]:
        return {TIME_BOUNDS: self}


def _bounds_of(info: ValidationInfo) -> Optional[TimeBounds]:
    context = info.context
    found = context.get(TIME_BOUNDS) if isinstance(context, dict) else None
    return found if isinstance(found, TimeBounds) else None


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is outside the range of UTC datetimes") from None


def _within_bounds(value: datetime, info: ValidationInfo) -> datetime:
    bounds = _bounds_of(info)
    if bounds is not None and not bounds.earliest <= value <= bounds.latest:
        raise ValueError(
            f"{value.isoformat()} is outside the accepted range "
            f"{bounds.earliest.isoformat()} .. {bounds.latest.isoformat()}"
        )
    return value


def _not_ahead(value: datetime, info: ValidationInfo) -> datetime:
    bounds = _bounds_of(info)
    if bounds is None or bounds.now is None or bounds.max_ahead is None:
        return value
    if value - bounds.now > bounds.max_ahead:
        raise ValueError(
            f"{value.isoformat()} is more than {bounds.max_ahead} ahead of the wall clock "
            f"({bounds.now.isoformat()})"
        )
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc), AfterValidator(_within_bounds)]
"""A timezone-aware timestamp, normalised to UTC; naive timestamps are rejected. With a
`TimeBounds` context it must lie in the bounds' range."""

EventTime = Annotated[UtcDatetime, AfterValidator(_not_ahead)]
"""When a record says it happened: a `UtcDatetime` that, with a `TimeBounds` context, is also at
most `max_ahead` after the wall clock (a forecast such as an ETA is a plain `UtcDatetime`)."""

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


R = TypeVar("R", bound=Record)


def _setter(name: str) -> Callable[[object, Any], None]:
    """The setter of `BaseModel`'s attribute `name` (`__dict__` or a slot it declares), called
    directly: a little cheaper than `object.__setattr__`, which looks it up on the class."""
    setter: Callable[[object, Any], None] = vars(BaseModel)[name].__set__
    return setter


_new = object.__new__
_set_dict = _setter("__dict__")
_set_fields_set = _setter("__pydantic_fields_set__")
_set_extra = _setter("__pydantic_extra__")
_set_private = _setter("__pydantic_private__")


def trusted(cls: type[R], values: dict[str, Any], fields_set: set[str]) -> R:
    """An instance of `cls` built from values that were checked already (by a fast path's own
    checks, or valid when they were pickled), without validating them again: what
    `model_construct` does, without its work per field. `values` (every field, in the order
    `cls` declares them) becomes the instance's `__dict__`; `fields_set` its set fields."""
    out = _new(cls)
    _set_dict(out, values)
    _set_fields_set(out, fields_set)
    _set_extra(out, None)
    _set_private(out, None)
    return out


def is_plain(value: object, cls: type[BaseModel]) -> bool:
    """Whether `value` is exactly a `cls` with no extra and no private values: its `__dict__`
    and its fields set say all of it (what a compact pickle writes, `FieldsMask`)."""
    return (
        type(value) is cls
        and value.__pydantic_extra__ is None
        and value.__pydantic_private__ is None
    )


ALL_FIELDS: Final = -1
"""The `FieldsMask` of a fields set that holds every field (the usual case)."""


class FieldsMask:
    """The fields set (`__pydantic_fields_set__`) of a model's instances as an int and back: bit
    `i` stands for the model's `i`-th field, `ALL_FIELDS` for all of them. The compact pickles of
    the items that cross between processes write a mask, not a set of names
    (`operators.shipments.domain`, `operators.tickets.domain`)."""

    __slots__ = ("_all", "_seen", "_sets", "names")

    SEEN = 8
    """Fields sets besides all of them whose masks `mask` keeps (the first it meets)."""

    def __init__(self, cls: type[BaseModel]) -> None:
        self.names: tuple[str, ...] = tuple(cls.model_fields)
        self._all = frozenset(self.names)
        self._seen: list[tuple[frozenset[str], int]] = []
        self._sets: dict[int, frozenset[str]] = {}
        """Mask → the names it stands for (at most 2 ** len(names) entries)."""

    def mask(self, fields_set: set[str]) -> Optional[int]:
        """`fields_set` as a mask; `None` when it holds a name the model does not declare."""
        if fields_set == self._all:
            return ALL_FIELDS
        for seen, mask in self._seen:  # a model's optional fields are unset in a few ways
            if fields_set == seen:
                return mask
        mask = sum(1 << i for i, name in enumerate(self.names) if name in fields_set)
        if mask.bit_count() != len(fields_set):
            return None
        if len(self._seen) < self.SEEN:
            self._seen.append((frozenset(fields_set), mask))
        return mask

    def fields_set(self, mask: int) -> set[str]:
        """The fields set that `mask` stands for, a set of its own."""
        if mask == ALL_FIELDS:
            return set(self.names)
        names = self._sets.get(mask)
        if names is None:
            names = self._sets[mask] = frozenset(
                name for i, name in enumerate(self.names) if mask >> i & 1
            )
        return set(names)


is_plain_id = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}").fullmatch
"""Whether a str is an `Id` that stripping leaves as it is (no whitespace can match)."""

is_utc_text = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)"
).fullmatch
"""Whether a str is a timestamp written `YYYY-MM-DDTHH:MM:SS[.ffffff]` in UTC (`Z` or `+00:00`)."""


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
