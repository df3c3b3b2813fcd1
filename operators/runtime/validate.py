"""Validation: bytes to a topic model, or a dead letter saying why not. It never raises.

`parse_record` is the plain-Python core; `validate` is the operator that runs it and splits the
stream into `valid` and `dead_letters`.

A model may offer a checked fast path, `Model.from_common_shape(obj, bounds)` (`FAST_PATH`): the
model of the parsed JSON object `obj`, built without pydantic when `obj` has the common
well-formed shape the method checks, and `None` for anything else, which `model_validate`
decides (errors included). What it returns must equal what `model_validate(obj,
context=bounds.context())` returns; each model's tests prove it. It accepts flat objects only
(no value a JSON object or array: one level deep), so a record it accepts needs no depth check.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Optional, TypeGuard, TypeVar, Union, cast

import bytewax.operators as op
import orjson
from bytewax.dataflow import Stream, operator
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from operators.config.io import IOSettings
from operators.runtime.guard import PASS_THROUGH, describe
from operators.runtime.records import RawRecord, Valid, source_ref
from schemas.common import (
    TIME_BOUNDS,
    TimeBounds,
    _new,
    _set_dict,
    _set_extra,
    _set_fields_set,
    _set_private,
    utc_now,
)
from schemas.dead_letter import DeadLetter, ErrorType, FlowName, SourceRef

M = TypeVar("M", bound=BaseModel)

_SUMMARY_ERRORS = 3
FAST_PATH = "from_common_shape"
"""The name of a model's checked fast path (see the module docstring)."""


@dataclass(frozen=True)
class Limits:
    """Bounds applied before a record reaches its model, and the range of its timestamps.

    Every timestamp of a record must lie in `[earliest, latest]`, and its event time (when it
    says it happened) must be at most `max_ahead` after the wall clock.
    """

    max_bytes: int = 256 * 1024
    max_depth: int = 32
    earliest: datetime = field(default=datetime(2000, 1, 1, tzinfo=UTC))
    latest: datetime = field(default=datetime(2100, 1, 1, tzinfo=UTC))
    max_ahead: timedelta = timedelta(hours=24)

    @classmethod
    def from_settings(cls, io: IOSettings) -> Limits:
        return cls(
            max_bytes=io.max_record_bytes,
            max_depth=io.max_json_depth,
            earliest=io.event_time_min,
            latest=io.event_time_max,
            max_ahead=timedelta(hours=io.max_future_skew_hours),
        )

    def time_bounds(self, now: datetime) -> TimeBounds:
        """The bounds of the timestamps of a record validated at wall time `now`."""
        return TimeBounds(
            earliest=self.earliest, latest=self.latest, now=now, max_ahead=self.max_ahead
        )


def json_depth(value: Any, bound: int) -> int:
    """Nesting depth of a parsed JSON value, counting stops once `bound` is exceeded."""
    depth, frontier = 0, [value]
    while frontier and depth <= bound:
        depth += 1
        nxt: list[Any] = []
        for item in frontier:
            if isinstance(item, dict):
                nxt.extend(v for v in item.values() if isinstance(v, (dict, list)))
            elif isinstance(item, list):
                nxt.extend(v for v in item if isinstance(v, (dict, list)))
        frontier = nxt
    return depth


def within_depth(value: bytes, obj: Any, bound: int) -> bool:
    """Whether the JSON value `obj`, parsed from `value`, is nested at most `bound` deep.

    A value holds no more levels than opening brackets in its text, so a record with at most
    `bound` of them (counted in C, strings included) needs no scan; only the others are walked
    (`json_depth`). The answer is the same either way."""
    if value.count(b"{") + value.count(b"[") <= bound:
        return True
    return json_depth(obj, bound) <= bound


def _summarise(errors: list[ErrorDetails]) -> str:
    parts = []
    for e in errors[:_SUMMARY_ERRORS]:
        loc = ".".join(str(p) for p in e.get("loc", ())) or "record"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    more = len(errors) - _SUMMARY_ERRORS
    suffix = f"; and {more} more" if more > 0 else ""
    return "; ".join(parts) + suffix


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _key_of(obj: Any, key_field: str) -> Optional[str]:
    value = obj.get(key_field) if isinstance(obj, dict) else None
    return value[:256] if isinstance(value, str) else None


def _dead(
    raw: RawRecord,
    flow: FlowName,
    step: str,
    error_type: ErrorType,
    error: str,
    key: Optional[str],
    errors: Optional[list[ErrorDetails]] = None,
) -> DeadLetter:
    return DeadLetter.build(
        flow=flow, step=step, error_type=error_type, error=error, raw=raw.value,
        source=raw.source_ref(), key=key, errors=errors,
    )  # fmt: skip


@functools.cache
def fast_path(model: type[BaseModel]) -> Optional[Callable[[dict[str, Any], TimeBounds], Any]]:
    """The checked fast path `model` offers (`FAST_PATH`), if any; looked up once per model (a
    pydantic model class answers a missing attribute slowly, through an exception)."""
    found: Optional[Callable[[dict[str, Any], TimeBounds], Any]] = getattr(model, FAST_PATH, None)
    return found


def parse_record(
    raw: RawRecord,
    model: type[M],
    *,
    key_field: str,
    flow: FlowName,
    step: str,
    limits: Limits = Limits(),
    now: Optional[datetime] = None,
    bounds: Optional[dict[str, Any]] = None,
) -> Union[Valid[M], DeadLetter]:
    """Turn one raw record into `Valid[model]` or a `DeadLetter` with a readable reason.

    `now` is the wall clock its event time is compared with (the current time when None);
    `bounds`, when given, is `limits.time_bounds(now).context()` already made (once per batch).
    """

    if raw.error is not None:
        return _dead(raw, flow, step, raw.error_type, raw.error, raw.key)
    size = len(raw.value)
    if size > limits.max_bytes:
        error = f"record is {size} bytes, over the {limits.max_bytes}-byte limit"
        return _dead(raw, flow, step, "too_large", error, raw.key)
    try:
        # JSON read from the bytes was valid UTF-8, not blank, and reads the same as text.
        obj = orjson.loads(raw.value)
    except orjson.JSONDecodeError:
        try:
            text = raw.value.decode("utf-8")
        except UnicodeDecodeError as exc:
            error = f"record is not valid UTF-8: {exc.reason} at byte {exc.start}"
            return _dead(raw, flow, step, "decode_error", error, raw.key)
        if not text.strip():
            return _dead(raw, flow, step, "invalid_json", "record is empty", raw.key)
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            if "depth" in str(exc).lower() or "recursion" in str(exc).lower():
                error = f"JSON nested deeper than {limits.max_depth} levels"
                return _dead(raw, flow, step, "too_deep", error, raw.key)
            error = f"record is not valid JSON: {exc}"
            return _dead(raw, flow, step, "invalid_json", error, raw.key)
    key = raw.key or _key_of(obj, key_field)
    if not isinstance(obj, dict):
        error = f"expected a JSON object, got {_json_type(obj)}"
        return _dead(raw, flow, step, "validation_error", error, key)
    try:
        context = bounds or limits.time_bounds(now if now is not None else utc_now()).context()
        fast = fast_path(model) if limits.max_depth > 0 else None  # flat objects: one level
        valid = fast(obj, context[TIME_BOUNDS]) if fast is not None else None
        if valid is None:
            if not within_depth(raw.value, obj, limits.max_depth):
                error = f"JSON nested deeper than {limits.max_depth} levels"
                return _dead(raw, flow, step, "too_deep", error, key)
            valid = model.model_validate(obj, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        summary = f"{model.__name__} invalid: {_summarise(errors)}"
        return _dead(raw, flow, step, "validation_error", summary, key, errors)
    except Exception as exc:  # a validator raised something else than a validation error
        if isinstance(exc, PASS_THROUGH):
            raise
        error = f"{model.__name__} could not be validated: {describe(exc)}"
        return _dead(raw, flow, step, "validation_error", error, key)
    record_key = getattr(valid, key_field)
    if raw.key is not None and raw.key != record_key:
        return _dead(
            raw,
            flow,
            step,
            "key_mismatch",
            f"message key {raw.key!r} differs from {key_field} {record_key!r}",
            key,
        )
    return Valid(valid, source_ref(raw.topic, raw.partition, raw.offset))


def _is_plain_topic(topic: object) -> bool:
    """Whether `source_ref` takes `topic` as it is (a str of 1-249 characters that stripping
    leaves as it is)."""
    return type(topic) is str and 0 < len(topic) <= 249 and topic == topic.strip()


_set_valid_dict: Callable[[object, dict[str, Any]], None] = vars(Valid)["__dict__"].__set__
"""`Valid.__init__`'s one step: its instance dict set at once."""


def parse_records(
    batch: list[RawRecord],
    model: type[M],
    *,
    key_field: str,
    flow: FlowName,
    step: str,
    limits: Limits,
    bounds: dict[str, Any],
) -> list[Union[Valid[M], DeadLetter]]:
    """`[parse_record(raw, model, ..., bounds=bounds) for raw in batch]`, the common case taken in
    one loop: a record without a transport error, within the size limit, whose bytes are a JSON
    object that `model`'s fast path accepts (`FAST_PATH`) and whose message key, if any, is its
    flow key, is checked here exactly as `parse_record` checks it (size, UTF-8 and JSON by
    `orjson.loads`, depth and schema by the fast path, key); every other record, and any the
    fast path raises for, goes to `parse_record`, which decides it as before."""

    def decided(raw: RawRecord) -> Union[Valid[M], DeadLetter]:
        return parse_record(
            raw, model, key_field=key_field, flow=flow, step=step, limits=limits, bounds=bounds
        )

    fast = fast_path(model) if limits.max_depth > 0 else None  # flat objects: one level
    if fast is None:
        return [decided(raw) for raw in batch]
    time_bounds, max_bytes, loads = bounds[TIME_BOUNDS], limits.max_bytes, orjson.loads
    plain_topic: Optional[str] = None  # the last topic `source_ref` took as it is
    out: list[Union[Valid[M], DeadLetter]] = []
    append = out.append
    for raw in batch:
        value = raw.value
        if raw.error is None and len(value) <= max_bytes:
            try:
                obj = loads(value)
            except orjson.JSONDecodeError:
                obj = None
            if type(obj) is dict:
                try:
                    valid = fast(obj, time_bounds)
                except Exception as exc:  # `parse_record` says why, as a dead letter
                    if isinstance(exc, PASS_THROUGH):
                        raise
                    valid = None
                if valid is not None:
                    record_key = getattr(valid, key_field)
                    if raw.key is None or raw.key == record_key:
                        topic, partition, offset = raw.topic, raw.partition, raw.offset
                        if (
                            type(topic) is str
                            and topic == plain_topic
                            and type(partition) is int
                            and partition >= 0
                            and type(offset) is int
                            and offset >= 0
                        ):  # `source_ref`, inline: values it takes as they are
                            source = _new(SourceRef)
                            _set_dict(
                                source, {"topic": topic, "partition": partition, "offset": offset}
                            )
                            _set_fields_set(source, {"topic", "partition", "offset"})
                            _set_extra(source, None)
                            _set_private(source, None)
                        else:
                            source = source_ref(topic, partition, offset)
                            if _is_plain_topic(topic):
                                plain_topic = topic
                        record = _new(Valid)  # `Valid(valid, source)`, without a call
                        _set_valid_dict(record, {"model": valid, "source": source})
                        append(record)
                        continue
        append(decided(raw))
    return out


@dataclass(frozen=True)
class ValidateOut(Generic[M]):
    """The two outputs of `validate`."""

    valid: Stream[Valid[M]]
    dead_letters: Stream[DeadLetter]


@operator
def validate(
    step_id: str,
    up: Stream[RawRecord],
    *,
    model: type[M],
    key_field: str,
    flow: FlowName,
    limits: Limits = Limits(),
    now: Callable[[], datetime] = utc_now,
) -> ValidateOut[M]:
    """Validate raw records against `model`; failures go to `dead_letters`, never raise.

    Consumes: `RawRecord`. Emits: `Valid[model]` on `valid` and `DeadLetter` (error type, readable
    error, pydantic error list, bounded raw bytes, source coordinates) on `dead_letters`; a
    timestamp outside `limits` (its range, or an event time more than `limits.max_ahead` after
    `now()`, the wall clock, read once per batch) is a `validation_error`. State: none.
    """

    def parse_batch(batch: list[RawRecord]) -> list[Union[Valid[M], DeadLetter]]:
        """Every record of `batch`, against one reading of the wall clock."""
        bounds = limits.time_bounds(now()).context()
        return parse_records(
            batch, model, key_field=key_field, flow=flow, step=step_id, limits=limits,
            bounds=bounds,
        )  # fmt: skip

    parsed = op.flat_map_batch("parse", up, parse_batch)

    def is_valid(item: Union[Valid[M], DeadLetter]) -> TypeGuard[Valid[M]]:
        return isinstance(item, Valid)

    split = op.branch("split", parsed, is_valid)
    # A TypeGuard narrows the trues only; the falses are the rest: the dead letters.
    return ValidateOut(valid=split.trues, dead_letters=cast(Stream[DeadLetter], split.falses))
