"""Downtime does not move event clocks: a flow stopped for longer than the allowed lateness,
with on-time scans produced meanwhile, decides every one of them after the resume.

The shipments flow runs the production way (`python -m bytewax.run flows.shipments -r DIR -s 1
-b 0`) on a real broker, with 1-minute windows and no allowed lateness, once with a stuck timeout
of an hour and once of `STUCK_SECONDS`. Eight shipments are scanned twice a second with event
times that follow the wall clock, shifted so that a window boundary falls `BEFORE_BOUNDARY`
seconds (of event time) after the flow is SIGKILLed. The producer keeps scanning through
`DOWNTIME_SECONDS` of downtime (well over the lateness and the stuck timeout), then the flow is
resumed from its recovery store and reads the backlog to its end.

A clock that counted the downtime would jump past the boundary on the resume: the backlog's
scans before the boundary would become `late_event` dead letters; with the short stuck timeout
every shipment would be reported stuck although its scans wait in the backlog, its state dropped,
and the window before the boundary decided a second time, under the same id, with the backlog's
scans (a consumer that keeps the first copy never sees them). The flow must instead put every
scan in exactly one decision, with no `late_event` and no stuck report.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from operators.config.settings import Settings
from operators.connectors.kafka.config import client_config
from tests.flows.kafka_runs import kafka_settings, read_topic, with_topics
from tests.flows.recovery_checks import by_id, disagreeing_copies, events_in_two_decisions
from tests.flows.recovery_runs import TopicFollower, flow_env, init_recovery, start_flow, wait_all

pytestmark = [pytest.mark.kafka, pytest.mark.dataflow]

SHIPMENTS = [f"S-DOWN-{n}" for n in range(8)]
SCAN_EVERY_SECONDS = 0.5
LIVE_SECONDS = 3.0
"""Scanning time between the flow being up and the kill (three snapshots at -s 1)."""
BEFORE_BOUNDARY = timedelta(seconds=4)
"""Event time between the kill and the next window boundary."""
DOWNTIME_SECONDS = 9.0
STUCK_SECONDS = 5.0


class Scanner:
    """Produces one scan per shipment every `SCAN_EVERY_SECONDS`, with event time = wall time
    minus `shift`, and remembers what it produced."""

    def __init__(self, settings: Settings) -> None:
        self._producer = Producer(
            {**client_config(settings.kafka), "partitioner": "murmur2_random"}
        )
        self._topic = settings.topics.shipments_events
        self.shift = timedelta(0)
        self.scans: list[dict] = []

    def send(self, key: bytes, value: bytes) -> None:
        self._producer.produce(self._topic, value, key)
        self._producer.poll(0)

    def scan_until(self, end: float) -> None:
        """Scan every shipment every `SCAN_EVERY_SECONDS` until wall time `end` (epoch s)."""
        while (now := time.time()) < end:
            occurred = datetime.fromtimestamp(now, UTC) - self.shift
            for shipment in SHIPMENTS:
                scan = {
                    "event_id": f"{shipment}-{len(self.scans)}",
                    "shipment_id": shipment,
                    "carrier_id": "CAR-FASTSHIP",
                    "hub_id": "HUB-AMS1",
                    "scan_type": "arrived_hub",
                    "occurred_at": occurred.isoformat(),
                    "shipped_at": (occurred - timedelta(days=1)).isoformat(),
                }
                self.scans.append(scan)
                self.send(shipment.encode(), json.dumps(scan).encode())
            time.sleep(max(0.0, min(SCAN_EVERY_SECONDS, end - time.time())))
        assert self._producer.flush(30) == 0, "scans not delivered"


def plan_boundary(kill_at: float) -> tuple[datetime, timedelta]:
    """A minute boundary, and the shift of event times that puts it `BEFORE_BOUNDARY` after
    the event time at `kill_at`."""
    at_kill = datetime.fromtimestamp(kill_at, UTC)
    boundary = (at_kill - BEFORE_BOUNDARY).replace(second=0, microsecond=0)
    return boundary, at_kill - (boundary - BEFORE_BOUNDARY)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stuck_after_hours", [1.0, STUCK_SECONDS / 3600], ids=["1h", "5s"])
def test_a_backlog_produced_while_the_flow_was_down_is_on_time_after_the_resume(
    kafka_bootstrap: str, tmp_path: Path, stuck_after_hours: float
) -> None:
    settings = kafka_settings(
        kafka_bootstrap,
        kafka_tail=True,
        window_minutes=1,
        allowed_lateness_minutes=0,
        stuck_after_hours=stuck_after_hours,
    )
    with_topics(settings, "shipments")
    store, logs = init_recovery(tmp_path / "recovery", 1), tmp_path / "logs"
    env = flow_env(settings)
    scanner = Scanner(settings)
    dlq = settings.topics.shipments_dlq

    with TopicFollower(settings, [dlq]) as follower:
        run = start_flow("shipments", env, logs, recovery=store)
        scanner.send(b"S-PROBE", b"not json")  # its dead letter says the flow is up
        follower.wait_for(lambda records: len(records) >= 1, timeout=90, running=run)
    kill_at = time.time() + LIVE_SECONDS
    boundary, scanner.shift = plan_boundary(kill_at)
    scanner.scan_until(kill_at)
    (process,) = run
    assert process.running, process.log_tail()
    process.kill()
    live_scans = len(scanner.scans)
    scanner.scan_until(time.time() + DOWNTIME_SECONDS)  # the backlog
    to_end = {**env, "SURGEFLOW_KAFKA_TAIL": "false"}
    wait_all(start_flow("shipments", to_end, logs, recovery=store), timeout=120)

    decisions = by_id(read_topic(settings, settings.topics.shipments_decisions), "decision_id")
    dead = by_id(read_topic(settings, dlq), "dead_letter_id")
    kinds = Counter(copies[0]["error_type"] for copies in dead.values())
    triggers = Counter(copies[0]["trigger"] for copies in decisions.values())
    backlog = len(scanner.scans) - live_scans
    decided = Counter(e for copies in decisions.values() for e in copies[0]["event_ids"])
    undecided = [scan["event_id"] for scan in scanner.scans if scan["event_id"] not in decided]
    disagreeing = disagreeing_copies(decisions)
    print(
        f"\n{live_scans} scans before the kill, {backlog} during {DOWNTIME_SECONDS:.0f} s of "
        f"downtime; decisions by trigger {dict(triggers)}; dead letters {dict(kinds)}; "
        f"{len(undecided)} scans in no first copy of a decision; {len(disagreeing)} decisions "
        "whose copies disagree"
    )
    assert kinds["late_event"] == 0, "on-time scans of the backlog were dead-lettered as late"
    assert triggers["stuck_timer"] == 0, "a shipment was reported stuck while its scans waited"
    assert disagreeing == [], "a window was decided twice with different scans"
    assert undecided == [] and kinds == Counter({"invalid_json": 1}), (undecided[:5], kinds)
    assert events_in_two_decisions(decisions) == []
    crossing = [
        copies[0]
        for copies in decisions.values()
        if datetime.fromisoformat(copies[0]["window_end"]) == boundary
    ]
    assert len(crossing) == len(SHIPMENTS), "one window per shipment ends at the boundary"
    assert {d["trigger"] for d in crossing} == {"window_closed"}, "closed by the backlog's scans"
