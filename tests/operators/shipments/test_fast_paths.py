"""The shortcuts of the shipments rules path give exactly what the plain code gives.

The rules take one-signal verdicts and one-scan windows without their loops and read a window's
latest ETA once; decision ids keep the text of the window bounds; the enrichment join keeps each
SLA's `timedelta`. Each `reference_*` below is the plain code they replaced, kept here as the
specification; hypothesis compares the two on windows of scans with and without ETAs, delays,
notes, deliveries and congestion, and on bounds in any time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Optional
from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st

from operators.shipments import agent, decisions, enrich, rules
from operators.shipments.rules import (
    RuleParams,
    Scan,
    ShipmentHistory,
    Verdict,
    _Signal,
    decide_stuck,
    decide_window,
)
from schemas.common import deterministic_id

# --- the plain code, as it was -------------------------------------------------------------------


def reference_verdict(signals: list[_Signal], baseline: float) -> Verdict:
    safe = 1.0 - min(max(baseline, 0.0), 1.0)
    for signal in signals:
        safe *= 1.0 - signal.score
    return Verdict(
        action=rules.strongest([signal.action for signal in signals]),
        reasons=tuple(rules._bounded(signal.reason) for signal in signals),
        risk=round(min(max(1.0 - safe, 0.0), 1.0), 3),
    )


def reference_latest_eta(scans: Sequence[Scan]) -> Optional[datetime]:
    with_eta = [scan for scan in scans if scan.eta is not None]
    if not with_eta:
        return None
    return max(with_eta, key=lambda scan: scan.occurred_at).eta


def reference_projected_breach(
    scans: Sequence[Scan], latest: Scan
) -> Optional[tuple[str, timedelta]]:
    due = latest.sla_due_at
    eta = reference_latest_eta(scans)
    candidates: list[tuple[str, timedelta]] = [("last scan", latest.occurred_at - due)]
    if eta is not None:
        candidates.append(("ETA", eta - due))
    what, overdue = max(candidates, key=lambda candidate: candidate[1])
    return (what, overdue) if overdue > timedelta(0) else None


def reference_sla_signals(scans: Sequence[Scan], latest: Scan, params: RuleParams) -> list[_Signal]:
    breach = reference_projected_breach(scans, latest)
    if breach is not None:
        return rules._breach_signals(latest, breach[0], breach[1], params)
    eta = reference_latest_eta(scans)
    if eta is not None and latest.sla_due_at - eta <= params.sla_warning:
        margin = rules._hours(latest.sla_due_at - eta)
        return [_Signal("notify_customer", f"ETA only {margin:.1f} h before the SLA due", 0.3)]
    return []


def reference_delivered_at(scans: Sequence[Scan], history: ShipmentHistory) -> Optional[datetime]:
    times = [scan.occurred_at for scan in scans if scan.scan_type == "delivered"]
    if history.delivered_at is not None:
        times.append(history.delivered_at)
    return min(times, default=None)


def reference_delay_signals(
    scans: Sequence[Scan], history: ShipmentHistory, params: RuleParams
) -> list[_Signal]:
    in_window = sum(1 for scan in scans if scan.is_delay)
    total = history.delays_before + in_window
    if in_window == 0 or total < params.repeated_delay_count:
        return []
    score = min(0.8, 0.2 + 0.1 * total)
    return [
        _Signal("escalate", f"{total} delay scans (threshold {params.repeated_delay_count})", score)
    ]


def reference_reroute_signals(scans: Sequence[Scan], params: RuleParams) -> list[_Signal]:
    jammed = [
        scan
        for scan in scans
        if scan.is_delayed and scan.hub_congestion >= params.reroute_congestion
    ]
    if not jammed:
        return []
    worst = max(jammed, key=lambda scan: scan.hub_congestion)
    reason = f"hub {worst.hub_id} congestion {worst.hub_congestion:.2f} with a delay"
    return [_Signal("reroute", reason, 0.5 * worst.hub_congestion)]


def reference_exception_signals(scans: Sequence[Scan]) -> list[_Signal]:
    flagged = [scan for scan in scans if scan.scan_type == "exception" or scan.note]
    if not flagged:
        return []
    first = flagged[0]
    summary = f"note classified {rules.classify_notes([first.note])}" if first.note else "no note"
    more = f" (+{len(flagged) - 1} more)" if len(flagged) > 1 else ""
    reason = f"{first.scan_type} at hub {first.hub_id}: {summary}{more}"
    return [_Signal("notify_customer", reason, 0.4)]


def reference_decide_window(
    scans: Sequence[Scan], history: ShipmentHistory, *, params: RuleParams
) -> Verdict:
    latest = scans[0] if len(scans) == 1 else max(scans, key=lambda scan: scan.occurred_at)
    delivered_at = reference_delivered_at(scans, history)
    signals = reference_exception_signals(scans)
    if delivered_at is None:
        signals += reference_sla_signals(scans, latest, params)
        signals += reference_delay_signals(scans, history, params)
        signals += reference_reroute_signals(scans, params)
        baseline = 0.1 * (1 - latest.carrier_reliability) + 0.1 * latest.hub_congestion
    else:
        signals += rules._delivery_signals(delivered_at, latest.sla_due_at)
        baseline = 0.0
    if not signals:
        signals.append(_Signal("ok", "on track", 0.0))
    return reference_verdict(signals, baseline)


def reference_decide_stuck(last: Scan, *, stuck_after: timedelta) -> Verdict:
    since = rules._fmt_time(last.occurred_at)
    quiet = f"no scan for {rules._hours(stuck_after):.1f} h"
    signals = [_Signal("escalate", f"stuck at hub {last.hub_id} since {since} ({quiet})", 0.7)]
    if last.sla_due_at - last.occurred_at < stuck_after:
        signals.append(
            _Signal(
                "escalate", f"SLA due {rules._fmt_time(last.sla_due_at)} passed while stuck", 0.5
            )
        )
    baseline = 0.2 * (1 - last.carrier_reliability) + 0.2 * last.hub_congestion
    return reference_verdict(signals, baseline)


# --- the scans -----------------------------------------------------------------------------------

T0 = datetime(2026, 11, 27, 8, tzinfo=UTC)
HOURS = st.floats(min_value=-200, max_value=200, allow_nan=False).map(lambda h: timedelta(hours=h))
UNIT = st.floats(min_value=0.0, max_value=1.0)
HUB = st.sampled_from(["HUB-1", "HUB-2", "H" * 300])
NOTE = st.one_of(st.none(), st.sampled_from(["", "box dented", "customs hold", "x" * 400]))


@st.composite
def scans(draw: st.DrawFn) -> Scan:
    at = T0 + draw(HOURS)
    eta = draw(st.one_of(st.none(), HOURS.map(lambda h: at + h)))
    return Scan(
        event_id=f"E-{draw(st.integers(0, 5))}",
        occurred_at=at,
        scan_type=draw(
            st.sampled_from(["arrived_hub", "delay", "delivered", "exception", "picked_up"])
        ),
        carrier_id=draw(st.sampled_from(["CAR-A", "C" * 300])),
        hub_id=draw(HUB),
        region="eu-west",
        eta=eta,
        delay_minutes=draw(st.sampled_from([0, 0, 30, 480])),
        note=draw(NOTE),
        carrier_reliability=draw(UNIT),
        hub_congestion=draw(UNIT),
        sla_due_at=T0 + draw(HOURS),
    )


HISTORY = st.builds(
    ShipmentHistory,
    delays_before=st.integers(0, 4),
    delivered_at=st.one_of(st.none(), HOURS.map(lambda h: T0 + h)),
)
PARAMS = st.builds(
    RuleParams,
    sla_warning=st.sampled_from([timedelta(hours=4), timedelta(0), timedelta(hours=100)]),
    repeated_delay_count=st.integers(1, 3),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(scans(), min_size=1, max_size=4), HISTORY, PARAMS)
def test_decide_window_is_the_plain_code(
    window: list[Scan], history: ShipmentHistory, params: RuleParams
) -> None:
    got = decide_window(window, history, params=params)
    expected = reference_decide_window(window, history, params=params)
    assert got == expected
    assert (type(got.risk), type(got.reasons)) == (float, tuple)


@settings(max_examples=300, deadline=None)
@given(scans(), st.sampled_from([timedelta(hours=1), timedelta(hours=48), timedelta(days=400)]))
def test_decide_stuck_is_the_plain_code(last: Scan, stuck_after: timedelta) -> None:
    assert decide_stuck(last, stuck_after=stuck_after) == reference_decide_stuck(
        last, stuck_after=stuck_after
    )


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ok", "expedite", "reroute", "escalate"]), st.text(max_size=320), UNIT
        ),
        min_size=1,
        max_size=3,
    ),
    st.floats(min_value=-1, max_value=2),
)
def test_verdict_is_the_plain_code(signals: list[tuple[str, str, float]], baseline: float) -> None:
    made = [_Signal(*signal) for signal in signals]  # type: ignore[arg-type]
    assert rules._verdict(list(made), baseline) == reference_verdict(list(made), baseline)


ZONE = st.sampled_from(
    [UTC, timezone(timedelta(0), "Z0"), timezone(timedelta(hours=2)), timezone(-timedelta(hours=5))]
)
WHEN = st.builds(
    lambda t, z: t.replace(tzinfo=z),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    ZONE,
)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=70), WHEN, WHEN, st.sampled_from(["window", "stuck"]))
@example("SHP-1", T0, T0.astimezone(timezone(timedelta(hours=2))), "window")
def test_decision_id_is_the_deterministic_id(
    shipment_id: str, start: datetime, end: datetime, kind: str
) -> None:
    expected = deterministic_id(shipment_id, start.isoformat(), end.isoformat(), kind)
    assert decisions.decision_id(shipment_id, start, end, kind) == expected
    assert decisions.decision_id(shipment_id, start, end, kind) == expected  # from the memo
    # an equal instant in another zone is written otherwise: the memo must not mix them up
    other = end.astimezone(timezone(timedelta(hours=3)))
    assert decisions.decision_id(shipment_id, start, other, kind) == deterministic_id(
        shipment_id, start.isoformat(), other.isoformat(), kind
    )


def test_the_bounds_memo_is_bounded() -> None:
    with (
        mock.patch.object(decisions, "MAX_SHARED_STARTS", 3),
        mock.patch.dict(decisions._ISO, clear=True),
    ):
        for hour in range(10):
            when = T0 + timedelta(hours=hour)
            assert decisions._iso(when) == when.isoformat()
            assert len(decisions._ISO) <= 3


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(min_value=-1e6, max_value=1e6), st.integers(-1000, 1000)))
def test_sla_hours_are_timedelta_hours(hours: float) -> None:
    assert enrich._hours(hours) == timedelta(hours=hours)
    assert enrich._hours(hours) == timedelta(hours=hours)


def test_the_sla_memo_is_bounded() -> None:
    with mock.patch.object(enrich, "MAX_SLA", 2), mock.patch.dict(enrich._SLA, clear=True):
        for hours in (1.0, 2.5, 3.0, 48.0):
            assert enrich._hours(hours) == timedelta(hours=hours)
            assert len(enrich._SLA) <= 2


@settings(max_examples=300, deadline=None)
@given(
    st.lists(scans(), min_size=1, max_size=3),
    st.lists(st.sampled_from(["on track", "a reason", "x" * 300]), min_size=1, max_size=25),
)
def test_a_decision_lists_what_the_plain_code_lists(window: list[Scan], reasons: list[str]) -> None:
    """`_decision` takes one-scan windows' ids and notes without their loops; the lists are
    those the comprehensions made (reasons and notes cut to 20)."""
    windows = decisions.ShipmentWindows(
        decisions.WindowParams(
            window=timedelta(minutes=30), lateness=timedelta(0), stuck_after=timedelta(hours=48)
        )
    )
    windows._shipment_id = "SHP-1"
    verdict = Verdict("notify_customer", tuple(reasons), 0.5)
    made = windows._decision(
        kind="window", trigger="window_closed", bounds=(T0, T0 + timedelta(minutes=30)),
        verdict=verdict, scans=window, duplicates=0, facts=window[-1], now=T0,
    )  # fmt: skip
    assert made.event_ids == [scan.event_id for scan in window]
    assert made.notes == [scan.note for scan in window if scan.note][: decisions.MAX_NOTES]
    assert made.reasons == list(verdict.reasons[: decisions.MAX_REASONS])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(HOURS, min_size=1, max_size=3, unique=True),
    st.one_of(st.none(), HOURS),
    st.sampled_from([timedelta(minutes=30), timedelta(hours=2)]),
    st.sampled_from([timedelta(0), timedelta(minutes=15)]),
)
def test_due_starts_are_the_plain_code_s(
    starts: list[timedelta], mark: Optional[timedelta], window: timedelta, lateness: timedelta
) -> None:
    """One open window is judged without sorting; `reach` is the window plus the lateness."""
    params = decisions.WindowParams(window=window, lateness=lateness, stuck_after=timedelta(1))
    assert params.reach == window + lateness
    windows = decisions.ShipmentWindows(params)
    windows._open = {T0 + start: decisions.OpenWindow() for start in starts}
    watermark = None if mark is None else T0 + mark
    expected = (
        []
        if watermark is None
        else sorted(s for s in windows._open if s + window + lateness <= watermark)
    )
    assert windows._due_starts(watermark) == expected


NOTES = st.lists(
    st.one_of(
        st.sampled_from(["box dented", "customs hold", "  ", "", "sorting backlog", "x" * 201]),
        st.text(max_size=30),
    ),
    max_size=3,
)


@settings(max_examples=500, deadline=None)
@given(NOTES)
def test_classify_notes_is_the_plain_code(notes: list[str]) -> None:
    """A single short note's category is memoised: the same as the plain classification."""
    assert agent.classify_notes(notes) == agent._classify_notes(notes)
    assert agent.classify_notes(notes) == agent._classify_notes(notes)  # from the memo
