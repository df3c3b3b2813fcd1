"""The compact pickles of `EnrichedEvent` and `SourceRef` (what crosses to another process in the
shipments flow) give back exactly what was pickled, and pickles in pydantic's own form (older
recovery snapshots) still load."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from operators.runtime.records import source_ref
from operators.shipments.domain import EnrichedEvent, EnrichedGroup, _enriched, _group
from schemas.dead_letter import SourceRef
from schemas.shipments import ShipmentEvent

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,20}", fullmatch=True)
zones = st.sampled_from([UTC, timezone(timedelta(hours=5)), timezone(-timedelta(hours=8))])
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=zones
)
texts = st.text(max_size=40)
counts = st.none() | st.integers(min_value=0, max_value=2**62)


@st.composite
def scans(draw: st.DrawFn) -> ShipmentEvent:
    """A valid scan with any of its optional fields set or left unset."""
    shipped = draw(times)
    fields: dict[str, Any] = {
        "event_id": draw(ids), "shipment_id": draw(ids), "carrier_id": draw(ids),
        "hub_id": draw(ids),
        "scan_type": draw(st.sampled_from(["picked_up", "delay", "delivered", "exception"])),
        "occurred_at": shipped + draw(st.timedeltas(timedelta(0), timedelta(days=30))),
        "shipped_at": shipped,
    }  # fmt: skip
    for name, values in (
        ("eta", st.none() | times),
        ("delay_minutes", st.integers(0, 100_000)),
        ("note", st.none() | texts),
    ):
        if draw(st.booleans()):
            fields[name] = draw(values)
    try:
        return ShipmentEvent(**fields)
    except ValidationError:
        return ShipmentEvent(**{**fields, "note": None})


@st.composite
def sources(draw: st.DrawFn) -> SourceRef:
    """A source as the flows build it (all fields set) or with some left unset."""
    topic = draw(st.from_regex(r"[a-z][a-z0-9._-]{0,30}", fullmatch=True))
    partition, offset = draw(counts), draw(counts)
    kind = draw(st.sampled_from(["fast", "topic", "partition", "all"]))
    if kind == "fast":
        return source_ref(topic, partition, offset)
    if kind == "topic":
        return SourceRef(topic=topic)
    if kind == "partition":
        return SourceRef(topic=topic, partition=partition)
    return SourceRef(topic=topic, partition=partition, offset=offset)


@st.composite
def enriched_events(draw: st.DrawFn) -> EnrichedEvent:
    event = draw(scans())
    due = event.shipped_at + timedelta(hours=draw(st.floats(0, 1000)))
    return EnrichedEvent(
        event, draw(sources()), draw(texts), draw(st.floats(0, 1000)), draw(st.floats(0, 1)),
        draw(texts), draw(st.floats(0, 1)), due,
    )  # fmt: skip


def assert_same_model(got: BaseModel, want: BaseModel) -> None:
    assert type(got) is type(want)
    assert got == want
    assert got.__dict__ == want.__dict__
    assert got.model_fields_set == want.model_fields_set
    assert got.__pydantic_extra__ == want.__pydantic_extra__
    assert got.__pydantic_private__ == want.__pydantic_private__
    assert got.model_dump_json() == want.model_dump_json()
    for name, value in want.__dict__.items():
        assert type(got.__dict__[name]) is type(value)
        if isinstance(value, datetime):
            assert got.__dict__[name].tzinfo is value.tzinfo
            assert got.__dict__[name].fold == value.fold


def assert_same(got: EnrichedEvent, want: EnrichedEvent) -> None:
    assert type(got) is type(want)
    assert got == want
    assert_same_model(got.event, want.event)
    assert_same_model(got.source, want.source)
    for name, value in want.__dict__.items():
        assert type(got.__dict__[name]) is type(value)
    assert got.sla_due_at.tzinfo is want.sla_due_at.tzinfo


def pydantic_form(obj: object) -> bytes:
    """`obj` pickled as before the compact forms: pydantic's state dict for the models, the
    instance dict for the dataclass (how older recovery snapshots hold them)."""

    class Old(pickle.Pickler):
        def reducer_override(self, o: object) -> Any:
            if isinstance(o, (BaseModel, EnrichedEvent)):
                return object.__reduce_ex__(o, 2)
            return NotImplemented

    out = BytesIO()
    Old(out, pickle.HIGHEST_PROTOCOL).dump(obj)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(enriched_events())
def test_an_enriched_scan_round_trips_exactly(scan: EnrichedEvent) -> None:
    for protocol in (pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        assert_same(pickle.loads(pickle.dumps(scan, protocol)), scan)
    assert_same(pickle.loads(pickle.dumps([("k", scan), ("k", scan)]))[1][1], scan)


@settings(max_examples=200, deadline=None)
@given(sources())
def test_a_source_round_trips_exactly(source: SourceRef) -> None:
    assert_same_model(pickle.loads(pickle.dumps(source, pickle.HIGHEST_PROTOCOL)), source)


@settings(max_examples=100, deadline=None)
@given(enriched_events())
def test_pickles_in_pydantics_form_still_load(scan: EnrichedEvent) -> None:
    old = pydantic_form(scan)
    assert b"__pydantic_fields_set__" in old
    assert_same(pickle.loads(old), scan)
    assert_same_model(pickle.loads(pydantic_form(scan.source)), scan.source)


def test_a_flow_scan_takes_the_flat_form_and_fewer_bytes() -> None:
    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    event = ShipmentEvent(
        event_id="EV-1", shipment_id="SHP-1", carrier_id="CAR-1", hub_id="HUB-1",
        scan_type="delay", occurred_at=at, shipped_at=at - timedelta(hours=2),
    )  # fmt: skip
    scan = EnrichedEvent(
        event, source_ref("shipments.events", 3, 99), "Carrier", 24.0, 0.9, "north", 0.2,
        at + timedelta(hours=22),
    )  # fmt: skip
    assert scan.__reduce_ex__(pickle.HIGHEST_PROTOCOL)[0] is _enriched
    compact = pickle.dumps(scan, pickle.HIGHEST_PROTOCOL)
    assert len(compact) < 0.75 * len(pydantic_form(scan))
    assert_same(pickle.loads(compact), scan)


class NotedRef(SourceRef):
    note: Optional[str] = None


class Subclassed(EnrichedEvent):
    pass


@pytest.mark.parametrize(
    "source",
    [NotedRef(topic="t", partition=1, offset=2, note="n"), SourceRef(topic="t")],
    ids=["source subclass", "source with unset fields"],
)
def test_other_sources_keep_their_own_pickle(source: SourceRef) -> None:
    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    event = ShipmentEvent(
        event_id="EV-1", shipment_id="SHP-1", carrier_id="CAR-1", hub_id="HUB-1",
        scan_type="delay", occurred_at=at, shipped_at=at,
    )  # fmt: skip
    for scan in (
        EnrichedEvent(event, source, "C", 1.0, 0.5, "r", 0.1, at),
        Subclassed(event, source_ref("t", 1, 2), "C", 1.0, 0.5, "r", 0.1, at),
    ):
        assert scan.__reduce_ex__(pickle.HIGHEST_PROTOCOL)[0] is not _enriched
        assert_same(pickle.loads(pickle.dumps(scan, pickle.HIGHEST_PROTOCOL)), scan)
    assert_same_model(pickle.loads(pickle.dumps(source)), source)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(ids, enriched_events()), max_size=8), st.booleans())
def test_a_group_round_trips_exactly_as_a_list(
    pairs: list[tuple[str, EnrichedEvent]], odd_one: bool
) -> None:
    """A group unpickles as a plain list of the same pairs, with one item that has no flat form
    (a subclass) among them or not."""
    if odd_one and pairs:
        key, first = pairs[0]
        pairs[0] = (key, Subclassed(**first.__dict__))
    group = EnrichedGroup(pairs)
    flat = not (odd_one and pairs) and all(
        e.source.model_fields_set == {"topic", "partition", "offset"} for _, e in pairs
    )
    assert (group.__reduce__()[0] is _group) == flat
    got = pickle.loads(pickle.dumps(group, pickle.HIGHEST_PROTOCOL))
    assert type(got) is list
    assert [key for key, _ in got] == [key for key, _ in pairs]
    for (_, item), (_, want) in zip(got, pairs, strict=True):
        assert_same(item, want)
