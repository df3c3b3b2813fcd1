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

from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

import schemas.shipments as shipments
from schemas.common import TimeBounds
from schemas.shipments import ShipmentEvent, event_from_common_shape
from tests.schemas.fast_paths import (
    BOUNDS,
    ID,
    ODD_TIMES,
    assert_agrees,
    assert_same,
    other_bounds,
    spoil,
    times,
)

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
    "occurred_at": st.one_of(
        times(False), st.integers(0, 2_000_000_000), st.sampled_from(ODD_TIMES)
    ),
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
    common = spoil(draw, fields, WILD, ("eta", "delay_minutes", "note"), shipments._EVENT_REQUIRED)
    return fields, common


SCAN = {
    "event_id": "E1", "shipment_id": "S1", "carrier_id": "C1", "hub_id": "H1",
    "scan_type": "delay", "occurred_at": "2026-12-06T10:00:00Z",
    "shipped_at": "2026-12-06T09:00:00+00:00",
}  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(objects())
@example(({**SCAN, "occurred_at": "2026-12-07T12:00:00Z", "eta": None, "note": ""}, True))
@example(({**SCAN, "delay_minutes": True}, False))
@example(({**SCAN, "note": "a" * 4001}, False))
@example(({**SCAN, "note": "a" * 4000}, True))
@example(({**SCAN, "eta": "2100-01-01T00:00:00.000001Z"}, False))
def test_the_fast_path_gives_what_validation_gives(drawn: tuple[dict[str, Any], bool]) -> None:
    assert_agrees(event_from_common_shape, ShipmentEvent, drawn, BOUNDS)


@settings(max_examples=1000, deadline=None)
@given(objects(), other_bounds())
def test_other_bounds_agree_too(drawn: tuple[dict[str, Any], bool], bounds: TimeBounds) -> None:
    assert_agrees(event_from_common_shape, ShipmentEvent, (drawn[0], False), bounds)


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
