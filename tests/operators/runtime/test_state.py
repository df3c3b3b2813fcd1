"""`VersionedState`: one snapshot helper, one behaviour on a version mismatch; and the snapshots
current builds write (decision windows v2 and v1, ticket sessions v1, async lanes v1) still load."""

from __future__ import annotations

import logging
import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from operators.errors import IncompatibleStateError, StopsTheFlow, SurgeflowError
from operators.runtime.inflight import LANE_STATE
from operators.runtime.state import VersionedState
from operators.shipments.decision_state import MIGRATIONS, WINDOW_STATE
from operators.shipments.decisions import ShipmentWindows
from operators.tickets.domain import Turn
from operators.tickets.sessions import SESSION_STATE, SessionHistory
from tests.operators.runtime.test_inflight import FakeWork, lane_of
from tests.operators.shipments.test_decisions import PARAMS, T0, clock, event, live, wall


def _to_v2(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "version": 2, "b": state["a"] * 2}


def _to_v3(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "version": 3, "c": state["b"] + 1}


COUNTER = VersionedState("counter", 3, {1: _to_v2, 2: _to_v3})


# --- the helper -----------------------------------------------------------------------------------


def test_dump_tags_the_current_version_and_load_returns_it_unchanged() -> None:
    state = COUNTER.dump({"a": 1, "b": 2, "c": 3})
    assert state == {"version": 3, "a": 1, "b": 2, "c": 3}
    assert COUNTER.load(pickle.loads(pickle.dumps(state)), step="f.count") == state


def test_older_versions_are_migrated_one_version_at_a_time() -> None:
    assert COUNTER.load({"version": 1, "a": 5}) == {"version": 3, "a": 5, "b": 10, "c": 11}
    assert COUNTER.load({"version": 2, "a": 5, "b": 7}) == {"version": 3, "a": 5, "b": 7, "c": 8}
    assert COUNTER.reads == (1, 2, 3)


def test_no_snapshot_is_a_new_key() -> None:
    assert COUNTER.load(None, step="f.count") is None


@pytest.mark.parametrize(
    ("snapshot", "found"),
    [
        ({"version": 4, "a": 1}, "4"),  # newer
        ({"version": 0, "a": 1}, "0"),  # older than any migration
        ({"a": 1}, "None"),  # no version
        ({"version": "3", "a": 1}, "'3'"),  # not an int
        ([("a", 1)], "None"),  # not a dict
    ],
)
def test_a_snapshot_this_build_cannot_read_stops_the_flow_naming_step_and_versions(
    snapshot: Any, found: str
) -> None:
    with pytest.raises(IncompatibleStateError) as refused:
        COUNTER.load(snapshot, step="f.count")
    assert str(refused.value).startswith(
        f"step f.count: counter snapshot has state version {found}; "
        "this build reads versions 1, 2, 3; resume from a recovery store"
    )
    assert isinstance(refused.value, StopsTheFlow), "guards let it through: the flow stops"


def test_a_gap_in_the_migrations_limits_the_versions_read() -> None:
    gapped = VersionedState("counter", 3, {1: _to_v2})
    assert gapped.reads == (3,)
    with pytest.raises(IncompatibleStateError, match="version 1; this build reads version 3;"):
        gapped.load({"version": 1, "a": 1})


def test_a_migration_that_skips_a_version_is_refused() -> None:
    skipping = VersionedState("counter", 3, {1: lambda s: {**s, "version": 3}, 2: _to_v3})
    with pytest.raises(IncompatibleStateError, match="from version 1 gave version 3, not 2"):
        skipping.load({"version": 1, "a": 1}, step="f.count")


def test_a_disposable_state_of_another_version_is_logged_and_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Same check, same message; only the outcome differs: the key starts afresh."""
    disposable = replace(COUNTER, disposable=True)
    with caplog.at_level(logging.WARNING, logger="operators.runtime.state"):
        assert disposable.load({"version": 4, "a": 1}, step="f.count") is None
        assert disposable.load({"version": 1, "a": 2}) == {"version": 3, "a": 2, "b": 4, "c": 5}
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        "step f.count: counter snapshot has state version 4; this build reads versions 1, 2, 3"
    )
    assert "disposable: dropped" in record.getMessage()


def test_incompatible_names_the_step_for_a_setting_the_state_depends_on() -> None:
    error = COUNTER.incompatible("snapshot was written with 2 counters", step="f.count")
    assert isinstance(error, IncompatibleStateError) and isinstance(error, SurgeflowError)
    assert str(error).startswith("step f.count: counter snapshot was written with 2 counters;")


def test_every_snapshot_layout_is_a_versioned_state() -> None:
    """Decision windows and async lanes refuse what they cannot read; sessions are disposable."""
    assert (WINDOW_STATE.name, WINDOW_STATE.reads, WINDOW_STATE.disposable) == (
        "decision window",
        (1, 2),
        False,
    )
    assert WINDOW_STATE.migrations is MIGRATIONS
    assert (LANE_STATE.name, LANE_STATE.reads, LANE_STATE.disposable) == (
        "async step lane",
        (1,),
        False,
    )
    assert (SESSION_STATE.name, SESSION_STATE.reads, SESSION_STATE.disposable) == (
        "session history",
        (1,),
        True,
    )


# --- snapshots the current builds write, as literals ----------------------------------------------


def _scan(event_id: str, minutes: int) -> tuple[Any, ...]:
    """A `Scan` as a snapshot holds it: a plain tuple in field order."""
    sla = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
    at = T0 + timedelta(minutes=minutes)
    return (event_id, at, "arrived_hub", "CAR-A", "HUB-1", "eu-west", None, 0, None, 0.95, 0.2, sla)


WINDOWS_V2 = {
    "version": 2,
    "window_seconds": 3600.0,
    "shipment_id": "S-1",
    "watermark": T0 + timedelta(minutes=110),
    "open": ((T0 + timedelta(hours=1), (_scan("E2", 75), _scan("E3", 80)), 0),),
    "closed": (T0,),
    "delays_closed": 1,
    "delivered_at": None,
    "last": _scan("E3", 80),
    "stuck_reported": False,
    "ended": False,
}
"""Decision windows as version 2 writes them: E1 (a delay at 10 min) decided in the closed window
at T0, E2 and E3 open in the next; the watermark 30 min of live time past E3."""

WINDOWS_V1 = {
    **{k: v for k, v in WINDOWS_V2.items() if k != "watermark"},
    "version": 1,
    "clock": (T0 + timedelta(minutes=80), datetime(2030, 1, 1, tzinfo=UTC)),
}
"""The same shipment as version 1 wrote it: the clock as (event time, wall time it was seen)."""

SESSION_V1 = {
    "version": 1,
    "last_seen": datetime(2024, 1, 1, 12, 5, tzinfo=UTC),
    "turns": [
        ("M1", "where is my parcel", datetime(2024, 1, 1, 12, 0, tzinfo=UTC)),
        ("M2", "it is late", datetime(2024, 1, 1, 12, 5, tzinfo=UTC)),
    ],
}

LANE_V1 = {"version": 1, "pending": [(4, ("t", 1)), (2, ("s", 1)), (3, ("s", 2))]}


def test_decision_windows_v2_load_as_written() -> None:
    restored = ShipmentWindows.from_state(
        pickle.loads(pickle.dumps(WINDOWS_V2)), PARAMS, live(0), step="shipments.decide"
    )
    assert restored.to_state(live(0)) == WINDOWS_V2
    assert restored.pending_event_ids() == ["E2", "E3"]
    assert restored.next_deadline(wall(0)) == clock(25), "[09:00, 10:00) closes at 10:15"
    (decision,) = restored.on_timer(wall(25)).decisions
    assert decision.event_ids == ["E2", "E3"]
    assert "already closed" in restored.on_event(event("E9", 30), wall(25)).late[0].reason


def test_decision_windows_v1_load_migrated() -> None:
    restored = ShipmentWindows.from_state(pickle.loads(pickle.dumps(WINDOWS_V1)), PARAMS, live(0))
    assert restored.to_state(live(30)) == WINDOWS_V2, "the v1 clock restarts at its event time"


def test_ticket_sessions_v1_load_as_written() -> None:
    restored = SessionHistory.from_state(
        pickle.loads(pickle.dumps(SESSION_V1)), max_messages=10, ttl=timedelta(minutes=30)
    )
    assert restored.turns == [Turn(*turn) for turn in SESSION_V1["turns"]]
    assert restored.last_seen == SESSION_V1["last_seen"]
    assert restored.snapshot() == SESSION_V1


def test_async_lanes_v1_load_and_submit_their_items_again_in_order() -> None:
    work = FakeWork()
    lane = lane_of(work)
    lane.restore(pickle.loads(pickle.dumps(LANE_V1)), step="tickets.route.call.calls")
    assert work.submitted == [("s", 1), ("s", 2), ("t", 1)]
    assert lane.snapshot() == {"version": 1, "pending": sorted(LANE_V1["pending"])}


def test_each_layout_refuses_or_drops_a_newer_version_through_the_helper(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(IncompatibleStateError, match=r"^step s\.decide: decision window .* 3;"):
        ShipmentWindows.from_state({**WINDOWS_V2, "version": 3}, PARAMS, live(0), step="s.decide")
    with pytest.raises(IncompatibleStateError, match=r"^step t\.calls: async step lane .* 2;"):
        lane_of(FakeWork()).restore({**LANE_V1, "version": 2}, step="t.calls")
    with caplog.at_level(logging.WARNING, logger="operators.runtime.state"):
        restored = SessionHistory.from_state(
            {**SESSION_V1, "version": 2}, max_messages=10, ttl=timedelta(minutes=30), step="t.s"
        )
    assert restored.turns == [] and restored.last_seen is None
    assert "step t.s: session history snapshot has state version 2" in caplog.text
