"""The decision window as a real dataflow: one worker, two workers, timers, and failures."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Optional, Union

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulLogic
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from operators.config.settings import Settings
from operators.runtime.clock import LiveClock, Reading, StreamClock
from operators.runtime.metrics import live_state_keys
from operators.shipments import decision_state
from operators.shipments.decision_state import WindowParams, WindowsState
from operators.shipments.decisions import LateEvent, ShipmentWindows
from operators.shipments.domain import EnrichedEvent
from operators.shipments.windows import DecisionWindowLogic, Failures, decision_window
from schemas import DeadLetter, ShipmentDecision, ShipmentEvent, SourceRef

pytestmark = pytest.mark.dataflow

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
SHIPPED = T0 - timedelta(hours=1)


def window_options(settings: Settings) -> dict[str, Any]:
    """`decision_window`'s parameters as the shipments flow builds them from `settings`."""
    return {
        "params": WindowParams.from_settings(settings.shipments),
        "topic": settings.topics.shipments_events,
    }


def event(
    shipment_id: str,
    event_id: str,
    minutes: float,
    scan_type: str = "arrived_hub",
    note: Optional[str] = None,
    *,
    origin: datetime = T0,
) -> EnrichedEvent:
    """An enriched scan of `shipment_id`, `minutes` after `origin`."""
    scan = ShipmentEvent(
        event_id=event_id,
        shipment_id=shipment_id,
        carrier_id="CAR-A",
        hub_id="HUB-1",
        scan_type=scan_type,
        occurred_at=origin + timedelta(minutes=minutes),
        shipped_at=min(SHIPPED, origin),
        note=note,
    )
    return EnrichedEvent(
        event=scan,
        source=SourceRef(topic="shipments.events", partition=0, offset=0),
        carrier_name="Alpha",
        sla_hours=48.0,
        carrier_reliability=0.95,
        region="eu-west",
        hub_congestion=0.2,
        sla_due_at=SHIPPED + timedelta(hours=48),
    )


SCENARIO = [
    event("S-A", "A1", 5, "picked_up"),
    event("S-B", "B1", 10, "delay"),
    event("S-E", "E1", 0, "picked_up"),
    event("S-A", "A2", 40),
    event("S-C", "C1", 0),
    event("S-A", "A2", 40),  # duplicate
    event("S-B", "B2", 80, "delay"),
    event("S-D", "D1", 65, "exception", note="box crushed"),
    event("S-C", "C2", 180),
    event("S-A", "A3", 130, "delivered"),
    event("S-C", "C3", 30),  # its window closed when C2 arrived
    event("S-B", "B3", 150),
    event("S-F", "F1", 390),  # moves the stream clock past S-E's stuck time
]

EXPECTED = {
    ("S-A", "window_closed", "ok", ("A1", "A2"), 1),
    ("S-A", "end_of_input", "ok", ("A3",), 0),
    ("S-B", "window_closed", "ok", ("B1",), 0),
    ("S-B", "window_closed", "escalate", ("B2",), 0),
    ("S-B", "end_of_input", "ok", ("B3",), 0),
    ("S-C", "window_closed", "ok", ("C1",), 0),
    ("S-C", "end_of_input", "ok", ("C2",), 0),
    ("S-D", "end_of_input", "notify_customer", ("D1",), 0),
    ("S-E", "end_of_input", "ok", ("E1",), 0),
    ("S-E", "stuck_timer", "escalate", (), 0),
    ("S-F", "end_of_input", "ok", ("F1",), 0),
}

Keyed = tuple[str, Any]


def test_stream_clock_keeps_the_max_event_time_across_threads() -> None:
    clock = StreamClock()
    assert clock.max_event_time is None
    stamps = [T0 + timedelta(minutes=i) for i in range(400)]

    def observe_all(offset: int) -> None:
        for ts in stamps[offset::4]:
            clock.observe(ts)

    threads = [threading.Thread(target=observe_all, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.max_event_time == stamps[-1]


def build_flow(
    source: Any,
    decisions: list[Keyed],
    late: list[Keyed],
    settings: Settings,
    dead: Optional[list[DeadLetter]] = None,
) -> Dataflow:
    flow = Dataflow("decision_window_test")
    events = op.input("in", flow, source)
    keyed = op.key_on("key", events, lambda enriched: enriched.event.shipment_id)
    out = decision_window(
        "decide", keyed, **window_options(settings), clock=StreamClock(), live=LiveClock()
    )  # a live clock of its own: no catch-up reported by another test's source
    op.output("decisions", out.decisions, TestingSink(decisions))
    op.output("late", out.late, TestingSink(late))
    op.output("dead", out.dead_letters, TestingSink([] if dead is None else dead))
    return flow


def summary(decisions: list[Keyed]) -> set[tuple[Any, ...]]:
    rows = set()
    for key, decision in decisions:
        assert isinstance(decision, ShipmentDecision)
        assert key == decision.shipment_id and decision.enrichment is None
        rows.add(
            (
                key,
                decision.trigger,
                decision.action,
                tuple(decision.event_ids),
                decision.duplicate_events,
            )
        )
    assert len(rows) == len(decisions), "a decision was emitted twice"
    return rows


def test_one_worker_emits_one_decision_per_window_and_reports_late() -> None:
    decisions: list[Keyed] = []
    late: list[Keyed] = []
    run_main(build_flow(TestingSource(SCENARIO), decisions, late, Settings()))
    assert summary(decisions) == EXPECTED
    ((key, reported),) = late
    assert key == "S-C" and isinstance(reported, LateEvent)
    assert reported.event.event.event_id == "C3"
    assert "already closed" in reported.reason


def test_two_workers_give_the_same_decisions() -> None:
    single: list[Keyed] = []
    run_main(build_flow(TestingSource(SCENARIO), single, [], Settings()))
    cluster: list[Keyed] = []
    cluster_late: list[Keyed] = []
    flow = build_flow(TestingSource(SCENARIO), cluster, cluster_late, Settings())
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert summary(cluster) == summary(single) == EXPECTED
    assert {d.decision_id for _, d in cluster} == {d.decision_id for _, d in single}
    assert [item.event.event.event_id for _, item in cluster_late] == ["C3"]


def test_resume_after_an_abort_reproduces_the_same_decisions(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(tmp_path)
    items: list[Any] = [*SCENARIO[:7], TestingSource.ABORT(), *SCENARIO[7:]]
    decisions: list[Keyed] = []
    late: list[Keyed] = []
    flow = build_flow(TestingSource(items), decisions, late, Settings())
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    assert len(decisions) < len(EXPECTED)
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    first_time = {d.decision_id: d for _, d in decisions}
    assert summary([(d.shipment_id, d) for d in first_time.values()]) == EXPECTED
    assert [item.event.event.event_id for _, item in late] == ["C3"]


@dataclass
class _HoldOpenPartition(StatefulSourcePartition[EnrichedEvent, None]):
    """Emits its items (`batch` at a time; 0 = all at once), then stays open without items
    until `hold` has passed; `probe` (if any) is called right before the end of input."""

    items: list[EnrichedEvent]
    hold: timedelta
    times: dict[str, datetime]
    probe: Optional[Callable[[], None]] = None
    batch: int = 0
    _sent: int = 0
    _close_at: Optional[datetime] = field(default=None)

    def next_batch(self) -> list[EnrichedEvent]:
        now = datetime.now(UTC)
        if self._close_at is None:
            start, self._sent = self._sent, self._sent + (self.batch or len(self.items))
            if self._sent >= len(self.items):
                self._close_at = now + self.hold
                self.times["emitted"] = now
            return self.items[start : self._sent]
        if now < self._close_at:
            return []
        self.times["eof"] = now
        if self.probe is not None:
            self.probe()
        raise StopIteration()

    def next_awake(self) -> Optional[datetime]:
        return self._close_at

    def snapshot(self) -> None:
        return None


@dataclass
class HoldOpenSource(FixedPartitionedSource[EnrichedEvent, None]):
    """A one-partition source that keeps the dataflow alive for `hold` after its items."""

    items: list[EnrichedEvent]
    hold: timedelta
    times: dict[str, datetime] = field(default_factory=dict)
    probe: Optional[Callable[[], None]] = None
    batch: int = 0

    def list_parts(self) -> list[str]:
        return ["only"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Union[None, None]
    ) -> _HoldOpenPartition:
        return _HoldOpenPartition(self.items, self.hold, self.times, self.probe, self.batch)


@pytest.mark.timeout(10)
def test_stuck_timer_fires_by_wall_time_before_the_input_ends() -> None:
    source = HoldOpenSource(
        [event("S-Q", "Q1", 0, "picked_up"), event("S-R", "R1", 0, "delivered")],
        hold=timedelta(seconds=3),  # the 1 s timer has 2 s of margin before the input ends
    )
    decisions: list[Keyed] = []
    settings = Settings(stuck_after_hours=1 / 3600)
    run_main(build_flow(source, decisions, [], settings))
    stuck = [d for _, d in decisions if d.trigger == "stuck_timer"]
    assert [d.shipment_id for d in stuck] == ["S-Q"]
    fired_at = stuck[0].decided_at
    assert source.times["emitted"] + timedelta(seconds=0.9) <= fired_at < source.times["eof"]
    assert summary(decisions) == {
        ("S-Q", "stuck_timer", "escalate", (), 0),
        ("S-Q", "end_of_input", "ok", ("Q1",), 0),
        ("S-R", "end_of_input", "ok", ("R1",), 0),
    }


PAST = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
"""Scans of the live-keys test are in the past, so their Bytewax timers fire as soon as due."""


def test_live_keys_go_back_to_zero_as_windows_close_and_shipments_finish() -> None:
    """200 shipments, half delivered and half gone quiet, under a wall clock that follows the
    stream: their timers close every window and report the quiet ones stuck, so the live count
    rises with the stream and falls back to the one shipment still open before the input ends."""
    items = []
    for n in range(200):
        last = "delivered" if n % 2 else "arrived_hub"
        items += [
            event(f"S-{n}", f"S-{n}-1", 2 * n, "picked_up", origin=PAST),
            event(f"S-{n}", f"S-{n}-2", 2 * n + 90, last, origin=PAST),
        ]
    items.sort(key=lambda e: e.event.occurred_at)
    items.append(event("S-END", "END-1", 3 * 24 * 60, origin=PAST))  # 3 days later
    clock = {"now": PAST}
    seen: list[int] = []
    before_eof: list[int] = []

    def follow(e: EnrichedEvent) -> EnrichedEvent:
        clock["now"] = max(clock["now"], e.event.occurred_at)
        return e

    source = HoldOpenSource(
        items,
        hold=timedelta(seconds=1),
        probe=lambda: before_eof.append(live_state_keys("live_keys_test", "decide")),
        batch=1,  # the clock follows each scan before the window step sees it
    )
    flow = Dataflow("live_keys_test")
    keyed = op.key_on("key", op.map("clock", op.input("in", flow, source), follow), _shipment)
    live = LiveClock(now=lambda: clock["now"])
    out = decision_window("decide", keyed, **window_options(Settings()), live=live)
    counted = op.inspect(
        "count", out.decisions, lambda *_: seen.append(live_state_keys("live_keys_test", "decide"))
    )
    decisions: list[Keyed] = []
    op.output("decisions", counted, TestingSink(decisions))
    run_main(flow)

    assert max(seen) >= 100, "the windows should have held many shipments at once"
    assert before_eof == [1], "only S-END is still open before the end of the input"
    assert live_state_keys("live_keys_test", "decide") == 0, "the end of input drops the rest"
    triggers = {d.trigger for _, d in decisions if d.shipment_id != "S-END"}
    assert triggers == {"window_closed", "stuck_timer"}, "timers, not the end, closed them"
    stuck = {d.shipment_id for _, d in decisions if d.trigger == "stuck_timer"}
    assert stuck == {f"S-{n}" for n in range(0, 200, 2)}


def _shipment(e: EnrichedEvent) -> str:
    return e.event.shipment_id


# --- no shipment stops the flow ------------------------------------------------------------------


def at_time(shipment_id: str, event_id: str, occurred_at: datetime, offset: int) -> EnrichedEvent:
    """A valid scan at any event time, fed to the window directly (validate never saw it)."""
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
        source=SourceRef(topic="shipments.events", partition=0, offset=offset),
        carrier_name="Alpha",
        sla_hours=48.0,
        carrier_reliability=0.95,
        region="eu-west",
        hub_congestion=0.2,
        sla_due_at=occurred_at,
    )


def test_scans_at_the_ends_of_the_datetime_range_do_not_stop_the_flow() -> None:
    """A schema-valid scan in the last minute of the year 9999 (and one in the year 1) used to
    raise `OverflowError` in the window's deadline and stop the dataflow; now every shipment is
    decided, the extreme ones included."""
    last = datetime.max.replace(tzinfo=UTC) - timedelta(seconds=30)
    first = datetime.min.replace(tzinfo=UTC) + timedelta(seconds=30)
    items = [
        event("S-A", "A1", 5),
        at_time("S-MAX", "M1", last, offset=1),
        event("S-A", "A2", 40),
        at_time("S-MIN", "N1", first, offset=2),
        event("S-A", "A3", 80),  # closes S-A's first window while the flow runs
    ]
    decisions: list[Keyed] = []
    late: list[Keyed] = []
    dead: list[DeadLetter] = []
    run_main(build_flow(TestingSource(items), decisions, late, Settings(), dead))
    windows = {(k, tuple(d.event_ids)) for k, d in decisions if d.trigger != "stuck_timer"}
    assert windows == {
        ("S-A", ("A1", "A2")),
        ("S-A", ("A3",)),
        ("S-MAX", ("M1",)),
        ("S-MIN", ("N1",)),
    }
    assert (late, dead) == ([], [])
    (max_window,) = [d for k, d in decisions if k == "S-MAX" and d.trigger != "stuck_timer"]
    assert max_window.window_end == datetime.max.replace(tzinfo=UTC)


def test_a_shipment_that_makes_the_window_raise_is_dead_lettered_and_the_flow_goes_on() -> None:
    """A scan whose enrichment carries a naive SLA time (an upstream defect) makes the rules
    raise `TypeError` when its window closes. The scan that closes it becomes a
    `processing_error` dead letter naming the step and the exception; the timer that retries
    the close fails too, so the shipment's state is dead-lettered (naming its undecided scan)
    and dropped. Every other shipment is decided as usual."""
    broken = event("S-BAD", "BAD1", 10)
    naive = EnrichedEvent(**{**broken.__dict__, "sla_due_at": datetime(2026, 11, 29, 7, 0)})
    closing = event("S-BAD", "BAD2", 80)
    items = [*SCENARIO[:6], naive, *SCENARIO[6:10], closing, *SCENARIO[10:]]
    decisions: list[Keyed] = []
    late: list[Keyed] = []
    dead: list[DeadLetter] = []
    run_main(build_flow(TestingSource(items), decisions, late, Settings(), dead))
    assert summary(decisions) == EXPECTED, "the other shipments are decided as before"
    assert [item.event.event.event_id for _, item in late] == ["C3"]
    scan_letter, state_letter = dead
    assert (scan_letter.error_type, scan_letter.step, scan_letter.key) == (
        "processing_error",
        "decision_window_test.decide",
        "S-BAD",
    )
    assert scan_letter.error.startswith("TypeError while adding the scan: can't subtract")
    assert b"BAD2" in base64.b64decode(scan_letter.raw_base64)
    assert state_letter.error_type == "processing_error" and state_letter.key == "S-BAD"
    assert state_letter.error.startswith("TypeError in a timer: can't subtract")
    assert "undecided: BAD1" in state_letter.error


class _DeadlineFails(ShipmentWindows):
    """A state machine whose deadline computation raises (a defect stands in for any bug)."""

    def next_deadline(self, now: Reading) -> Optional[datetime]:
        raise ValueError("no deadline")


def test_a_failing_deadline_asks_for_a_timer_now_that_drops_the_state() -> None:
    """`notify_at` cannot emit: it keeps the error and asks Bytewax to call `on_notify` at once,
    which dead-letters the shipment's state and drops it (instead of failing forever)."""
    wall_now = {"t": T0}
    live = LiveClock(now=lambda: wall_now["t"])
    failures = Failures(step="shipments.decision_window", topic="shipments.events")
    logic = DecisionWindowLogic(
        _DeadlineFails(WindowParams.from_settings(Settings().shipments)),
        clock=live,
        stream_clock=StreamClock(),
        failures=failures,
    )
    emitted, keep = logic.on_item(event("S-Z", "Z1", 0))
    assert (list(emitted), keep) == ([], StatefulLogic.RETAIN)
    assert logic.notify_at() == T0
    (letter,), keep = logic.on_notify()
    assert keep == StatefulLogic.DISCARD
    assert isinstance(letter, DeadLetter) and letter.step == "shipments.decision_window"
    assert letter.error.startswith("ValueError computing the next deadline: no deadline")
    assert "undecided: Z1" in letter.error and letter.source.topic == "shipments.events"


def test_a_store_of_version_1_snapshots_resumes_with_its_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first run writes its snapshots in the version-1 layout (the clock as event time and
    wall time); the resumed run migrates every restored shipment and decides as if never
    stopped."""
    written_by_v2 = WindowsState.to_state

    def as_version_1(self: WindowsState, live: timedelta) -> dict[str, Any]:
        state = dict(written_by_v2(self, live))
        watermark = state.pop("watermark")
        return {**state, "version": 1, "clock": (watermark, datetime.now(UTC))}

    migrated: list[str] = []

    def counted(state: dict[str, Any]) -> dict[str, Any]:
        migrated.append(state["shipment_id"])
        return decision_state._v1_to_v2(state)

    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(tmp_path)
    items: list[Any] = [*SCENARIO[:7], TestingSource.ABORT(), *SCENARIO[7:]]
    decisions: list[Keyed] = []
    late: list[Keyed] = []
    flow = build_flow(TestingSource(items), decisions, late, Settings())
    with monkeypatch.context() as patched:
        patched.setattr(WindowsState, "to_state", as_version_1)
        run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    monkeypatch.setitem(decision_state.MIGRATIONS, 1, counted)
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    assert set(migrated) == {"S-A", "S-B", "S-C", "S-E"}, "restored from version-1 snapshots"
    first_time = {d.decision_id: d for _, d in decisions}
    assert summary([(d.shipment_id, d) for d in first_time.values()]) == EXPECTED
    assert [item.event.event.event_id for _, item in late] == ["C3"]
