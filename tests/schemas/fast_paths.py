"""What the fast-path tests of the schemas share: timestamps as text, the bounds to check under,
and the check that a fast path gives exactly what validation gives.

A fast path (`event_from_common_shape`, `message_from_common_shape`) builds a model from a
parsed JSON object of its schema's common shape without validating it, and answers `None` for
anything else. `assert_agrees` holds it to validation: whenever it answers, validation gives an
equal model (field values, their types and order, fields set, time zones, JSON bytes), and a
draw of the common shape by construction must take it (else the test would prove nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Optional, TypeVar

from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from operators.runtime.validate import Limits
from schemas.common import TimeBounds

M = TypeVar("M", bound=BaseModel)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
BOUNDS = Limits().time_bounds(NOW)
ID = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}\Z")
WHEN = st.datetimes(min_value=datetime(1999, 12, 1), max_value=datetime(2027, 6, 1))
FRACTION = st.sampled_from(["", ".0", ".5", ".123", ".000001", ".999999", ".1234567"])
ZONE = st.sampled_from(["Z", "+00:00", "z", "+01:00", "-05:30", "", "+0000", " "])
ODD_TIMES = [
    "2026-02-30T00:00:00Z", "2026-12-06T24:00:00Z", "2026-12-06T23:59:60Z",
    "2126-01-01T00:00:00Z", "1999-01-01T00:00:00Z", "2026-12-08T12:00:01Z",
    "2026-12-07T12:00:00Z", "2026-12-07T12:00:00.000001Z", "２026-12-06T00:00:00Z",
    "2026-12-06T00:00:00+00:00 ", "", "now",
]  # fmt: skip
"""Timestamps at the edges: impossible dates, out of range, ahead of the wall clock, not ASCII."""


@st.composite
def times(draw: st.DrawFn, common: bool) -> str:
    """A timestamp as text: in the common form, or in any of the others validation reads."""
    when = draw(WHEN)
    if common:
        return (
            when.strftime("%Y-%m-%dT%H:%M:%S")
            + draw(FRACTION.filter(lambda f: len(f) < 8))
            + draw(st.sampled_from(["Z", "+00:00"]))
        )
    text = when.strftime(draw(st.sampled_from(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"])))
    return text + draw(FRACTION) + draw(ZONE)


@st.composite
def other_bounds(draw: st.DrawFn) -> TimeBounds:
    """Time bounds other than `BOUNDS`: earlier and later limits, with and without a wall clock."""
    ahead: Optional[timedelta] = draw(st.sampled_from([None, timedelta(0), timedelta(hours=1)]))
    earliest = draw(
        st.sampled_from([datetime(2000, 1, 1), datetime(2015, 1, 1), datetime(2026, 12, 6)])
    )
    latest = draw(
        st.sampled_from([datetime(2010, 1, 1), datetime(2026, 12, 6, 12), datetime(2027, 1, 1)])
    )
    return TimeBounds(
        earliest=earliest.replace(tzinfo=UTC), latest=latest.replace(tzinfo=UTC),
        now=NOW if ahead is not None else None, max_ahead=ahead,
    )  # fmt: skip


def spoil(
    draw: st.DrawFn,
    fields: dict[str, Any],
    wild: dict[str, st.SearchStrategy[Any]],
    defaults: tuple[str, ...],
    required: frozenset[str],
) -> bool:
    """Leave some of `defaults` out of `fields`, then, in some draws, give a few fields a value of
    `wild` (values validation changes or refuses), add an unknown field or drop a `required`
    one; whether `fields` is still of the common shape by construction."""
    for name in defaults:
        if draw(st.booleans()):
            del fields[name]  # left out: the default
    count = draw(st.sampled_from([0, 0, 0, 1, 1, 1, 2, 3]))  # mostly one wild field or none
    spoilt = set(draw(st.lists(st.sampled_from(sorted(wild)), min_size=count, max_size=count)))
    for name in spoilt:
        fields[name] = draw(wild[name])
    if draw(st.integers(0, 9)) == 0:
        fields["extra"] = 1
        spoilt.add("extra")
    if draw(st.integers(0, 9)) == 0:
        missing = draw(st.sampled_from(sorted(required)))
        del fields[missing]
        spoilt.add(missing)
    return not spoilt


def validated(model: type[M], obj: dict[str, Any], bounds: TimeBounds) -> Optional[M]:
    """`obj` validated as `model` under `bounds`, or None if validation refuses it."""
    try:
        return model.model_validate(obj, context=bounds.context())
    except ValidationError:
        return None


def assert_same(fast: BaseModel, slow: BaseModel) -> None:
    """`fast` is `slow` in every respect a reader of the model can see."""
    assert fast == slow
    assert fast.__dict__ == slow.__dict__
    assert list(fast.__dict__) == list(slow.__dict__)
    assert [type(v) for v in fast.__dict__.values()] == [type(v) for v in slow.__dict__.values()]
    assert fast.model_fields_set == slow.model_fields_set
    assert (fast.__pydantic_extra__, fast.__pydantic_private__) == (None, None)
    assert slow.__pydantic_extra__ is None and slow.__pydantic_private__ is None
    assert all(v.tzinfo is UTC for v in fast.__dict__.values() if isinstance(v, datetime))
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_dump() == slow.model_dump()


def assert_agrees(
    fast_path: Callable[[dict[str, Any], TimeBounds], Optional[M]],
    model: type[M],
    drawn: tuple[dict[str, Any], bool],
    bounds: TimeBounds,
) -> None:
    """`fast_path` answers only what validation accepts, with the model validation gives, and
    answers every draw of the common shape that validation accepts (`drawn`: the object and
    whether it is of the common shape by construction)."""
    obj, common = drawn
    slow = validated(model, obj, bounds)
    fast = fast_path(obj, bounds)
    if common and slow is not None:
        assert fast is not None, "an object of the common shape missed the fast path"
    if fast is not None:
        assert slow is not None, "the fast path accepted what validation refuses"
        assert_same(fast, slow)
