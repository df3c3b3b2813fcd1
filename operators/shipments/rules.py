"""The shipment decision rules as pure functions (no Bytewax, no clock, no I/O).

A closed decision window is judged from its scans and the shipment's history; a shipment with no
scan for too long is judged stuck. Every rule that fires adds a signal (an action, a short reason
and a risk score); the strongest action wins, every reason is kept, and the risk combines the
scores as independent probabilities. Exception notes only raise the action to at least
`notify_customer`: classifying the note and drafting the message is the LLM step's job. A
reason names a note's keyword category, never its text.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Optional

from operators.config.domains import ShipmentsSettings
from operators.shipments.agent import classify_notes
from operators.shipments.domain import EnrichedEvent
from schemas.shipments import Action

ACTION_RANK: dict[Action, int] = {
    "ok": 0,
    "notify_customer": 1,
    "expedite": 2,
    "reroute": 3,
    "escalate": 4,
}
"""Strength of each action; the strongest one a rule asks for wins."""

MAX_REASON_CHARS = 300


class Scan(NamedTuple):
    """The fields of an `EnrichedEvent` the decisions need, as one flat, picklable tuple."""

    event_id: str
    occurred_at: datetime
    scan_type: str
    carrier_id: str
    hub_id: str
    region: str
    eta: Optional[datetime]
    delay_minutes: int
    note: Optional[str]
    carrier_reliability: float
    hub_congestion: float
    sla_due_at: datetime

    @classmethod
    def from_event(cls, enriched: EnrichedEvent) -> Scan:
        """Flatten a validated, enriched scan. The few values many shipments share (scan type,
        carrier, hub, region) are interned: a live shipment holds references, not copies."""
        event = enriched.event
        return _new_scan(
            cls,
            (
                event.event_id,
                event.occurred_at,
                _intern(event.scan_type),
                _intern(event.carrier_id),
                _intern(event.hub_id),
                _intern(enriched.region),
                event.eta,
                event.delay_minutes,
                event.note or None,
                enriched.carrier_reliability,
                enriched.hub_congestion,
                enriched.sla_due_at,
            ),
        )  # in field order (positional: no keyword parsing per scan)

    @property
    def is_delay(self) -> bool:
        return self.scan_type == "delay"

    @property
    def is_delayed(self) -> bool:
        """A delay scan, or any scan reporting minutes of delay."""
        return self.is_delay or self.delay_minutes > 0


_new_scan = tuple.__new__
_intern = sys.intern


@dataclass(frozen=True)
class RuleParams:
    """Thresholds of the rules; the first two come from `ShipmentsSettings`."""

    sla_warning: timedelta = timedelta(hours=4)
    repeated_delay_count: int = 2
    unreliable_below: float = 0.85
    congested_above: float = 0.7
    reroute_congestion: float = 0.9
    large_breach: timedelta = timedelta(hours=12)

    @classmethod
    def from_settings(cls, shipments: ShipmentsSettings) -> RuleParams:
        return cls(
            sla_warning=timedelta(hours=shipments.sla_warning_hours),
            repeated_delay_count=shipments.repeated_delay_count,
        )


@dataclass(frozen=True)
class ShipmentHistory:
    """What the shipment did before the window being judged."""

    delays_before: int = 0
    delivered_at: Optional[datetime] = None


@dataclass(frozen=True, init=False)
class Verdict:
    """The decided action, every reason that led to it, and a risk score in 0..1."""

    action: Action
    reasons: tuple[str, ...]
    risk: float

    def __init__(self, action: Action, reasons: tuple[str, ...], risk: float) -> None:
        # One call, not one `object.__setattr__` per field (one verdict per closed window).
        object.__setattr__(self, "__dict__", {"action": action, "reasons": reasons, "risk": risk})


class _Signal(NamedTuple):
    action: Action
    reason: str
    score: float


def decide_window(
    scans: Sequence[Scan], history: ShipmentHistory, *, params: RuleParams = RuleParams()
) -> Verdict:
    """Judge one closed window of a shipment's scans (at least one scan)."""
    latest = scans[0] if len(scans) == 1 else max(scans, key=lambda scan: scan.occurred_at)
    delivered_at = _delivered_at(scans, history)
    signals = _exception_signals(scans)
    if delivered_at is None:
        signals += _sla_signals(_latest_eta(scans), latest, params)
        signals += _delay_signals(scans, history, params)
        signals += _reroute_signals(scans, params)
        baseline = 0.1 * (1 - latest.carrier_reliability) + 0.1 * latest.hub_congestion
    else:
        signals += _delivery_signals(delivered_at, latest.sla_due_at)
        baseline = 0.0
    if not signals:
        signals.append(_Signal("ok", "on track", 0.0))
    return _verdict(signals, baseline)


def decide_stuck(last: Scan, *, stuck_after: timedelta) -> Verdict:
    """Judge a shipment whose last scan is `stuck_after` old: always `escalate`."""
    since = _fmt_time(last.occurred_at)
    quiet = f"no scan for {_hours(stuck_after):.1f} h"
    signals = [_Signal("escalate", f"stuck at hub {last.hub_id} since {since} ({quiet})", 0.7)]
    if last.sla_due_at - last.occurred_at < stuck_after:  # a difference never overflows
        signals.append(
            _Signal("escalate", f"SLA due {_fmt_time(last.sla_due_at)} passed while stuck", 0.5)
        )
    baseline = 0.2 * (1 - last.carrier_reliability) + 0.2 * last.hub_congestion
    return _verdict(signals, baseline)


def strongest(actions: Sequence[Action]) -> Action:
    """The strongest of `actions` (`ok` for none)."""
    return max(actions, key=ACTION_RANK.__getitem__, default="ok")


def _verdict(signals: list[_Signal], baseline: float) -> Verdict:
    safe = 1.0 - min(max(baseline, 0.0), 1.0)
    if len(signals) == 1:  # the most frequent case, without the loops
        action, reason, score = signals[0]
        safe *= 1.0 - score
        reasons: tuple[str, ...] = (
            reason if len(reason) <= MAX_REASON_CHARS else _bounded(reason),
        )
    else:
        for signal in signals:
            safe *= 1.0 - signal.score
        action = strongest([signal.action for signal in signals])
        reasons = tuple(_bounded(signal.reason) for signal in signals)
    return Verdict(action, reasons, round(min(max(1.0 - safe, 0.0), 1.0), 3))


def _delivered_at(scans: Sequence[Scan], history: ShipmentHistory) -> Optional[datetime]:
    if len(scans) == 1:  # the most frequent window, without the loop
        only = scans[0]
        times = [only.occurred_at] if only.scan_type == "delivered" else []
    else:
        times = [scan.occurred_at for scan in scans if scan.scan_type == "delivered"]
    if history.delivered_at is not None:
        times.append(history.delivered_at)
    return min(times, default=None)


def _delivery_signals(delivered_at: datetime, due: datetime) -> list[_Signal]:
    if delivered_at <= due:
        return [_Signal("ok", "delivered on time", 0.0)]
    late_hours = _hours(delivered_at - due)
    return [_Signal("ok", f"delivered {late_hours:.1f} h after the SLA due time", 0.1)]


def _projected_breach(eta: Optional[datetime], latest: Scan) -> Optional[tuple[str, timedelta]]:
    """How far past the SLA due time the latest ETA (`eta`, of `_latest_eta`) or the latest
    scan is, if at all."""
    due = latest.sla_due_at
    candidates: list[tuple[str, timedelta]] = [("last scan", latest.occurred_at - due)]
    if eta is not None:
        candidates.append(("ETA", eta - due))
    what, overdue = max(candidates, key=lambda candidate: candidate[1])
    return (what, overdue) if overdue > timedelta(0) else None


def _sla_signals(eta: Optional[datetime], latest: Scan, params: RuleParams) -> list[_Signal]:
    """The SLA signals of a window whose latest ETA is `eta` (`_latest_eta`)."""
    breach = _projected_breach(eta, latest)
    if breach is not None:
        return _breach_signals(latest, breach[0], breach[1], params)
    if eta is not None and latest.sla_due_at - eta <= params.sla_warning:
        margin = _hours(latest.sla_due_at - eta)
        return [_Signal("notify_customer", f"ETA only {margin:.1f} h before the SLA due", 0.3)]
    return []


def _breach_signals(
    latest: Scan, what: str, overdue: timedelta, params: RuleParams
) -> list[_Signal]:
    """A breach notifies the customer; an unreliable carrier, a congested hub or a large delay
    make it an `expedite` (each cause is its own reason)."""
    breach = f"SLA breach: {what} {_hours(overdue):.1f} h past due {_fmt_time(latest.sla_due_at)}"
    causes: list[str] = []
    if latest.carrier_reliability < params.unreliable_below:
        causes.append(
            f"carrier {latest.carrier_id} reliability {latest.carrier_reliability:.2f}"
            f" below {params.unreliable_below:.2f}"
        )
    if latest.hub_congestion > params.congested_above:
        causes.append(
            f"hub {latest.hub_id} congestion {latest.hub_congestion:.2f}"
            f" above {params.congested_above:.2f}"
        )
    if overdue >= params.large_breach:
        causes.append(f"delay of {_hours(overdue):.1f} h is large")
    action: Action = "expedite" if causes else "notify_customer"
    score = 0.5 + min(0.4, _hours(overdue) / 48)
    return [_Signal(action, breach, score)] + [_Signal(action, cause, 0.0) for cause in causes]


def _delay_signals(
    scans: Sequence[Scan], history: ShipmentHistory, params: RuleParams
) -> list[_Signal]:
    if len(scans) == 1:
        in_window = 1 if scans[0].scan_type == "delay" else 0
    else:
        in_window = sum(1 for scan in scans if scan.is_delay)
    total = history.delays_before + in_window
    if in_window == 0 or total < params.repeated_delay_count:
        return []
    score = min(0.8, 0.2 + 0.1 * total)
    return [
        _Signal("escalate", f"{total} delay scans (threshold {params.repeated_delay_count})", score)
    ]


def _reroute_signals(scans: Sequence[Scan], params: RuleParams) -> list[_Signal]:
    jammed = [
        scan
        for scan in scans
        if scan.hub_congestion >= params.reroute_congestion and scan.is_delayed
    ]
    if not jammed:
        return []
    worst = max(jammed, key=lambda scan: scan.hub_congestion)
    reason = f"hub {worst.hub_id} congestion {worst.hub_congestion:.2f} with a delay"
    return [_Signal("reroute", reason, 0.5 * worst.hub_congestion)]


def _exception_signals(scans: Sequence[Scan]) -> list[_Signal]:
    """An exception scan or a note notifies the customer. The reason is in our words: the
    note's keyword category, never the note's text (it is written outside the system and stays
    in the decision's `notes`)."""
    if len(scans) == 1:
        only = scans[0]
        flagged = [only] if only.scan_type == "exception" or only.note else []
    else:
        flagged = [scan for scan in scans if scan.scan_type == "exception" or scan.note]
    if not flagged:
        return []
    first = flagged[0]
    summary = f"note classified {classify_notes([first.note])}" if first.note else "no note"
    more = f" (+{len(flagged) - 1} more)" if len(flagged) > 1 else ""
    reason = f"{first.scan_type} at hub {first.hub_id}: {summary}{more}"
    return [_Signal("notify_customer", reason, 0.4)]


def _latest_eta(scans: Sequence[Scan]) -> Optional[datetime]:
    if len(scans) == 1:
        return scans[0].eta
    with_eta = [scan for scan in scans if scan.eta is not None]
    if not with_eta:
        return None
    return max(with_eta, key=lambda scan: scan.occurred_at).eta


def _bounded(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def _fmt_time(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC")
