"""The clocks of event-time windows: the stream's event time, and the wall time that may stand in
for it.

A quiet key's event clock moves with wall time (its scans are assumed to be live), but only with
wall time that the flow really ran with its input caught up. `LiveClock` measures that time: it
starts at zero when the process starts (so a stop, a crash and the downtime until a resume never
count), and it stands still while the input is catching up on a backlog (any input partition of
this process more than `SURGEFLOW_CATCH_UP_LAG_RECORDS` behind its end), when the records' own
event times say how far the stream has come. The Kafka source reports each partition's lag to the
process-wide `live_clock()`; windows read it; tests inject their own.

`StreamClock` records the largest event time any worker of this process has seen: at the end of
a bounded input a shipment that went quiet hours before the rest of the stream is stuck, even
though its own key saw nothing after its last scan. It is updated before the keyed exchange, so
it sees every item read in this process. With several processes (`-i/-a`) each process has its
own clocks, covering the partitions it reads.

Both are plain Python (no Bytewax) and thread-safe: the workers of one process share them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Optional

from schemas.common import utc_now

MIN_UTC = datetime.min.replace(tzinfo=UTC)
MAX_UTC = datetime.max.replace(tzinfo=UTC)


def shifted(ts: datetime, delta: timedelta) -> datetime:
    """`ts + delta`, held at the ends of the datetime range instead of raising `OverflowError`.

    Event times come from records: a valid scan in the year 9999 plus a window length must not
    stop the flow.
    """
    try:
        return ts + delta
    except OverflowError:
        return MAX_UTC if delta > timedelta(0) else MIN_UTC


@dataclass(frozen=True)
class Reading:
    """One look at the clocks."""

    wall: datetime
    """The wall time, timezone-aware UTC: it stamps decisions and schedules timers."""
    live: timedelta
    """Wall time this process has run with its input caught up (never goes back)."""
    catching_up: bool = False
    """The input is reading a backlog now: `live` stands still until it has caught up."""


class LiveClock:
    """Wall time this process has run while its input was caught up, and the catch-up signal.

    `report(part, behind)` is called by the source for each input partition after each batch;
    the input is catching up while any reported partition is behind. `read()` gives the wall time
    and the live time: wall time since this clock was made, less the time spent catching up.
    """

    def __init__(self, now: Callable[[], datetime] = utc_now) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._started = now()
        self._behind: set[str] = set()
        self._paused = timedelta(0)
        self._paused_since: Optional[datetime] = None
        self._last_live = timedelta(0)

    def report(self, part: str, behind: bool) -> None:
        """Input partition `part` is (or is no longer) behind by more than the threshold."""
        with self._lock:
            was = bool(self._behind)
            if behind:
                self._behind.add(part)
            else:
                self._behind.discard(part)
            if bool(self._behind) == was:
                return
            at = self._now()
            if self._behind:
                self._paused_since = at
            elif self._paused_since is not None:
                self._paused += max(at - self._paused_since, timedelta(0))
                self._paused_since = None

    @property
    def catching_up(self) -> bool:
        """Some input partition of this process is behind by more than the threshold."""
        return bool(self._behind)

    def read(self) -> Reading:
        """The wall time now and the live time (both from one look at the wall clock)."""
        with self._lock:
            wall = self._now()
            paused = self._paused
            if self._paused_since is not None:
                paused += max(wall - self._paused_since, timedelta(0))
            live = max(wall - self._started - paused, self._last_live)
            self._last_live = live
            return Reading(wall=wall, live=live, catching_up=bool(self._behind))


_PROCESS_CLOCK: Optional[LiveClock] = None
_PROCESS_CLOCK_LOCK = threading.Lock()


def live_clock() -> LiveClock:
    """This process's `LiveClock`, made on first use: what sources report to by default and
    windows read by default."""
    global _PROCESS_CLOCK
    with _PROCESS_CLOCK_LOCK:
        if _PROCESS_CLOCK is None:
            _PROCESS_CLOCK = LiveClock()
        return _PROCESS_CLOCK


class StreamClock:
    """The largest event time seen so far in this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._max_event_time: Optional[datetime] = None

    def observe(self, ts: datetime) -> None:
        """Record one event time; only a new maximum changes the clock."""
        with self._lock:
            if self._max_event_time is None or ts > self._max_event_time:
                self._max_event_time = ts

    @property
    def max_event_time(self) -> Optional[datetime]:
        """The largest event time observed, or `None` before the first event."""
        return self._max_event_time
