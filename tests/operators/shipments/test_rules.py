"""The decision rules: each rule alone, their precedence, risk bounds and the stuck verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from operators.config.settings import Settings
from operators.shipments.domain import EnrichedEvent
from operators.shipments.rules import (
    MAX_REASON_CHARS,
    RuleParams,
    Scan,
    ShipmentHistory,
    decide_stuck,
    decide_window,
    strongest,
)
from schemas import ShipmentEvent, SourceRef

SHIPPED = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
DUE = SHIPPED + timedelta(hours=48)


def scan(minutes: int = 60, **overrides: Any) -> Scan:
    """A healthy scan `minutes` after shipping; any `Scan` field can be overridden."""
    fields: dict[str, Any] = {
        "event_id": f"E-{minutes}",
        "occurred_at": SHIPPED + timedelta(minutes=minutes),
        "scan_type": "arrived_hub",
        "carrier_id": "CAR-A",
        "hub_id": "HUB-1",
        "region": "eu-west",
        "eta": None,
        "delay_minutes": 0,
        "note": None,
        "carrier_reliability": 0.95,
        "hub_congestion": 0.2,
        "sla_due_at": DUE,
    }
    fields.update(overrides)
    return Scan(**fields)


def test_scan_from_event_flattens_the_enriched_event() -> None:
    event = ShipmentEvent(
        event_id="E-1",
        shipment_id="S-1",
        carrier_id="CAR-A",
        hub_id="HUB-1",
        scan_type="delay",
        occurred_at=SHIPPED + timedelta(hours=2),
        shipped_at=SHIPPED,
        eta=DUE,
        delay_minutes=90,
        note="weather",
    )
    enriched = EnrichedEvent(
        event=event,
        source=SourceRef(topic="shipments.events"),
        carrier_name="Alpha",
        sla_hours=48,
        carrier_reliability=0.9,
        region="eu-west",
        hub_congestion=0.4,
        sla_due_at=DUE,
    )
    flat = Scan.from_event(enriched)
    assert (flat.event_id, flat.scan_type, flat.delay_minutes, flat.note) == (
        "E-1",
        "delay",
        90,
        "weather",
    )
    assert (flat.carrier_reliability, flat.hub_congestion, flat.sla_due_at) == (0.9, 0.4, DUE)
    assert flat.is_delay and flat.is_delayed


def test_nothing_wrong_is_ok_with_low_risk() -> None:
    verdict = decide_window([scan(60), scan(120)], ShipmentHistory())
    assert verdict.action == "ok"
    assert verdict.reasons == ("on track",)
    assert 0.0 <= verdict.risk < 0.1


def test_delivered_on_time_is_ok_with_zero_risk() -> None:
    verdict = decide_window([scan(60, scan_type="delivered")], ShipmentHistory())
    assert (verdict.action, verdict.reasons, verdict.risk) == ("ok", ("delivered on time",), 0.0)


def test_delivered_late_is_ok_but_says_so() -> None:
    late = scan(60 * 50, scan_type="delivered")
    verdict = decide_window([late], ShipmentHistory())
    assert verdict.action == "ok"
    assert verdict.reasons == ("delivered 2.0 h after the SLA due time",)


def test_breach_by_eta_with_a_good_carrier_notifies_the_customer() -> None:
    verdict = decide_window([scan(60, eta=DUE + timedelta(hours=3))], ShipmentHistory())
    assert verdict.action == "notify_customer"
    assert verdict.reasons[0].startswith("SLA breach: ETA 3.0 h past due")
    assert 0.5 <= verdict.risk <= 1.0


def test_breach_by_latest_scan_without_eta() -> None:
    verdict = decide_window([scan(60 * 49)], ShipmentHistory())
    assert verdict.action == "notify_customer"
    assert verdict.reasons[0].startswith("SLA breach: last scan 1.0 h past due")


@pytest.mark.parametrize(
    ("overrides", "cause"),
    [
        ({"carrier_reliability": 0.8}, "carrier CAR-A reliability 0.80 below 0.85"),
        ({"hub_congestion": 0.75}, "hub HUB-1 congestion 0.75 above 0.70"),
        ({"eta": DUE + timedelta(hours=12)}, "delay of 12.0 h is large"),
    ],
)
def test_breach_with_a_cause_expedites(overrides: dict[str, Any], cause: str) -> None:
    fields = {"eta": DUE + timedelta(hours=1), **overrides}
    verdict = decide_window([scan(60, **fields)], ShipmentHistory())
    assert verdict.action == "expedite"
    assert cause in verdict.reasons


def test_eta_inside_the_warning_window_notifies() -> None:
    verdict = decide_window([scan(60, eta=DUE - timedelta(hours=2))], ShipmentHistory())
    assert verdict.action == "notify_customer"
    assert verdict.reasons == ("ETA only 2.0 h before the SLA due",)


def test_eta_well_before_due_is_ok() -> None:
    verdict = decide_window([scan(60, eta=DUE - timedelta(hours=10))], ShipmentHistory())
    assert verdict.action == "ok"


def test_latest_eta_wins_over_an_older_one() -> None:
    scans = [scan(60, eta=DUE + timedelta(hours=5)), scan(120, eta=DUE - timedelta(hours=10))]
    assert decide_window(scans, ShipmentHistory()).action == "ok"


def test_repeated_delays_across_windows_escalate() -> None:
    one_delay = [scan(60, scan_type="delay")]
    assert decide_window(one_delay, ShipmentHistory()).action == "ok"
    verdict = decide_window(one_delay, ShipmentHistory(delays_before=1))
    assert verdict.action == "escalate"
    assert verdict.reasons == ("2 delay scans (threshold 2)",)


def test_old_delays_without_a_new_one_do_not_escalate_again() -> None:
    verdict = decide_window([scan(60)], ShipmentHistory(delays_before=5))
    assert verdict.action == "ok"


def test_exception_note_notifies_with_its_category_not_its_text() -> None:
    long_note = "parcel damaged in transit, " * 10
    verdict = decide_window([scan(60, scan_type="exception", note=long_note)], ShipmentHistory())
    assert verdict.action == "notify_customer"
    assert verdict.reasons == ("exception at hub HUB-1: note classified damaged",)


def test_any_note_counts_even_on_a_delivered_shipment() -> None:
    scans = [scan(60, scan_type="delivered", note="left with neighbour"), scan(61, note="x")]
    verdict = decide_window(scans, ShipmentHistory())
    assert verdict.action == "notify_customer"
    assert "delivered at hub HUB-1: note classified other (+1 more)" in verdict.reasons


def test_very_high_congestion_with_a_delay_reroutes() -> None:
    verdict = decide_window([scan(60, delay_minutes=30, hub_congestion=0.95)], ShipmentHistory())
    assert verdict.action == "reroute"
    assert verdict.reasons == ("hub HUB-1 congestion 0.95 with a delay",)


def test_high_congestion_without_a_delay_does_not_reroute() -> None:
    assert decide_window([scan(60, hub_congestion=0.95)], ShipmentHistory()).action == "ok"


def test_strongest_action_wins_and_all_reasons_are_kept() -> None:
    scans = [
        scan(60, scan_type="delay", hub_congestion=0.95, note="storm"),
        scan(120, scan_type="delay", eta=DUE + timedelta(hours=1)),
    ]
    verdict = decide_window(scans, ShipmentHistory())
    assert verdict.action == "escalate"
    kinds = " | ".join(verdict.reasons)
    parts = ("delay at hub HUB-1: note classified weather", "SLA breach", "congestion 0.95")
    for part in (*parts, "2 delay scans"):
        assert part in kinds
    assert 0.9 < verdict.risk <= 1.0


def test_strongest_orders_actions() -> None:
    assert strongest(["ok", "notify_customer", "expedite"]) == "expedite"
    assert strongest(["expedite", "reroute"]) == "reroute"
    assert strongest(["reroute", "escalate", "ok"]) == "escalate"
    assert strongest([]) == "ok"


def test_stuck_escalates_with_hub_and_time() -> None:
    last = scan(60, hub_id="HUB-9")
    verdict = decide_stuck(last, stuck_after=timedelta(hours=6))
    assert verdict.action == "escalate"
    assert verdict.reasons == ("stuck at hub HUB-9 since 2026-11-27 09:00 UTC (no scan for 6.0 h)",)
    assert 0.7 <= verdict.risk <= 1.0


def test_stuck_past_the_sla_says_so() -> None:
    verdict = decide_stuck(scan(60 * 47), stuck_after=timedelta(hours=6))
    assert verdict.reasons[1] == "SLA due 2026-11-29 08:00 UTC passed while stuck"


def test_reasons_are_bounded() -> None:
    last = scan(60, hub_id="H" * 64, carrier_id="C" * 64, eta=DUE + timedelta(days=4000))
    verdict = decide_window([last], ShipmentHistory(), params=RuleParams(unreliable_below=1.0))
    assert all(0 < len(reason) <= MAX_REASON_CHARS for reason in verdict.reasons)


def test_params_from_settings() -> None:
    params = RuleParams.from_settings(
        Settings(sla_warning_hours=2, repeated_delay_count=3).shipments
    )
    assert params.sla_warning == timedelta(hours=2)
    assert params.repeated_delay_count == 3
