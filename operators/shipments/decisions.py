"""The per-shipment decision state machine (no Bytewax import; the clocks are always passed in).

`ShipmentWindows` holds one shipment's tumbling event-time windows, aligned to the UTC epoch. Its
watermark is the largest event time seen for this shipment plus the live time elapsed since it
was seen (`operators.runtime.clock.LiveClock`: wall time the flow ran with its input caught up, so
neither downtime nor a catch-up on a backlog moves it), and it never goes back. A window `[s, e)`
closes, with exactly one decision, once the watermark reaches `e + allowed lateness`. An event whose
window has closed is reported as a `LateEvent`: it never reopens a window and changes nothing else.
A shipment with no scan for `stuck_after` (and not delivered) gets one `escalate` decision.

Datetime arithmetic on event times saturates at the ends of the datetime range
(`operators.runtime.clock.shifted`): a valid scan dated in the year 9999 closes its window like any
other instead of raising `OverflowError`.

The state it keeps and its recovery snapshot (`to_state`, `from_state`) are those of its base
`operators.shipments.decision_state.WindowsState`, which also holds its parameters (`WindowParams`);
`STATE_VERSION`, `IncompatibleStateError` and `WindowParams` are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from typing import Literal, Optional

from operators.runtime.clock import MAX_UTC, Reading, shifted
from operators.runtime.memo import remember
from operators.shipments.decision_state import STATE_VERSION as STATE_VERSION
from operators.shipments.decision_state import IncompatibleStateError as IncompatibleStateError
from operators.shipments.decision_state import OpenWindow, WindowsState
from operators.shipments.decision_state import WindowParams as WindowParams
from operators.shipments.domain import EnrichedEvent
from operators.shipments.rules import (
    Scan,
    ShipmentHistory,
    Verdict,
    decide_stuck,
    decide_window,
)
from schemas.shipments import DecisionTrigger, ShipmentDecision, decision_from_rules

CLOSED_WINDOWS_KEPT = 8
MAX_WINDOW_EVENTS = 1000
MAX_NOTES = 20
MAX_REASONS = 20
UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_SHARED_STARTS = 4096
_STARTS: dict[datetime, datetime] = {}
"""Window starts handed out, each kept once (equal datetimes are interchangeable); cleared when
it holds `MAX_SHARED_STARTS`."""


_ISO: dict[datetime, str] = {}
"""`isoformat()` of the UTC window bounds seen last; cleared when it holds `MAX_SHARED_STARTS`."""


def _iso(when: datetime) -> str:
    """`when.isoformat()`, kept for a UTC datetime (equal datetimes in other zones are not
    written alike, so those are not kept)."""
    if when.tzinfo is not UTC:
        return when.isoformat()
    text = _ISO.get(when)
    if text is None:
        text = remember(_ISO, MAX_SHARED_STARTS, when, when.isoformat())
    return text


def decision_id(shipment_id: str, start: datetime, end: datetime, kind: str) -> str:
    """`deterministic_id(shipment_id, start.isoformat(), end.isoformat(), kind)`, with the
    bounds' text kept (`_iso`) and the parts joined in one step."""
    text = f"{shipment_id}\x1f{_iso(start)}\x1f{_iso(end)}\x1f{kind}"
    return blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class LateEvent:
    """An event that arrived after its window closed (or could not join it), and why."""

    event: EnrichedEvent
    reason: str


@dataclass
class Emitted:
    """What one call of the state machine produced."""

    decisions: list[ShipmentDecision] = field(default_factory=list)
    late: list[LateEvent] = field(default_factory=list)


class ShipmentWindows(WindowsState):
    """One shipment's open decision windows, event clock and stuck timer."""

    __slots__ = ()

    # --- the state machine -------------------------------------------------------------------

    def on_event(self, enriched: EnrichedEvent, now: Reading) -> Emitted:
        """Add one scan: report it late, or let it move the clock, close due windows, join."""
        scan = Scan.from_event(enriched)
        start = self._window_start(scan.occurred_at)
        watermark = self.watermark(now.live)
        reason = self._rejection(scan, start, watermark)
        if reason is not None:
            return Emitted(late=[LateEvent(enriched, reason)])
        self._shipment_id = enriched.event.shipment_id
        watermark = self._advance_clock(scan.occurred_at, now.live, watermark)
        emitted = self._close_due(now, watermark)
        self._admit(scan, start)
        return emitted

    def on_timer(self, now: Reading) -> Emitted:
        """Close the windows and fire the stuck timer that the live time made due."""
        return self._close_due(now, self.watermark(now.live))

    def on_eof(self, now: Reading, stream_max_event_time: Optional[datetime]) -> Emitted:
        """End of a bounded input: close every window, then judge stuck by the stream's clock."""
        watermark = self.watermark(now.live)
        due = self._due_starts(watermark)
        closing: list[tuple[datetime, DecisionTrigger]] = [(s, "window_closed") for s in due]
        closing += [(s, "end_of_input") for s in sorted(self._open) if s not in due]
        judged_by = (watermark, stream_max_event_time)
        stuck = any(t is not None and self._stuck_due(t) for t in judged_by)
        emitted = self._close(closing, stuck=stuck, wall=now.wall)
        self._ended = True
        return emitted

    def next_deadline(self, now: Reading) -> Optional[datetime]:
        """The wall time at which the earliest pending window close or stuck timer can be due.

        The live time moves like the wall time unless the input is catching up; then the next
        look is at least `catch_up_recheck` away. `None` when nothing is pending or the deadline
        lies beyond the datetime range.
        """
        watermark = self.watermark(now.live)
        if watermark is None:
            return None
        reach = self._params.reach
        due = [shifted(start, reach) for start in self._open]
        if self._last is not None and self._stuck_armed():
            due.append(self._stuck_time(self._last))
        if not due:
            return None
        remaining = min(due) - watermark
        if remaining <= timedelta(0):
            return now.wall
        if now.catching_up:
            remaining = max(remaining, self._params.catch_up_recheck)
        deadline = shifted(now.wall, remaining)
        return None if deadline == MAX_UTC else deadline

    @property
    def is_finished(self) -> bool:
        """Nothing left to decide: the input ended, or no window is open and the shipment is
        delivered or was reported stuck."""
        quiet = not self._open and (self._delivered_at is not None or self._stuck_reported)
        return self._ended or quiet

    # --- steps ---------------------------------------------------------------------------------

    def _rejection(
        self, scan: Scan, start: datetime, watermark: Optional[datetime]
    ) -> Optional[str]:
        """Why `scan` (of the window at `start`) cannot join it, or `None` when it can."""
        end = shifted(start, self._params.window)
        if start in self._closed:
            return f"window {start.isoformat()}/{end.isoformat()} already closed"
        if watermark is not None and shifted(end, self._params.lateness) <= watermark:
            return (
                f"event time {scan.occurred_at.isoformat()} is behind the watermark "
                f"{watermark.isoformat()} by more than the allowed lateness"
            )
        window = self._open.get(start)
        if (
            window is not None
            and len(window.scans) >= MAX_WINDOW_EVENTS
            and all(kept.event_id != scan.event_id for kept in window.scans)
        ):
            return f"window {start.isoformat()} already holds {MAX_WINDOW_EVENTS} events"
        return None

    def _advance_clock(
        self, event_time: datetime, live: timedelta, watermark: Optional[datetime]
    ) -> datetime:
        """Move the watermark (`watermark` at live time `live`) to `event_time` if it is ahead;
        the watermark at `live` after that."""
        if watermark is None or event_time > watermark:
            self._base = event_time
            self._base_live = live
            return event_time
        return watermark

    def _admit(self, scan: Scan, start: datetime) -> None:
        window = self._open.get(start)
        if window is None:
            window = self._open[start] = OpenWindow()
        if any(kept.event_id == scan.event_id for kept in window.scans):
            window.duplicates += 1
            return
        window.scans.append(scan)
        if scan.scan_type == "delivered" and (
            self._delivered_at is None or scan.occurred_at < self._delivered_at
        ):
            self._delivered_at = scan.occurred_at
        if self._last is None or scan.occurred_at > self._last.occurred_at:
            self._last = scan
            self._stuck_reported = False

    def _close_due(self, now: Reading, watermark: Optional[datetime]) -> Emitted:
        """Close what `watermark` (the watermark at `now.live`) makes due."""
        if watermark is None:
            return Emitted()
        closing: list[tuple[datetime, DecisionTrigger]] = [
            (start, "window_closed") for start in self._due_starts(watermark)
        ]
        return self._close(closing, stuck=self._stuck_due(watermark), wall=now.wall)

    def _due_starts(self, watermark: Optional[datetime]) -> list[datetime]:
        """Starts of the open windows that `watermark` closes, in order."""
        if watermark is None:
            return []
        if not self._open:
            return []
        reach = self._params.reach
        if len(self._open) == 1:  # the most frequent case, without sorting
            (start,) = self._open
            return [start] if shifted(start, reach) <= watermark else []
        return sorted(start for start in self._open if shifted(start, reach) <= watermark)

    def _close(
        self, closing: list[tuple[datetime, DecisionTrigger]], *, stuck: bool, wall: datetime
    ) -> Emitted:
        """Decide the windows `closing` (in order) and, if `stuck`, the stuck report.

        Every decision is made before the state changes: an exception leaves the state as it
        was, with every scan still in its window.
        """
        if not closing and not stuck:  # nothing to decide: nothing changes
            return Emitted()
        decisions = []
        delays = self._delays_closed
        for start, trigger in closing:
            decisions.append(self._window_decision(start, trigger, wall, delays_before=delays))
            delays += sum(1 for scan in self._open[start].scans if scan.scan_type == "delay")
        if stuck:
            decisions.append(self._stuck_decision(wall))
        for start, _ in closing:
            del self._open[start]
            self._closed = (*self._closed, start)[-CLOSED_WINDOWS_KEPT:]
        self._delays_closed = delays
        self._stuck_reported = self._stuck_reported or stuck
        return Emitted(decisions=decisions)

    def _stuck_armed(self) -> bool:
        return self._last is not None and self._delivered_at is None and not self._stuck_reported

    def _stuck_due(self, event_time: datetime) -> bool:
        if self._last is None or not self._stuck_armed():
            return False
        return event_time >= self._stuck_time(self._last)

    def _stuck_time(self, last: Scan) -> datetime:
        return shifted(last.occurred_at, self._params.stuck_after)

    def _window_start(self, ts: datetime) -> datetime:
        window = self._params.window
        start = shifted(UTC_EPOCH, ((ts - UTC_EPOCH) // window) * window)
        # Live shipments share few window starts: keep one object of each, not one per shipment.
        shared = _STARTS.get(start)
        if shared is None:
            shared = remember(_STARTS, MAX_SHARED_STARTS, start, start)
        return shared

    # --- decisions -----------------------------------------------------------------------------

    def _window_decision(
        self, start: datetime, trigger: DecisionTrigger, now: datetime, *, delays_before: int
    ) -> ShipmentDecision:
        """The decision of the open window at `start` (the state is not changed)."""
        window = self._open[start]
        delivered_before = self._delivered_at
        if delivered_before is not None and delivered_before >= start:
            delivered_before = None
        history = ShipmentHistory(delays_before=delays_before, delivered_at=delivered_before)
        scans = (
            list(window.scans)
            if len(window.scans) == 1
            else sorted(window.scans, key=lambda scan: (scan.occurred_at, scan.event_id))
        )
        verdict = decide_window(scans, history, params=self._params.rules)
        return self._decision(
            kind="window",
            trigger=trigger,
            bounds=(start, shifted(start, self._params.window)),
            verdict=verdict,
            scans=scans,
            duplicates=window.duplicates,
            facts=scans[-1],
            now=now,
        )

    def _stuck_decision(self, now: datetime) -> ShipmentDecision:
        """The stuck report of the last scan (the state is not changed)."""
        last = self._last
        assert last is not None, "a stuck timer is only armed after a scan"
        due = self._stuck_time(last)
        verdict = decide_stuck(last, stuck_after=self._params.stuck_after)
        return self._decision(
            kind="stuck",
            trigger="stuck_timer",
            bounds=(last.occurred_at, due),
            verdict=verdict,
            scans=[],
            duplicates=0,
            facts=last,
            now=now,
        )

    def _decision(
        self,
        *,
        kind: Literal["window", "stuck"],
        trigger: DecisionTrigger,
        bounds: tuple[datetime, datetime],
        verdict: Verdict,
        scans: list[Scan],
        duplicates: int,
        facts: Scan,
        now: datetime,
    ) -> ShipmentDecision:
        start, end = bounds
        if len(scans) == 1:  # most windows: the lists without their loops
            only = scans[0]
            event_ids, notes = [only.event_id], ([only.note] if only.note else [])
        else:
            event_ids = [scan.event_id for scan in scans]
            notes = [scan.note for scan in scans if scan.note][:MAX_NOTES]
        reasons = verdict.reasons
        return decision_from_rules(
            decision_id=decision_id(self._shipment_id, start, end, kind),
            shipment_id=self._shipment_id,
            action=verdict.action,
            reasons=list(reasons if len(reasons) <= MAX_REASONS else reasons[:MAX_REASONS]),
            risk=verdict.risk,
            trigger=trigger,
            window_start=start,
            window_end=end,
            event_ids=event_ids,
            duplicate_events=duplicates,
            carrier_id=facts.carrier_id,
            hub_id=facts.hub_id,
            region=facts.region.strip()[:40] or "unknown",
            last_scan_at=facts.occurred_at,
            sla_due_at=facts.sla_due_at,
            notes=notes,
            decided_at=now,
        )
