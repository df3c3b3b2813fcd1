"""Recovery: how it is configured and checked, that state is versioned, and that timers survive
a restart. The crash proofs are in `test_crash.py`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.shipments import build_flow as build_shipments
from operators.config.settings import Settings
from operators.errors import IncompatibleStateError
from operators.runtime.recovery import RecoveryConfigurationError, check_recovery, partition_count
from operators.shipments import decision_state
from operators.shipments.surge import iter_shipment_surge
from tests.flows.flow_runs import embedded_settings
from tests.flows.kafka_runs import kafka_settings, with_topics
from tests.flows.recovery_runs import (
    LiveProducer,
    TopicFollower,
    flow_env,
    init_recovery,
    start_flow,
)

# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        {"bytewax_recovery_directory": "/tmp/r"},
        {"bytewax_recovery_directory": "/tmp/r", "bytewax_snapshot_interval": 5},
        {"bytewax_snapshot_interval": 5, "bytewax_recovery_backup_interval": 0},
    ],
)
def test_recovery_settings_are_all_three_or_none(given: dict) -> None:
    with pytest.raises(ValueError, match="all three of BYTEWAX_RECOVERY_DIRECTORY"):
        embedded_settings(**given)
    full = {
        "bytewax_recovery_directory": "/tmp/r",
        "bytewax_snapshot_interval": 5,
        "bytewax_recovery_backup_interval": 0,
    }
    assert embedded_settings(**full).recovery.directory == Path("/tmp/r")
    assert embedded_settings().recovery.directory is None


def test_recovery_settings_read_bytewax_variables_in_whole_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BYTEWAX_RECOVERY_DIRECTORY", "/tmp/r")
    monkeypatch.setenv("BYTEWAX_SNAPSHOT_INTERVAL", "30")
    monkeypatch.setenv("BYTEWAX_RECOVERY_BACKUP_INTERVAL", "0")
    settings = Settings(_env_file=None)
    recovery = settings.recovery
    assert (recovery.snapshot_interval_seconds, recovery.backup_interval_seconds) == (30, 0)
    monkeypatch.setenv("BYTEWAX_SNAPSHOT_INTERVAL", "1.5")  # `bytewax.run` would refuse it too
    with pytest.raises(ValueError, match="BYTEWAX_SNAPSHOT_INTERVAL"):
        Settings(_env_file=None)


def test_a_store_without_partitions_is_refused_naming_the_command(tmp_path: Path) -> None:
    flags = ["flows.shipments", "-r", str(tmp_path / "none"), "-s", "1", "-b", "0"]
    with pytest.raises(RecoveryConfigurationError, match=r"does not exist.*bytewax\.recovery"):
        check_recovery(embedded_settings().recovery, flags)
    (tmp_path / "empty").mkdir()
    flags[2] = str(tmp_path / "empty")
    with pytest.raises(RecoveryConfigurationError) as refused:
        check_recovery(embedded_settings().recovery, flags)
    assert f"python -m bytewax.recovery {tmp_path / 'empty'} N" in str(refused.value)


def test_a_store_is_checked_and_mixed_stores_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = init_recovery(tmp_path / "store", 3)
    flags = ["flows.shipments", "-w", "2", "-a", "h:1;h:2", "-i", "0", "-r", str(store)]
    with caplog.at_level(logging.WARNING, logger="operators.runtime.recovery"):
        options = check_recovery(embedded_settings().recovery, [*flags, "-s", "5", "-b", "60"])
    assert options is not None and (options.snapshot_interval_seconds, options.workers) == (5, 4)
    assert "4 workers but 3 recovery partitions" in caplog.text
    assert check_recovery(embedded_settings().recovery, ["flows.shipments"]) is None
    other = init_recovery(tmp_path / "other", 2)
    (other / "part-0.sqlite3").rename(store / "part-0.sqlite3")
    with pytest.raises(RecoveryConfigurationError, match="mixes partitions"):
        partition_count(store)


def test_bytewax_run_stops_before_starting_on_a_store_without_partitions(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    env = flow_env(embedded_settings(surge_steady_events=10))
    (run,) = start_flow("shipments", env, tmp_path / "logs", recovery=tmp_path / "empty")
    assert run.wait(60) != 0
    assert f"python -m bytewax.recovery {tmp_path / 'empty'} N" in run.log_tail()


@pytest.mark.dataflow
def test_a_store_of_another_state_version_stops_the_resumed_flow_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshots are plain versioned dicts: a build that reads another layout says so."""
    generated = list(iter_shipment_surge(seed=3, steady_events=20, burst_factor=2))
    records = [g.record for g in generated]
    source = TestingSource([*records[:30], TestingSource.ABORT(), *records[30:]])
    flow = build_shipments(embedded_settings(), source=source, sink=TestingSink([]))
    store = RecoveryConfig(init_recovery(tmp_path / "recovery", 1))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=store)
    written = decision_state.WINDOW_STATE.version
    newer = replace(decision_state.WINDOW_STATE, version=written + 1)  # a build reading only it
    monkeypatch.setattr(decision_state, "WINDOW_STATE", newer)
    with pytest.raises(Exception) as stopped:
        run_main(flow, epoch_interval=timedelta(0), recovery_config=store)
    chain: list[BaseException] = []
    error: BaseException | None = stopped.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    said = " | ".join(str(error) for error in chain)
    assert f"decision window snapshot has state version {written}" in said
    assert "step shipments.decision_window.decide:" in said, "names the step"
    assert f"this build reads version {written + 1}" in said
    assert any(isinstance(error, IncompatibleStateError) for error in chain)


# --- timers across a restart ---------------------------------------------------------------------

STUCK_SECONDS = 8.0


def scan(shipment_id: str, n: int, at: float, scan_type: str = "arrived_hub") -> bytes:
    """A valid scan of `shipment_id` at `at` (epoch seconds)."""
    occurred = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at))
    return json.dumps(
        {
            "event_id": f"{shipment_id}-E{n}",
            "shipment_id": shipment_id,
            "carrier_id": "CAR-FASTSHIP",
            "hub_id": "HUB-AMS1",
            "scan_type": scan_type,
            "occurred_at": occurred,
            "shipped_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at - 86400)),
        }
    ).encode()


@pytest.mark.kafka
@pytest.mark.dataflow
@pytest.mark.timeout(120)
def test_a_stuck_timer_pending_at_the_kill_fires_after_the_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """One shipment: two scans two hours apart (a window decision shows the second was read),
    then silence. Its stuck timer is due `STUCK_SECONDS` of running time after the second scan;
    the flow is killed before that, after a snapshot, and the restarted flow reports it stuck by
    the timer while it is still running (no end of input). The downtime does not count: the
    timer fires no sooner than the downtime after it would have without the kill."""
    settings = kafka_settings(
        kafka_bootstrap, kafka_tail=True, stuck_after_hours=STUCK_SECONDS / 3600
    )
    with_topics(settings, "shipments")
    store, logs = init_recovery(tmp_path / "recovery", 2), tmp_path / "logs"
    env = flow_env(settings)
    now = time.time()
    messages = [(b"S-TIMER", scan("S-TIMER", 1, now - 7200)), (b"S-TIMER", scan("S-TIMER", 2, now))]
    out_topic = settings.topics.shipments_decisions

    def triggers(records: list) -> list[str]:
        return [r.json()["trigger"] for r in records if r.topic == out_topic]

    with TopicFollower(settings, [out_topic]) as follower:
        run = start_flow("shipments", env, logs, recovery=store)
        LiveProducer(settings, settings.topics.shipments_events, messages, rate=100).start()
        follower.wait_for(lambda r: "window_closed" in triggers(r), timeout=60, running=run)
        time.sleep(2.5)  # two snapshots at -s 1
        killed_at = time.time()
        assert triggers(follower.poll()).count("stuck_timer") == 1  # the 2-hour gap, not the timer
        run[0].kill()
        restarted_at = time.time()
        run = start_flow("shipments", env, logs, recovery=store)
        records = follower.wait_for(
            lambda r: triggers(r).count("stuck_timer") == 2, timeout=60, running=run
        )
        assert all(p.running for p in run), "the timer fired, not the end of the input"
        run[0].kill()

    window = next(r.json() for r in records if r.json()["trigger"] == "window_closed")
    stuck = [r.json() for r in records if r.json()["trigger"] == "stuck_timer"][-1]
    scanned_at = window["decided_at"]  # the second scan's wall time: the timer's base
    due = _epoch(scanned_at) + STUCK_SECONDS
    assert killed_at < due, "the timer was still pending when the flow was killed"
    downtime = restarted_at - killed_at
    assert _epoch(stuck["decided_at"]) >= due + downtime - 0.05, "the downtime was counted"
    assert _epoch(stuck["decided_at"]) < restarted_at + STUCK_SECONDS + 10, "the timer fired late"
    assert stuck["action"] == "escalate" and "stuck at hub HUB-AMS1" in stuck["reasons"][0]
    assert _epoch(stuck["last_scan_at"]) == int(now)


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()
