"""The per-shipment state machine, driven by an explicit wall clock (no sleeps)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from typing import Any, Optional

import pytest

from operators.config.settings import Settings
from operators.runtime.clock import MAX_UTC, MIN_UTC, LiveClock, Reading, shifted
from operators.shipments import decisions
from operators.shipments.decisions import (
    CLOSED_WINDOWS_KEPT,
    STATE_VERSION,
    UTC_EPOCH,
    IncompatibleStateError,
    ShipmentWindows,
    WindowParams,
)
from operators.shipments.domain import EnrichedEvent
from schemas import ShipmentEvent, SourceRef, deterministic_id

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
WALL0 = datetime(2030, 1, 1, tzinfo=UTC)
SHIPPED = T0 - timedelta(hours=1)
PARAMS = WindowParams.from_settings(
    Settings().shipments
)  # 60 min windows, 15 min lateness, stuck 6 h


def event(
    event_id: str,
    minutes: float,
    *,
    scan_type: str = "arrived_hub",
    shipment_id: str = "S-1",
    hub_id: str = "HUB-1",
    note: Optional[str] = None,
    **enrichment: Any,
) -> EnrichedEvent:
    """An enriched scan `minutes` after T0."""
    scan = ShipmentEvent(
        event_id=event_id,
        shipment_id=shipment_id,
        carrier_id="CAR-A",
        hub_id=hub_id,
        scan_type=scan_type,
        occurred_at=T0 + timedelta(minutes=minutes),
        shipped_at=SHIPPED,
        note=note,
    )
    facts: dict[str, Any] = {
        "carrier_name": "Alpha",
        "sla_hours": 48.0,
        "carrier_reliability": 0.95,
        "region": "eu-west",
        "hub_congestion": 0.2,
        "sla_due_at": SHIPPED + timedelta(hours=48),
    }
    facts.update(enrichment)
    return EnrichedEvent(event=scan, source=SourceRef(topic="shipments.events"), **facts)


def clock(minutes: float) -> datetime:
    """The wall time `minutes` after WALL0."""
    return WALL0 + timedelta(minutes=minutes)


def at(moment: datetime, *, catching_up: bool = False) -> Reading:
    """The clocks at wall time `moment` of a process that started at WALL0 and never caught up
    (unless `catching_up` now): live time = wall time since WALL0."""
    return Reading(wall=moment, live=moment - WALL0, catching_up=catching_up)


def wall(minutes: float) -> Reading:
    """The clocks `minutes` after WALL0."""
    return at(clock(minutes))


def live(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


def window_id(start: datetime, shipment_id: str = "S-1") -> str:
    end = start + timedelta(hours=1)
    return deterministic_id(shipment_id, start.isoformat(), end.isoformat(), "window")


def test_window_closes_when_a_later_event_moves_the_watermark() -> None:
    windows = ShipmentWindows(PARAMS)
    assert windows.on_event(event("E1", 10), wall(0)).decisions == []
    assert windows.on_event(event("E2", 20), wall(0)).decisions == []
    emitted = windows.on_event(event("E3", 75), wall(0))
    (decision,) = emitted.decisions
    assert emitted.late == []
    assert decision.trigger == "window_closed"
    assert decision.event_ids == ["E1", "E2"]
    assert (decision.window_start, decision.window_end) == (T0, T0 + timedelta(hours=1))
    assert decision.decision_id == window_id(T0)
    assert (decision.action, decision.decided_at, decision.enrichment) == ("ok", clock(0), None)
    assert decision.last_scan_at == T0 + timedelta(minutes=20)


def test_window_closes_by_wall_time_at_its_deadline() -> None:
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 10), wall(0))
    assert windows.next_deadline(wall(0)) == clock(65)
    assert windows.on_timer(wall(64)).decisions == []
    (decision,) = windows.on_timer(wall(65)).decisions
    assert decision.trigger == "window_closed"
    assert windows.next_deadline(wall(0)) == clock(6 * 60)  # the stuck timer is next
    assert not windows.is_finished


def test_watermark_follows_wall_time_and_never_goes_back() -> None:
    windows = ShipmentWindows(PARAMS)
    assert windows.watermark(live(0)) is None
    windows.on_event(event("E1", 30), wall(0))
    assert windows.watermark(live(5)) == T0 + timedelta(minutes=35)
    windows.on_event(event("E2", 32), wall(5))  # older than the watermark: no change
    assert windows.watermark(live(5)) == T0 + timedelta(minutes=35)
    assert windows.watermark(live(-10)) == T0 + timedelta(minutes=30)


def test_event_of_a_closed_window_is_late_and_never_reopens_it() -> None:
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 10), wall(0))
    windows.on_event(event("E2", 75), wall(0))
    late = event("E3", 30)
    emitted = windows.on_event(late, wall(1))
    assert emitted.decisions == []
    (reported,) = emitted.late
    assert reported.event is late
    assert "already closed" in reported.reason
    at_end = windows.on_eof(wall(2), None).decisions
    assert [(d.trigger, d.event_ids) for d in at_end] == [("end_of_input", ["E2"])]


def test_event_behind_the_watermark_is_late_even_if_its_window_never_opened() -> None:
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 5 * 60), wall(0))
    (reported,) = windows.on_event(event("E2", 60), wall(0)).late
    assert "behind the watermark" in reported.reason
    assert [d.event_ids for d in windows.on_eof(wall(1), None).decisions] == [["E1"]]


def test_duplicate_event_is_counted_not_added() -> None:
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 10), wall(0))
    windows.on_event(event("E1", 10), wall(0))
    (decision,) = windows.on_timer(wall(65)).decisions
    assert (decision.event_ids, decision.duplicate_events) == (["E1"], 1)


def test_full_window_sends_more_events_to_late(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decisions, "MAX_WINDOW_EVENTS", 2)
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 10), wall(0))
    windows.on_event(event("E2", 11), wall(0))
    (reported,) = windows.on_event(event("E3", 12), wall(0)).late
    assert "already holds 2 events" in reported.reason
    assert windows.on_event(event("E2", 11), wall(0)).late == []
    (decision,) = windows.on_timer(wall(65)).decisions
    assert (decision.event_ids, decision.duplicate_events) == (["E1", "E2"], 1)


def test_stuck_timer_fires_by_wall_time_then_state_is_finished() -> None:
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 0, scan_type="picked_up", hub_id="HUB-7"), wall(0))
    assert windows.next_deadline(wall(0)) == clock(75)
    assert len(windows.on_timer(wall(75)).decisions) == 1
    assert windows.next_deadline(wall(0)) == clock(6 * 60)
    (stuck,) = windows.on_timer(wall(6 * 60)).decisions
    assert (stuck.action, stuck.trigger, stuck.event_ids) == ("escalate", "stuck_timer", [])
    assert (stuck.window_start, stuck.window_end) == (T0, T0 + timedelta(hours=6))
    assert stuck.reasons[0].startswith("stuck at hub HUB-7 since 2026-11-27 08:00 UTC")
    expected_id = deterministic_id("S-1", T0.isoformat(), stuck.window_end.isoformat(), "stuck")
    assert stuck.decision_id == expected_id
    assert windows.is_finished
    assert windows.next_deadline(wall(0)) is None
    assert windows.on_timer(wall(7 * 60)).decisions == []


def test_stuck_fires_once_even_while_a_window_stays_open() -> None:
    params = WindowParams(
        window=timedelta(hours=1), lateness=timedelta(0), stuck_after=timedelta(seconds=1)
    )
    windows = ShipmentWindows(params)
    windows.on_event(event("E1", 0), wall(0))
    assert windows.next_deadline(wall(0)) == WALL0 + timedelta(seconds=1)
    (stuck,) = windows.on_timer(at(WALL0 + timedelta(seconds=1))).decisions
    assert stuck.trigger == "stuck_timer"
    assert not windows.is_finished  # the window still has to close
    assert windows.next_deadline(wall(0)) == clock(60)
    (closed,) = windows.on_timer(wall(60)).decisions
    assert closed.trigger == "window_closed"
    assert windows.is_finished


def test_a_gap_in_event_time_reports_stuck_before_the_new_scan_joins() -> None:
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 0), wall(0))
    emitted = windows.on_event(event("E2", 7 * 60), wall(1))
    assert [d.trigger for d in emitted.decisions] == ["window_closed", "stuck_timer"]
    assert emitted.decisions[1].window_start == T0
    assert not windows.is_finished
    assert windows.next_deadline(wall(1)) == clock(1 + 60 + 15)


def test_delivered_shipment_is_never_stuck_and_finishes_when_its_window_closes() -> None:
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 10, scan_type="delivered"), wall(0))
    assert windows.next_deadline(wall(0)) == clock(65)
    (decision,) = windows.on_timer(wall(65)).decisions
    assert decision.reasons == ["delivered on time"]
    assert windows.is_finished
    assert windows.next_deadline(wall(0)) is None


def test_end_of_input_closes_every_window_with_the_same_ids() -> None:
    by_timer, by_eof = ShipmentWindows(PARAMS), ShipmentWindows(PARAMS)
    for windows in (by_timer, by_eof):
        windows.on_event(event("E1", 10), wall(0))
        windows.on_event(event("E2", 70), wall(0))
    timer_ids = [d.decision_id for d in by_timer.on_timer(wall(24 * 60)).decisions[:2]]
    eof = by_eof.on_eof(wall(1), None).decisions
    assert [d.trigger for d in eof] == ["end_of_input", "end_of_input"]
    assert [d.decision_id for d in eof] == timer_ids
    assert by_eof.is_finished


@pytest.mark.parametrize(("stream_hours", "stuck"), [(6, True), (5.9, False)])
def test_end_of_input_uses_the_stream_clock_for_stuck(stream_hours: float, stuck: bool) -> None:
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 0), wall(0))
    stream_max = T0 + timedelta(hours=stream_hours)
    triggers = [d.trigger for d in windows.on_eof(wall(1), stream_max).decisions]
    assert triggers == ["end_of_input", "stuck_timer"] if stuck else ["end_of_input"]


def test_repeated_delays_count_across_windows() -> None:
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 10, scan_type="delay"), wall(0))
    windows.on_event(event("E2", 70, scan_type="delay"), wall(0))
    first, second = windows.on_event(event("E3", 150), wall(0)).decisions
    assert (first.action, second.action) == ("ok", "escalate")
    assert "2 delay scans (threshold 2)" in second.reasons


def test_decision_takes_facts_from_the_latest_event_and_keeps_notes() -> None:
    windows = ShipmentWindows(PARAMS)
    for i in range(25):
        windows.on_event(event(f"N{i}", 40, note=f"note {i}"), wall(0))
    windows.on_event(event("E2", 45, hub_id="HUB-2", region="us-east"), wall(0))
    windows.on_event(event("E1", 10, note="a"), wall(0))
    (decision,) = windows.on_timer(wall(60)).decisions
    assert (decision.hub_id, decision.region, decision.carrier_id) == ("HUB-2", "us-east", "CAR-A")
    assert (decision.event_ids[0], decision.event_ids[-1]) == ("E1", "E2")
    assert decision.notes[:2] == ["a", "note 0"] and len(decision.notes) == 20
    assert decision.last_scan_at == T0 + timedelta(minutes=45)
    assert decision.sla_due_at == SHIPPED + timedelta(hours=48)


def test_windows_align_to_the_utc_epoch() -> None:
    params = WindowParams.from_settings(Settings(window_minutes=90).shipments)
    windows = ShipmentWindows(params)
    windows.on_event(event("E1", 10), wall(0))
    (decision,) = windows.on_eof(wall(1), None).decisions
    assert (decision.window_start - UTC_EPOCH) % timedelta(minutes=90) == timedelta(0)
    assert decision.window_start <= T0 + timedelta(minutes=10) < decision.window_end


def test_closed_window_record_is_bounded() -> None:
    windows = ShipmentWindows(PARAMS)
    for hour in range(12):
        windows.on_event(event(f"E{hour}", hour * 60 + 10), wall(0))
    assert len(windows.to_state(live(0))["closed"]) == CLOSED_WINDOWS_KEPT


def _plain(value: object) -> bool:
    if isinstance(value, (dict,)):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    if type(value) is tuple:
        return all(_plain(item) for item in value)
    return value is None or type(value) in (str, int, float, bool, datetime)


def test_state_is_plain_data_and_round_trips_through_pickle() -> None:
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 10, scan_type="delay", note="fog"), wall(0))
    windows.on_event(event("E1", 10, scan_type="delay", note="fog"), wall(0))
    windows.on_event(event("E2", 80), wall(0))
    windows.on_event(event("E3", 140), wall(0))
    state = windows.to_state(live(0))
    assert _plain(state)
    restored = ShipmentWindows.from_state(pickle.loads(pickle.dumps(state)), PARAMS, live(0))
    assert restored.to_state(live(0)) == state
    assert restored.next_deadline(wall(0)) == windows.next_deadline(wall(0))
    original = windows.on_eof(wall(1), None).decisions
    assert restored.on_eof(wall(1), None).decisions == original


def test_restore_refuses_another_state_version() -> None:
    state = ShipmentWindows(PARAMS).to_state(live(0))
    with pytest.raises(IncompatibleStateError, match=f"version {STATE_VERSION + 1}"):
        ShipmentWindows.from_state({**state, "version": STATE_VERSION + 1}, PARAMS, live(0))
    with pytest.raises(IncompatibleStateError, match="version None"):
        ShipmentWindows.from_state(("not", "a", "dict"), PARAMS, live(0))  # type: ignore[arg-type]


def test_restore_refuses_another_window_length() -> None:
    state = ShipmentWindows(PARAMS).to_state(live(0))
    other = WindowParams.from_settings(Settings(window_minutes=30).shipments)
    with pytest.raises(IncompatibleStateError, match="cannot change length"):
        ShipmentWindows.from_state(state, other, live(0))


def test_state_of_a_long_lived_shipment_stays_small() -> None:
    """A shipment scanned every 2 h for 60 days keeps the same few windows, not its history."""
    windows = ShipmentWindows(PARAMS)
    sizes = []
    for n in range(60 * 12):
        windows.on_event(event(f"E{n}", n * 120 + 10, scan_type="delay", note="x" * 200), wall(0))
        sizes.append(len(pickle.dumps(windows.to_state(live(0)))))
    state = windows.to_state(live(0))
    assert len(state["open"]) == 1 and len(state["closed"]) == CLOSED_WINDOWS_KEPT
    # only the count of delays grows (an int): a few bytes over 720 scans, never a scan
    assert max(sizes[100:]) <= max(sizes[100:110]) + 8, "the snapshot grows with the history"
    assert max(sizes) < 2000


def test_latest_event_time_is_the_largest_time_seen() -> None:
    windows = ShipmentWindows(PARAMS)
    assert windows.latest_event_time is None
    windows.on_event(event("E1", 50), wall(0))
    windows.on_event(event("E2", 20), wall(0))  # out of order, still within lateness
    assert windows.latest_event_time == T0 + timedelta(minutes=50)
    restored = ShipmentWindows.from_state(windows.to_state(live(0)), PARAMS, live(0))
    assert restored.latest_event_time == T0 + timedelta(minutes=50)


@pytest.mark.parametrize("scan_type", ["delivered", "arrived_hub"])
def test_every_shipment_finishes_once_wall_time_passes_its_deadlines(scan_type: str) -> None:
    """Delivered: its last window closes; not delivered: the stuck report. Then state can go."""
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 10), wall(0))
    windows.on_event(event("E2", 100, scan_type=scan_type), wall(0))
    assert not windows.is_finished
    deadline = windows.next_deadline(wall(0))
    while deadline is not None and not windows.is_finished:
        windows.on_timer(at(deadline))
        deadline = windows.next_deadline(at(deadline))
    assert windows.is_finished and deadline is None
    assert windows.on_timer(at(WALL0 + timedelta(days=30))).decisions == []


# --- datetime range, downtime, catch-up, state migration ----------------------------------------


def scan_at(event_id: str, occurred_at: datetime, *, shipment_id: str = "S-X") -> EnrichedEvent:
    """A valid enriched scan at any event time, past or future (validate never saw it)."""
    scan = ShipmentEvent(
        event_id=event_id,
        shipment_id=shipment_id,
        carrier_id="CAR-A",
        hub_id="HUB-1",
        scan_type="arrived_hub",
        occurred_at=occurred_at,
        shipped_at=occurred_at,
    )
    return EnrichedEvent(
        event=scan,
        source=SourceRef(topic="shipments.events", partition=0, offset=7),
        carrier_name="Alpha",
        sla_hours=48.0,
        carrier_reliability=0.95,
        region="eu-west",
        hub_congestion=0.2,
        sla_due_at=occurred_at,
    )


LAST_MINUTE = MAX_UTC - timedelta(seconds=30)
FIRST_MINUTE = MIN_UTC + timedelta(seconds=30)


@pytest.mark.parametrize("window_minutes", [60, 7])
def test_scans_at_the_ends_of_the_datetime_range_are_decided_without_overflow(
    window_minutes: int,
) -> None:
    """Window ends, deadlines and stuck times past the year 9999 (or before the year 1) hold at
    the end of the range instead of raising `OverflowError`."""
    params = WindowParams.from_settings(Settings(window_minutes=window_minutes).shipments)
    latest, earliest = ShipmentWindows(params), ShipmentWindows(params)
    assert latest.on_event(scan_at("X1", LAST_MINUTE), wall(0)).decisions == []
    assert earliest.on_event(scan_at("Y1", FIRST_MINUTE), wall(0)).decisions == []
    # the window's end and the stuck time hold at the end of the range, 30 s after the scan
    assert latest.next_deadline(wall(0)) == WALL0 + timedelta(seconds=30)
    deadline = earliest.next_deadline(wall(0))
    assert deadline is not None and WALL0 < deadline <= clock(window_minutes + 15)
    closed, stuck = latest.on_timer(at(WALL0 + timedelta(seconds=30))).decisions
    assert (closed.trigger, closed.event_ids, closed.window_end) == (
        "window_closed",
        ["X1"],
        MAX_UTC,
    )
    assert (stuck.trigger, stuck.window_end) == ("stuck_timer", MAX_UTC)
    assert latest.is_finished and latest.next_deadline(wall(1)) is None
    (closed,) = earliest.on_timer(at(deadline)).decisions
    assert closed.window_start <= FIRST_MINUTE < closed.window_end and closed.event_ids == ["Y1"]
    # a scan of today is behind the year-9999 watermark: late, not a crash
    (late,) = latest.on_event(scan_at("X2", T0), wall(1)).late
    assert "behind the watermark" in late.reason
    assert earliest.on_eof(wall(2), MAX_UTC).decisions[0].trigger == "stuck_timer"


def test_a_resumed_shipment_ignores_the_downtime() -> None:
    """Snapshotted 5 minutes after its scan, restored two hours later by a new process (whose
    live time starts at 0): the clock goes on from the snapshot, so the scans produced during
    the downtime are on time and the window closes an hour of running time later."""
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 10), wall(0))
    state = windows.to_state(live(5))
    assert state["watermark"] == T0 + timedelta(minutes=15)
    resumed_at = Reading(wall=clock(125), live=live(0))
    restored = ShipmentWindows.from_state(pickle.loads(pickle.dumps(state)), PARAMS, live(0))
    assert restored.watermark(live(0)) == T0 + timedelta(minutes=15)
    assert restored.next_deadline(resumed_at) == clock(125 + 60), "not at once"
    backlog = [event("E2", 30), event("E3", 55), event("E4", 70)]
    emitted = [restored.on_event(e, Reading(clock(126), live(1))) for e in backlog]
    assert all(not e.late for e in emitted), "scans of the downtime are on time"
    (decision,) = restored.on_event(event("E5", 80), Reading(clock(126), live(1))).decisions
    assert decision.event_ids == ["E1", "E2", "E3"]


def test_while_the_input_catches_up_windows_close_on_event_time_only() -> None:
    """Wall time passes while catching up (live time stands still): no timer closes the window
    and the next look is `catch_up_recheck` away; a later scan's event time closes it; after the
    catch-up the live time moves on from where it stood."""
    windows = ShipmentWindows(PARAMS)
    windows.on_event(event("E1", 10), wall(0))
    catching_up = Reading(wall=clock(300), live=live(1), catching_up=True)
    assert windows.on_timer(catching_up).decisions == []
    assert windows.next_deadline(catching_up) == clock(300 + 64), "from the live time"
    windows.on_event(event("E2", 74.95), catching_up)  # 3 s before the close
    assert windows.next_deadline(catching_up) == clock(300) + PARAMS.catch_up_recheck
    (decision,) = windows.on_event(event("E3", 76), catching_up).decisions
    assert decision.event_ids == ["E1"], "closed by the scans' event time"
    caught_up = Reading(wall=clock(302), live=live(2))
    assert windows.on_timer(caught_up).decisions == []
    assert windows.next_deadline(caught_up) == clock(302 + 135 - 77), "one live minute since E3"


def test_live_clock_leaves_out_the_catch_up_and_the_time_before_it_existed() -> None:
    now = {"t": WALL0}
    clocks = LiveClock(now=lambda: now["t"])

    def at_minute(minute: float) -> Reading:
        now["t"] = clock(minute)
        return clocks.read()

    assert at_minute(3).live == live(3)
    at_minute(4)
    clocks.report("0-events", True)
    at_minute(5)
    clocks.report("1-events", True)
    reading = at_minute(9)
    assert (reading.live, reading.catching_up, reading.wall) == (live(4), True, clock(9))
    clocks.report("0-events", False)
    assert at_minute(10).catching_up, "partition 1 is still behind"
    clocks.report("1-events", False)
    assert at_minute(12) == Reading(wall=clock(12), live=live(6), catching_up=False)
    now["t"] = clock(11)  # the wall clock stepped back
    assert clocks.read().live == live(6)


def test_shifted_holds_at_the_ends_of_the_range() -> None:
    assert shifted(LAST_MINUTE, timedelta(hours=1)) == MAX_UTC
    assert shifted(FIRST_MINUTE, -timedelta(hours=1)) == MIN_UTC
    assert shifted(T0, timedelta(hours=1)) == T0 + timedelta(hours=1)


def _v1_scan(event_id: str, minutes: int, scan_type: str = "arrived_hub") -> tuple:
    return (
        event_id,
        T0 + timedelta(minutes=minutes),
        scan_type,
        "CAR-A",
        "HUB-1",
        "eu-west",
        None,
        0,
        None,
        0.95,
        0.2,
        SHIPPED + timedelta(hours=48),
    )


V1_STATE = {
    "version": 1,
    "window_seconds": 3600.0,
    "shipment_id": "S-1",
    "clock": (T0 + timedelta(minutes=80), datetime(2030, 1, 1, tzinfo=UTC)),
    "open": ((T0 + timedelta(hours=1), (_v1_scan("E2", 75), _v1_scan("E3", 80)), 0),),
    "closed": (T0,),
    "delays_closed": 1,
    "delivered_at": None,
    "last": _v1_scan("E3", 80),
    "stuck_reported": False,
    "ended": False,
}
"""A snapshot as the version-1 build wrote it: E1 (a delay, at 10 min) decided in the closed
window at T0, E2 and E3 open in the next; the clock is (event time, wall time it was seen)."""


def test_a_version_1_snapshot_migrates_and_keeps_its_windows() -> None:
    restored = ShipmentWindows.from_state(pickle.loads(pickle.dumps(V1_STATE)), PARAMS, live(0))
    assert restored.pending_event_ids() == ["E2", "E3"]
    assert restored.latest_event_time == T0 + timedelta(minutes=80)
    assert restored.watermark(live(0)) == T0 + timedelta(minutes=80), "from the resume"
    assert restored.next_deadline(wall(0)) == clock(55)
    late = restored.on_event(event("E9", 30), wall(0)).late
    assert "already closed" in late[0].reason, "the closed window stays closed"
    (decision,) = restored.on_timer(wall(55)).decisions
    assert decision.event_ids == ["E2", "E3"] and decision.window_start == T0 + timedelta(hours=1)
    state = restored.to_state(live(55))
    assert state["version"] == STATE_VERSION == 2 and "clock" not in state
    assert state["delays_closed"] == 1 and state["closed"] == (T0, T0 + timedelta(hours=1))
