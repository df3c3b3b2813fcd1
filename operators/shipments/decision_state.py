"""The state one shipment's decision windows keep, and its versioned recovery snapshot.

`WindowsState` is the base of `operators.shipments.decisions.ShipmentWindows`: its fields and their
(de)serialisation, without the state machine. Only small plain data is kept (it is snapshotted
every epoch): open windows' scans as tuples, the last scan, the delay count of closed windows, the
starts of the last closed windows, the clock. Snapshots go through `WINDOW_STATE`
(`operators.runtime.state.VersionedState`): older versions are migrated, and a snapshot of a
version this build cannot migrate, or written with another window length, is refused with
`IncompatibleStateError` (the flow stops; its scans are not dropped).

The clock is snapshotted as the event time the shipment's watermark had reached (its latest
event time plus the live time since), never as a wall time: a restored shipment's clock starts
from that point at the resume, so the time the flow was down does not move it.

Versions: 1 kept the clock as (largest event time, wall time it was seen); its snapshots load as
version 2 with the watermark at that event time (the live time between the scan and the snapshot
is not known, so it restarts from the resume: timers fire later, never earlier).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Optional

from operators.config.domains import ShipmentsSettings
from operators.errors import IncompatibleStateError as IncompatibleStateError
from operators.runtime.clock import shifted
from operators.runtime.state import VersionedState
from operators.shipments.rules import RuleParams, Scan

if TYPE_CHECKING:
    from typing import Self

STATE_VERSION = 2
"""Layout of `ShipmentWindows.to_state()`, including the field order of `Scan`; bump on change
and add a migration from the previous layout to `MIGRATIONS`."""


def _v1_to_v2(state: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept `clock = (event time, wall time)`; version 2 keeps the watermark only."""
    migrated = {k: v for k, v in state.items() if k != "clock"}
    base, _wall = state["clock"]
    return {**migrated, "version": 2, "watermark": base}


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}
"""State version → the function that turns its snapshot into the next version's."""

WINDOW_STATE = VersionedState("decision window", STATE_VERSION, MIGRATIONS)
"""The snapshot layout of one shipment's windows; not disposable (its scans would be lost)."""


@dataclass(frozen=True)
class WindowParams:
    """Window length, allowed lateness, the stuck timeout and the rule thresholds.

    `catch_up_recheck` is how often a shipment with pending deadlines looks at the clock again
    while the input is catching up (its deadlines cannot come before the catch-up ends).
    """

    window: timedelta
    lateness: timedelta
    stuck_after: timedelta
    rules: RuleParams = field(default_factory=RuleParams)
    catch_up_recheck: timedelta = timedelta(seconds=5)

    @functools.cached_property
    def reach(self) -> timedelta:
        """How long after its start a window closes: its length plus the allowed lateness."""
        return self.window + self.lateness

    @classmethod
    def from_settings(cls, shipments: ShipmentsSettings) -> WindowParams:
        return cls(
            window=timedelta(minutes=shipments.window_minutes),
            lateness=timedelta(minutes=shipments.allowed_lateness_minutes),
            stuck_after=timedelta(hours=shipments.stuck_after_hours),
            rules=RuleParams.from_settings(shipments),
        )


@dataclass(slots=True)
class OpenWindow:
    """The scans of one open window and the number of duplicates it received."""

    scans: list[Scan] = field(default_factory=list)
    duplicates: int = 0


class WindowsState:
    """One shipment's window state: clock, open and closed windows, last scan, flags.

    Slotted: one is kept per live shipment, so its attributes take no per-instance dict."""

    __slots__ = (
        "_base", "_base_live", "_closed", "_delays_closed", "_delivered_at", "_ended", "_last",
        "_open", "_params", "_shipment_id", "_stuck_reported",
    )  # fmt: skip

    def __init__(self, params: WindowParams) -> None:
        self._params = params
        self._shipment_id = ""
        self._base: Optional[datetime] = None  # event time the watermark last moved to
        self._base_live = timedelta(0)  # live time at which it did
        self._open: dict[datetime, OpenWindow] = {}
        self._closed: tuple[datetime, ...] = ()
        self._delays_closed = 0
        self._delivered_at: Optional[datetime] = None
        self._last: Optional[Scan] = None
        self._stuck_reported = False
        self._ended = False

    @property
    def latest_event_time(self) -> Optional[datetime]:
        """The largest event time of the scans this shipment kept, if any."""
        return None if self._last is None else self._last.occurred_at

    @property
    def shipment_id(self) -> str:
        """The shipment's id (empty before its first scan)."""
        return self._shipment_id

    def pending_event_ids(self) -> list[str]:
        """Event ids of the scans held in open windows."""
        return [scan.event_id for window in self._open.values() for scan in window.scans]

    def watermark(self, live: timedelta) -> Optional[datetime]:
        """This shipment's event time at live time `live`, or `None` before its first event."""
        if self._base is None:
            return None
        return shifted(self._base, max(live - self._base_live, timedelta(0)))

    def to_state(self, live: timedelta) -> dict[str, Any]:
        """A snapshot of plain values only (no classes of this project), safe to pickle; the
        clock is the watermark at live time `live`."""
        return WINDOW_STATE.dump(
            {
                "window_seconds": self._params.window.total_seconds(),
                "shipment_id": self._shipment_id,
                "watermark": self.watermark(live),
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
        )

    @classmethod
    def from_state(
        cls,
        snapshot: dict[str, Any],
        params: WindowParams,
        live: timedelta,
        *,
        step: Optional[str] = None,
    ) -> Self:
        """Rebuild from `to_state()` (older versions migrated) at live time `live`: the clock
        goes on from the snapshot's watermark. Refuses, naming `step`, unknown versions and
        other window lengths (`IncompatibleStateError`)."""
        state = WINDOW_STATE.load(snapshot, step=step)
        if state is None:
            raise WINDOW_STATE.incompatible("snapshot is missing", step=step)
        _check_window_length(state, params, step)
        windows = cls(params)
        windows._shipment_id = state["shipment_id"]
        windows._base, windows._base_live = state["watermark"], live
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


def _check_window_length(state: dict[str, Any], params: WindowParams, step: Optional[str]) -> None:
    """Raise `IncompatibleStateError` unless `state` was written with this window length."""
    if state["window_seconds"] != params.window.total_seconds():
        raise WINDOW_STATE.incompatible(
            f"snapshot was written with {state['window_seconds']:.0f} s windows, the settings "
            f"ask for {params.window.total_seconds():.0f} s; windows cannot change length across "
            "a resume",
            step=step,
        )
