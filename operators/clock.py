"""The event-time clock of a whole stream, shared by every worker of one flow in one process.

Per-key watermarks only move with their own key's events (and wall time). At the end of a bounded
input, a shipment that went quiet hours before the rest of the stream is stuck, even though its
own key saw nothing after its last scan: `StreamClock` records the largest event time any worker
of this process has seen, so the decision window can tell. It is plain Python (no Bytewax) and is
updated before the keyed exchange, so it sees every item read in this process.

With several processes (`-i/-a`) each process has its own clock covering the partitions it reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Optional

from schemas.common import utc_now


class StreamClock:
    """The largest event time seen so far, and the wall time at which it was seen.

    Thread-safe: workers of one process call `observe` concurrently; a lock keeps the event time
    and its wall time consistent with each other.
    """

    def __init__(self, now: Callable[[], datetime] = utc_now) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._max_event_time: Optional[datetime] = None
        self._observed_at: Optional[datetime] = None

    def observe(self, ts: datetime) -> None:
        """Record one event time; only a new maximum changes the clock."""
        with self._lock:
            if self._max_event_time is None or ts > self._max_event_time:
                self._max_event_time = ts
                self._observed_at = self._now()

    @property
    def max_event_time(self) -> Optional[datetime]:
        """The largest event time observed, or `None` before the first event."""
        return self._max_event_time

    @property
    def observed_at(self) -> Optional[datetime]:
        """The wall time at which the current maximum was observed, or `None`."""
        return self._observed_at

    def watermark(self) -> Optional[datetime]:
        """The max event time advanced by the wall time elapsed since it was seen (never less)."""
        with self._lock:
            if self._max_event_time is None or self._observed_at is None:
                return None
            elapsed = max(self._now() - self._observed_at, timedelta(0))
            return self._max_event_time + elapsed
