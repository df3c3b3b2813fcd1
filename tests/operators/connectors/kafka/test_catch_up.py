"""The Kafka source tells the live clock when its input is catching up, and windows then close
on event time only: against the real broker."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from operators.connectors.kafka.source import KafkaRecordSource
from operators.runtime.clock import LiveClock
from operators.runtime.validate import validate
from operators.shipments.decision_state import WindowParams
from operators.shipments.domain import EnrichedEvent
from operators.shipments.enrich import enrich_with_carrier_and_hub
from operators.shipments.reference import ShipmentReference
from operators.shipments.windows import decision_window
from schemas import ShipmentEvent
from tests.flows.kafka_runs import kafka_settings, produce_raw, with_topics

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize(("threshold", "ever_behind"), [(20, True), (0, False)])
def test_a_partition_far_behind_its_end_pauses_the_live_clock_until_it_catches_up(
    kafka_bootstrap: str, threshold: int, ever_behind: bool
) -> None:
    """100 records on one partition read 10 at a time: more than 20 behind the end is catching
    up, and the live clock stands still; read to the end, it is caught up again. A threshold of
    0 never reports a catch-up."""
    settings = kafka_settings(kafka_bootstrap, batch_size=10, catch_up_lag_records=threshold)
    with_topics(settings, "shipments")
    topic = settings.topics.shipments_events
    ((partition, _), *_) = produce_raw(settings, topic, [(b"S-1", b"{}")] * 100)
    walls = {"now": datetime(2030, 1, 1, tzinfo=UTC)}
    clock = LiveClock(now=lambda: walls["now"])
    source = KafkaRecordSource(settings, [topic], flow="test", clock=clock)
    part = source.build_part("in", f"{partition}-{topic}", None)
    states: list[bool] = []  # catching up after each call, one wall minute apart
    seen: list[tuple[int, bool]] = []
    deadline = time.monotonic() + 30
    read = 0
    try:
        while read < 100:
            assert time.monotonic() < deadline, f"read {read} of 100 records in 30 s"
            walls["now"] += timedelta(minutes=1)
            batch = part.next_batch()
            read += len(batch)
            states.append(clock.catching_up)
            if batch:
                seen.append((read, clock.catching_up))
    finally:
        part.close()
    behind = [count for count, catching_up in seen if catching_up]
    assert bool(behind) is ever_behind, seen
    if ever_behind:
        assert min(behind) <= 20 and max(behind) < 100 - threshold, seen
    assert seen[-1] == (100, False), "read to the end: caught up"
    paused = sum(states)  # minutes from the call that fell behind to the one that caught up
    assert clock.read().live == timedelta(minutes=len(states) - paused)


SLOW_STEP_SECONDS = 0.02
"""Time a deliberately slow step spends on every scan: the flow reads its backlog slower than
the scans' event times advance, as it does when it cannot keep up with a surge."""


@pytest.mark.dataflow
@pytest.mark.parametrize(("threshold", "late_expected"), [(20, False), (0, True)])
def test_a_slow_catch_up_closes_windows_on_event_time_only(
    kafka_bootstrap: str, threshold: int, late_expected: bool
) -> None:
    """A backlog of 8 shipments x 40 scans, 50 ms apart in event time across a window boundary
    (1-minute windows, no allowed lateness), read by a flow that spends 20 ms on each scan (about
    160 ms between two scans of a shipment). With the catch-up signal the live time stands still
    while the backlog is read and no scan is late; with it off (threshold 0) the wall time moves
    the clocks past the boundary before the shipments' last scans before it are read, and those
    become late events."""
    settings = kafka_settings(
        kafka_bootstrap,
        batch_size=8,
        catch_up_lag_records=threshold,
        window_minutes=1,
        allowed_lateness_minutes=0,
    )
    with_topics(settings, "shipments")
    topic = settings.topics.shipments_events
    boundary = (datetime.now(UTC) - timedelta(minutes=10)).replace(second=0, microsecond=0)
    first = boundary - timedelta(seconds=1)
    scans = [
        scan_message(f"S-{n}", f"S-{n}-{k}", first + k * timedelta(milliseconds=50))
        for k in range(40)
        for n in range(8)
    ]
    produce_raw(settings, topic, scans)
    live = LiveClock()
    flow = Dataflow("catch_up_test")
    raw = op.input("in", flow, KafkaRecordSource(settings, [topic], flow="test", clock=live))
    valid = validate(
        "validate", raw, model=ShipmentEvent, key_field="shipment_id", flow="shipments"
    )
    enriched = enrich_with_carrier_and_hub(
        "enrich", valid.valid, reference=ShipmentReference.load()
    )
    slow = op.map("slow", enriched.enriched, _slowly)
    keyed = op.key_on("key", slow, lambda e: e.event.shipment_id)
    windows = decision_window(
        "decide", keyed, params=WindowParams.from_settings(settings.shipments),
        topic=settings.topics.shipments_events, live=live,
    )  # fmt: skip
    decisions: list = []
    late: list = []
    op.output("decisions", windows.decisions, TestingSink(decisions))
    op.output("late", windows.late, TestingSink(late))
    run_main(flow)
    decided = {e for _, d in decisions for e in d.event_ids}
    assert len(decided) + len(late) == len(scans), "every scan decided or late"
    assert bool(late) is late_expected, f"{len(late)} late of {len(scans)}"
    print(f"\ncatch-up threshold {threshold}: {len(late)} of {len(scans)} scans late")


def _slowly(enriched: EnrichedEvent) -> EnrichedEvent:
    time.sleep(SLOW_STEP_SECONDS)
    return enriched


def scan_message(shipment_id: str, event_id: str, occurred: datetime) -> tuple[bytes, bytes]:
    value = {
        "event_id": event_id,
        "shipment_id": shipment_id,
        "carrier_id": "CAR-FASTSHIP",
        "hub_id": "HUB-AMS1",
        "scan_type": "arrived_hub",
        "occurred_at": occurred.isoformat(),
        "shipped_at": (occurred - timedelta(days=1)).isoformat(),
    }
    return shipment_id.encode(), json.dumps(value).encode()
