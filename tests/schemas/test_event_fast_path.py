"""`ShipmentEvent.from_common_shape` gives exactly what `ShipmentEvent.model_validate` gives.

Hypothesis draws parsed JSON objects around the common shape: every field well formed, or one or
several of them as validation changes them (padded identifiers and notes, other time zones and
spellings of timestamps, ints as floats or strings) or refuses them (bad characters, unknown scan
types, impossible dates, timestamps out of range or ahead of the wall clock, a scan before its
shipping, negative or huge delays, long notes, unknown or missing fields). Whenever the fast path
answers, validation gives an equal model: the same field values, fields set, time zones and JSON
bytes. The well-formed draws must take the fast path (else it would prove nothing).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Optional

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import schemas.shipments as shipments
from operators.runtime.validate import Limits
from schemas.common import TimeBounds
from schemas.shipments import ShipmentEvent, event_from_common_shape

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
BOUNDS = Limits().time_bounds(NOW)
ID = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}\Z")
WHEN = st.datetimes(min_value=datetime(1999, 12, 1), max_value=datetime(2027, 6, 1))
FRACTION = st.sampled_from(["", ".0", ".5", ".123", ".000001", ".999999", ".1234567"])
ZONE = st.sampled_from(["Z", "+00:00", "z", "+01:00", "-05:30", "", "+0000", " "])


@st.composite
def times(draw: st.DrawFn, common: bool) -> str:
    """A timestamp as text: in the common form, or in any of the others validation reads."""
    when = draw(WHEN)
    if common:
        return (
            when.strftime("%Y-%m-%dT%H:%M:%S")
            + draw(FRACTION.filter(lambda f: len(f) < 8))
            + (draw(st.sampled_from(["Z", "+00:00"])))
        )
    text = when.strftime(draw(st.sampled_from(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"])))
    return text + draw(FRACTION) + draw(ZONE)


COMMON: dict[str, st.SearchStrategy[Any]] = {
    "event_id": ID,
    "shipment_id": ID,
    "carrier_id": ID,
    "hub_id": ID,
    "scan_type": st.sampled_from(sorted(shipments._SCAN_TYPES)),
    "occurred_at": times(True),
    "shipped_at": times(True),
    "eta": st.one_of(st.none(), times(True)),
    "delay_minutes": st.integers(min_value=0, max_value=100_000),
    "note": st.one_of(st.none(), st.text(max_size=60).map(str.strip)),
}
"""Values of the common shape (the fast path's)."""

ODD = [
    "2026-02-30T00:00:00Z", "2026-12-06T24:00:00Z", "2026-12-06T23:59:60Z",
    "2126-01-01T00:00:00Z", "1999-01-01T00:00:00Z", "2026-12-08T12:00:01Z",
    "2026-12-07T12:00:00Z", "2026-12-07T12:00:00.000001Z", "２026-12-06T00:00:00Z",
    "2026-12-06T00:00:00+00:00 ", "", "now",
]  # fmt: skip
"""Timestamps at the edges: impossible dates, out of range, ahead of the wall clock, not ASCII."""
PAD = st.sampled_from([" ", "\t", "\u00a0", "\u2003", "\x1c", "\n"])
WILD: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.one_of(
        st.builds(lambda p, i: p + i, PAD, ID),
        st.text(max_size=70),
        st.integers(),
        ID.map(lambda i: i * 5),
    ),
    "shipment_id": st.one_of(st.builds(lambda i, p: i + p, ID, PAD), st.just(""), st.none()),
    "carrier_id": st.sampled_from(["CAR-1 ", "-CAR", "CAR/1", "ÇAR", "CAR\u0661", 7]),
    "hub_id": st.sampled_from(["HUB 1", "", "H" * 65, ["HUB-1"]]),
    "scan_type": st.sampled_from(["Delivered", " delivered", "delivered ", "lost", "", 3, None]),
    "occurred_at": st.one_of(times(False), st.integers(0, 2_000_000_000), st.sampled_from(ODD)),
    "shipped_at": st.one_of(times(False), st.sampled_from(["1999-12-31T23:59:59Z", None])),
    "eta": st.one_of(
        times(False), st.sampled_from(["2100-01-01T00:00:00.000001Z", "2101-01-01T00:00:00Z", 0])
    ),
    "delay_minutes": st.one_of(
        st.sampled_from([-1, 100_001, True, False, 5.0, "5", None, 10**30]), st.floats()
    ),
    "note": st.one_of(
        st.builds(lambda p, t: p + t, PAD, st.text(max_size=20)),
        st.integers(3995, 4005).map(lambda n: "a" * n),
        st.sampled_from([5, ["a"], b"x".decode()]),
    ),
}
"""Values validation changes or refuses."""


@st.composite
def objects(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A parsed scan and whether it is of the common shape by construction."""
    fields = {name: draw(value) for name, value in COMMON.items()}
    first, second = sorted([fields["occurred_at"], fields["shipped_at"]])
    fields["shipped_at"], fields["occurred_at"] = first, second  # the scan after the shipping
    for name in ("eta", "delay_minutes", "note"):
        if draw(st.booleans()):
            del fields[name]  # left out: the default
    count = draw(st.sampled_from([0, 0, 0, 1, 1, 1, 2, 3]))  # mostly one wild field or none
    wild = set(draw(st.lists(st.sampled_from(sorted(WILD)), min_size=count, max_size=count)))
    for name in wild:
        fields[name] = draw(WILD[name])
    if draw(st.integers(0, 9)) == 0:
        fields["extra"] = 1
        wild.add("extra")
    if draw(st.integers(0, 9)) == 0:
        missing = draw(st.sampled_from(sorted(shipments._EVENT_REQUIRED)))
        del fields[missing]
        wild.add(missing)
    return fields, not wild


SCAN = {
    "event_id": "E1", "shipment_id": "S1", "carrier_id": "C1", "hub_id": "H1",
    "scan_type": "delay", "occurred_at": "2026-12-06T10:00:00Z",
    "shipped_at": "2026-12-06T09:00:00+00:00",
}  # fmt: skip


def validated(obj: dict[str, Any], bounds: TimeBounds) -> Optional[ShipmentEvent]:
    try:
        return ShipmentEvent.model_validate(obj, context=bounds.context())
    except ValidationError:
        return None


def assert_same(fast: ShipmentEvent, slow: ShipmentEvent) -> None:
    assert fast == slow
    assert fast.__dict__ == slow.__dict__
    assert list(fast.__dict__) == list(slow.__dict__)
    assert [type(v) for v in fast.__dict__.values()] == [type(v) for v in slow.__dict__.values()]
    assert fast.model_fields_set == slow.model_fields_set
    assert (fast.__pydantic_extra__, fast.__pydantic_private__) == (None, None)
    assert slow.__pydantic_extra__ is None and slow.__pydantic_private__ is None
    times = [fast.occurred_at, fast.shipped_at, fast.eta]
    assert all(t is None or t.tzinfo is UTC for t in times)
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_dump() == slow.model_dump()


@settings(max_examples=1500, deadline=None)
@given(objects())
@example(({**SCAN, "occurred_at": "2026-12-07T12:00:00Z", "eta": None, "note": ""}, True))
@example(({**SCAN, "delay_minutes": True}, False))
@example(({**SCAN, "note": "a" * 4001}, False))
@example(({**SCAN, "note": "a" * 4000}, True))
@example(({**SCAN, "eta": "2100-01-01T00:00:00.000001Z"}, False))
def test_the_fast_path_gives_what_validation_gives(drawn: tuple[dict[str, Any], bool]) -> None:
    obj, common = drawn
    slow = validated(obj, BOUNDS)
    fast = event_from_common_shape(obj, BOUNDS)
    if common and slow is not None:
        assert fast is not None, "a scan of the common shape missed the fast path"
    if fast is not None:
        assert slow is not None, "the fast path accepted what validation refuses"
        assert_same(fast, slow)


@settings(max_examples=1000, deadline=None)
@given(
    objects(),
    st.sampled_from([None, timedelta(0), timedelta(hours=1)]),
    st.sampled_from([datetime(2000, 1, 1), datetime(2015, 1, 1), datetime(2026, 12, 6)]),
    st.sampled_from([datetime(2010, 1, 1), datetime(2026, 12, 6, 12), datetime(2027, 1, 1)]),
)
def test_other_bounds_agree_too(
    drawn: tuple[dict[str, Any], bool],
    ahead: Optional[timedelta],
    earliest: datetime,
    latest: datetime,
) -> None:
    obj, _ = drawn
    bounds = TimeBounds(
        earliest=earliest.replace(tzinfo=UTC), latest=latest.replace(tzinfo=UTC),
        now=NOW if ahead is not None else None, max_ahead=ahead,
    )  # fmt: skip
    fast, slow = event_from_common_shape(obj, bounds), validated(obj, bounds)
    if fast is not None:
        assert slow is not None, "the fast path accepted what validation refuses"
        assert_same(fast, slow)


def test_times_outside_the_common_form_are_left_to_validation() -> None:
    assert shipments._utc_time("2026-12-06T10:00:00Z") == datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert shipments._utc_time("2026-12-06T10:00:00+00:00").tzinfo is UTC  # type: ignore[union-attr]
    for odd in ("2026-02-30T10:00:00Z", "2026-12-06 10:00:00Z", "2026-12-06T10:00:00+01:00", 1):
        assert shipments._utc_time(odd) is None


def test_the_classmethod_is_the_function() -> None:
    obj = {
        "event_id": "E1", "shipment_id": "S1", "carrier_id": "C1", "hub_id": "H1",
        "scan_type": "picked_up", "occurred_at": "2026-12-06T10:00:00Z",
        "shipped_at": "2026-12-06T09:00:00Z",
    }  # fmt: skip
    fast = ShipmentEvent.from_common_shape(obj, BOUNDS)
    assert fast is not None
    assert_same(fast, ShipmentEvent.model_validate(obj, context=BOUNDS.context()))
