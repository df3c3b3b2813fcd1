"""No record can stop a flow: property-based runs of both flows on records drawn by hypothesis.

Each example is a batch of records shaped like the input models, with extreme values mixed in:
timestamps near year 1 and year 9999 (in UTC and at ±14 h offsets), at the edges of the accepted
range and ahead of the wall clock; huge, negative and non-finite numbers; unicode, control
characters, empty and very long strings; unknown enum values and reference ids. The batch runs
through the flow's `build_flow` in process, with a testing source and sink. The flow must end
without raising, and every input must be accounted for exactly once: by its id in one output
(a decision's `event_ids`, a response's `message_id`) or by one dead letter at its offset.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Optional

import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.shipments import build_flow as build_shipments
from flows.tickets import build_flow as build_tickets
from operators.config.settings import Settings
from operators.runtime.records import OutRecord, RawRecord
from operators.shipments.reference import ShipmentReference
from tests.flows.flow_runs import embedded_settings

pytestmark = [pytest.mark.dataflow]

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NOW = datetime.now(UTC).replace(microsecond=0)
OFFSETS = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=14)),
        timezone(-timedelta(hours=12)),
        timezone(-timedelta(minutes=1)),
    ]
)
EDGES = st.sampled_from(
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",  # before datetime.min once in UTC
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59-12:00",  # after datetime.max once in UTC
        "9999-12-31T23:30:00Z",
        "1970-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        "2100-01-01T00:00:00.000001Z",
        "2026-11-27T10:00:00",  # naive
        "not a time",
        "",
    ]
)
EXTREME_TIMES = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=OFFSETS
)
ODD_TIMES: st.SearchStrategy[Any] = st.one_of(
    EXTREME_TIMES.map(datetime.isoformat),
    EDGES,
    st.integers(-(2**70), 2**70),
    st.none(),
)
EVENT_TIMES = st.one_of(
    st.integers(-5 * 24 * 3600, 23 * 3600).map(lambda s: NOW + timedelta(seconds=s)),
    st.datetimes(
        min_value=datetime(2000, 1, 2), max_value=NOW.replace(tzinfo=None), timezones=OFFSETS
    ),
    st.sampled_from([datetime(2000, 1, 1, tzinfo=UTC), NOW + timedelta(hours=23, minutes=59)]),
)
"""When a record says it happened: within the accepted range, at most a day ahead."""
FORECASTS = st.one_of(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=OFFSETS
    ),
    st.just(datetime(2100, 1, 1, tzinfo=UTC)),
)
"""An ETA: anywhere in the accepted range."""
ODD_NUMBERS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([100_001, -1, 2**63, -(2**63), 10**30, 1.5, 1e308]),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.none(),
)
CHARS = st.characters(codec="utf-8", exclude_categories=["Cs"])
ODD_TEXT = st.sampled_from(["", " ", "\x00\x07", "\u202eevil", "<b>x</b>&amp;", "ORD-1", "👍🏽"])


def long_text(*lengths: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda chunk, n: (chunk * n)[:n],
        st.sampled_from(["a", "é ", "👍", "word ", "\n", "<p>", "\u200b"]),
        st.sampled_from(lengths),
    )


def text(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    """Strings a model accepts by length: unicode, control characters, up to the bound."""
    return st.one_of(
        st.text(CHARS, min_size=min_size, max_size=min(max_size, 60)),
        long_text(max(min_size, 1), max_size - 1, max_size),
    )


def ids(prefix: str, pool: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(pool) if pool else st.just(prefix)


ODD_STRINGS = st.one_of(st.text(CHARS, max_size=40), ODD_TEXT, long_text(65, 201, 4001, 70_000))


def mutate(draw: st.DrawFn, record: dict[str, Any], odd: dict[str, st.SearchStrategy[Any]]) -> None:
    """Most records stay valid; some get one or two fields odd, lose one, or gain one."""
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 1, 2]))):
        name = draw(st.sampled_from(sorted(odd)))
        change = draw(st.integers(0, 9))
        if change == 0:
            record.pop(name, None)
        elif change == 1:
            record["unexpected"] = draw(ODD_STRINGS)
        else:
            record[name] = draw(odd[name])


def encode(draw: st.DrawFn, record: dict[str, Any]) -> bytes:
    for name, value in record.items():
        if isinstance(value, datetime):
            record[name] = value.isoformat()
    ascii_only = draw(st.booleans())
    return json.dumps(record, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


REFERENCE = ShipmentReference.load()
CARRIERS = sorted(REFERENCE.carriers["carrier_id"].to_list())
HUBS = sorted(REFERENCE.hubs["hub_id"].to_list())
SCAN_TYPES = ["picked_up", "arrived_hub", "departed_hub", "out_for_delivery", "delivered"]
SCAN_TYPES += ["delay", "exception"]


@st.composite
def shipment_scan(draw: st.DrawFn, index: int) -> bytes:
    occurred = draw(EVENT_TIMES)
    shipped = max(
        occurred - timedelta(minutes=draw(st.integers(0, 10 * 24 * 60))),
        datetime(2000, 1, 1, tzinfo=UTC),
    )
    record: dict[str, Any] = {
        "event_id": f"EVT-{index}",
        "shipment_id": draw(st.sampled_from(["SHP-A", "SHP-B", "SHP-C", "SHP-D"])),
        "carrier_id": draw(st.sampled_from(CARRIERS)),
        "hub_id": draw(st.sampled_from(HUBS)),
        "scan_type": draw(st.sampled_from(SCAN_TYPES)),
        "occurred_at": occurred,
        "shipped_at": shipped,
        "eta": draw(st.none() | FORECASTS),
        "delay_minutes": draw(st.integers(0, 600) | st.sampled_from([0, 99_999, 100_000])),
        "note": draw(st.none() | text(0, 4000)),
    }
    mutate(
        draw,
        record,
        {
            # an odd event id stays unique: the index, then a colon
            "event_id": ODD_STRINGS.map(lambda t: f"EVT-{index}:{t}") | st.none() | st.just(index),
            "shipment_id": ODD_STRINGS,
            "carrier_id": ODD_STRINGS | st.just("CAR-NOPE"),
            "hub_id": ODD_STRINGS | st.just("HUB-NOPE"),
            "scan_type": ODD_STRINGS,
            "occurred_at": ODD_TIMES,
            "shipped_at": ODD_TIMES,
            "eta": ODD_TIMES,
            "delay_minutes": ODD_NUMBERS,
            "note": ODD_STRINGS | ODD_NUMBERS,
        },
    )
    return encode(draw, record)


@st.composite
def ticket_message(draw: st.DrawFn, index: int) -> bytes:
    record: dict[str, Any] = {
        "message_id": f"MSG-{index}",
        "session_id": draw(st.sampled_from(["SES-A", "SES-B", "SES-C"])),
        "channel": draw(st.sampled_from(["email", "chat", "it"])),
        "sender": draw(st.just("Jane Doe <jane@example.com>") | text(1, 200)),
        "subject": draw(st.none() | text(1, 200)),
        "body": draw(st.just("Where is ORD-123456? It is urgent!") | text(1, 8000)),
        "sent_at": draw(EVENT_TIMES),
        "customer_tier": draw(st.sampled_from(["standard", "gold", "platinum"])),
    }
    mutate(
        draw,
        record,
        {
            "message_id": ODD_STRINGS.map(lambda t: f"MSG-{index}:{t}")
            | st.none()
            | st.just(index),
            "session_id": ODD_STRINGS,
            "channel": ODD_STRINGS,
            "sender": ODD_STRINGS | ODD_NUMBERS,
            "subject": ODD_STRINGS | ODD_NUMBERS,
            "body": ODD_STRINGS | long_text(8001, 200_000),
            "sent_at": ODD_TIMES,
            "customer_tier": ODD_STRINGS,
        },
    )
    return encode(draw, record)


def batches(record: Callable[[int], st.SearchStrategy[bytes]]) -> st.SearchStrategy[list[bytes]]:
    """Up to 40 records, the i-th drawn with index i (its unique id)."""
    return st.integers(1, 40).flatmap(lambda n: st.tuples(*(record(i) for i in range(n))))


def run(
    build: Callable[..., Dataflow], values: list[bytes], topic: str
) -> tuple[dict[str, list[dict]], Settings]:
    """Run the flow over `values` (offset = index) to the end; its output by topic."""
    config = embedded_settings()
    records = [RawRecord(value=v, topic=topic, partition=0, offset=i) for i, v in enumerate(values)]
    out: list[OutRecord] = []
    run_main(build(config, source=TestingSource(records), sink=TestingSink(out)))
    by_topic: dict[str, list[dict]] = {}
    for record in out:
        by_topic.setdefault(record.topic, []).append(json.loads(record.value))
    return by_topic, config


def id_in(value: bytes, field: str) -> Optional[str]:
    try:
        found = json.loads(value).get(field)
    except (ValueError, AttributeError):
        return None
    return found.strip() if isinstance(found, str) else None  # models strip whitespace


def unaccounted(
    values: list[bytes], id_field: str, outputs: list[dict], ids_of: Callable[[dict], list[str]],
    dead: list[dict],
) -> list[str]:  # fmt: skip
    """Inputs not accounted for exactly once: by their id in the outputs or their dead letter."""
    output_ids = Counter(i for o in outputs for i in ids_of(o))
    dead_at = Counter(d["source"]["offset"] for d in dead)
    wrong = []
    for offset, value in enumerate(values):
        record_id = id_in(value, id_field)
        count = dead_at[offset] + (output_ids[record_id] if record_id is not None else 0)
        if count != 1:
            wrong.append(f"offset {offset} ({record_id}) accounted {count} times: {value[:300]!r}")
    return wrong


@EXAMPLES
@given(values=batches(shipment_scan))
def test_no_scan_stops_the_shipments_flow(values: tuple[bytes, ...]) -> None:
    by_topic, s = run(build_shipments, list(values), "shipments.events")
    dead = by_topic.get(s.topics.shipments_dlq, [])
    decisions = by_topic.get(s.topics.shipments_decisions, [])
    assert not [d for d in dead if d["error_type"] == "processing_error"], dead
    assert unaccounted(list(values), "event_id", decisions, lambda d: d["event_ids"], dead) == []


@EXAMPLES
@given(values=batches(ticket_message))
def test_no_message_stops_the_tickets_flow(values: tuple[bytes, ...]) -> None:
    by_topic, s = run(build_tickets, list(values), "tickets.messages")
    dead = by_topic.get(s.topics.tickets_dlq, [])
    responses = by_topic.get(s.topics.tickets_responses, [])
    assert not [d for d in dead if d["error_type"] == "processing_error"], dead
    wrong = unaccounted(list(values), "message_id", responses, lambda r: [r["message_id"]], dead)
    assert wrong == []
