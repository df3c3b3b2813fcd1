"""When a dependency (Redis) counts as down, and when it may be tried again.

A failure marks it down for `retry_seconds`; while down, callers skip it without trying (no
timeout per call). Once the window has passed, the first caller probes it and the window is
extended for everyone else, so a dead dependency costs one attempt per `retry_seconds`. Epochs tell
a success that began before the latest failure from a real recovery.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class DownWindow:
    """Thread-safe up/down state of one dependency, with an injected clock."""

    def __init__(self, retry_seconds: float, *, clock: Callable[[], float] = time.monotonic):
        self._retry = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until: float | None = None
        self._epoch = 0

    @property
    def retry_seconds(self) -> float:
        return self._retry

    @property
    def up(self) -> bool:
        """False between a failure and the next success."""
        with self._lock:
            return self._down_until is None

    def begin(self) -> int | None:
        """The epoch to try in, or None while marked down (a passed window lets one probe)."""
        with self._lock:
            if self._down_until is not None:
                now = self._clock()
                if now < self._down_until:
                    return None
                self._down_until = now + self._retry
            return self._epoch

    def succeeded(self, epoch: int) -> bool:
        """A try begun in `epoch` worked; True when that ends an outage."""
        with self._lock:
            recovered = self._down_until is not None and epoch == self._epoch
            if recovered:
                self._down_until = None
            return recovered

    def failed(self) -> bool:
        """A try failed: down for `retry_seconds` from now; True when this starts an outage."""
        with self._lock:
            went_down = self._down_until is None
            if went_down:
                self._epoch += 1
            self._down_until = self._clock() + self._retry
            return went_down
