"""The state one shipment's decision windows keep, and its versioned recovery snapshot.

`WindowsState` is the base of `operators.decisions.ShipmentWindows`: its fields and their
(de)serialisation, without the state machine. Only small plain data is kept (it is snapshotted
every epoch): open windows' scans as tuples, the last scan, the delay count of closed windows, the
starts of the last closed windows, the clock. A snapshot written by another `STATE_VERSION` or
window length is refused with `IncompatibleStateError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from operators.rules import Scan

if TYPE_CHECKING:
    from typing import Self

    from operators.decisions import WindowParams

STATE_VERSION = 1
"""Layout of `ShipmentWindows.to_state()`, including the field order of `Scan`; bump on change."""


class IncompatibleStateError(ValueError):
    """A recovery snapshot was written by another state version or window length."""


@dataclass
class OpenWindow:
    """The scans of one open window and the number of duplicates it received."""

    scans: list[Scan] = field(default_factory=list)
    duplicates: int = 0


class WindowsState:
    """One shipment's window state: clock, open and closed windows, last scan, flags."""

    def __init__(self, params: WindowParams) -> None:
        self._params = params
        self._shipment_id = ""
        self._base: Optional[datetime] = None  # largest event time that moved the watermark
        self._base_wall: Optional[datetime] = None  # wall time at which it did
        self._open: dict[datetime, OpenWindow] = {}
        self._closed: tuple[datetime, ...] = ()
        self._delays_closed = 0
        self._delivered_at: Optional[datetime] = None
        self._last: Optional[Scan] = None
        self._stuck_reported = False
        self._ended = False

    @property
    def latest_event_time(self) -> Optional[datetime]:
        """The largest event time this shipment has seen (its clock base or last scan), if any."""
        last = None if self._last is None else self._last.occurred_at
        return max((t for t in (self._base, last) if t is not None), default=None)

    def to_state(self) -> dict[str, Any]:
        """A snapshot of plain values only (no classes of this project), safe to pickle."""
        return {
            "version": STATE_VERSION,
            "window_seconds": self._params.window.total_seconds(),
            "shipment_id": self._shipment_id,
            "clock": (self._base, self._base_wall),
            "open": tuple(
                (start, tuple(tuple(scan) for scan in window.scans), window.duplicates)
                for start, window in sorted(self._open.items())
            ),
            "closed": self._closed,
            "delays_closed": self._delays_closed,
            "delivered_at": self._delivered_at,
            "last": None if self._last is None else tuple(self._last),
            "stuck_reported": self._stuck_reported,
            "ended": self._ended,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], params: WindowParams) -> Self:
        """Rebuild from `to_state()`; refuses a snapshot of another version or window length."""
        _check_compatible(state, params)
        windows = cls(params)
        windows._shipment_id = state["shipment_id"]
        windows._base, windows._base_wall = state["clock"]
        windows._open = {
            start: OpenWindow([Scan(*scan) for scan in scans], duplicates)
            for start, scans, duplicates in state["open"]
        }
        windows._closed = tuple(state["closed"])
        windows._delays_closed = state["delays_closed"]
        windows._delivered_at = state["delivered_at"]
        windows._last = None if state["last"] is None else Scan(*state["last"])
        windows._stuck_reported = state["stuck_reported"]
        windows._ended = state["ended"]
        return windows


def _check_compatible(state: dict[str, Any], params: WindowParams) -> None:
    """Raise `IncompatibleStateError` unless `state` has this version and window length."""
    version = state.get("version") if isinstance(state, dict) else None
    if version != STATE_VERSION:
        raise IncompatibleStateError(
            f"decision window snapshot has state version {version!r}, this build reads "
            f"version {STATE_VERSION}; resume from a recovery store written by this version "
            "or start with a new one"
        )
    if state["window_seconds"] != params.window.total_seconds():
        raise IncompatibleStateError(
            f"decision window snapshot was written with {state['window_seconds']:.0f} s "
            f"windows, the settings ask for {params.window.total_seconds():.0f} s; windows "
            "cannot change length across a resume"
        )
