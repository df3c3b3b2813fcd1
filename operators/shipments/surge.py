"""Shipment lifecycles for the shipment surge of `operators.surge` (plain Python, no Bytewax).

A shipment is picked up by a carrier from `data/carriers.csv`, arrives at and departs from one to
four hubs of `data/hubs.csv`, goes out for delivery and is delivered. Unreliable carriers add
delay scans; some shipments hit an exception (notes in `data/templates/shipment_notes.json`),
some were picked up before the stream starts, and a few are never scanned again.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import count
from typing import Any, Optional

from operators.runtime.records import RawRecord
from operators.shipments.reference import ShipmentReference
from operators.surge.engine import SURGE_START, Generated, Weighted, iso_utc, run_surge
from operators.surge.templates import load_shipment_notes

DELAY_MINUTES = (30, 45, 60, 90, 120, 180, 240, 360, 480, 720)
UNKNOWN_CARRIERS = ("CAR-NOVAPOST", "CAR-QUICKDROP", "CAR-GHOSTLINE")
UNKNOWN_HUBS = ("HUB-XYZ9", "HUB-TMP0", "HUB-OSL7")
MAX_GAP_HOURS = 4.5
P_EXCEPTION = 0.07
P_IN_TRANSIT = 0.35
P_STUCK = 0.03
EXTRA_HUBS = Weighted.of({0: 25, 1: 35, 2: 28, 3: 12})
DELAYS_PER_SHIPMENT = Weighted.of({1: 40, 2: 22, 3: 14, 4: 10, 5: 8, 6: 6})


@dataclass(frozen=True)
class _Scan:
    gap: float  # seconds after the previous scan of the shipment (0 for the pickup)
    scan_type: str
    hub_id: str
    delay_minutes: int = 0
    note: Optional[str] = None
    eta_hours: Optional[float] = None  # after shipped_at, as the carrier estimates it then

    def with_eta(self, eta_hours: Optional[float]) -> _Scan:
        """This scan with another ETA (a plain constructor call, cheaper than `replace`)."""
        return _Scan(
            self.gap, self.scan_type, self.hub_id, self.delay_minutes, self.note, eta_hours
        )


@dataclass
class _Shipment:
    shipment_id: str
    carrier_id: str
    scans: list[_Scan]
    shipped_before: float  # seconds between pickup and the first scan in the stream
    pos: int = 0
    shipped_at: Optional[datetime] = None


class ShipmentFlow:
    """Shipment lifecycles: pickup, hubs, delivery, with delays, exceptions and stuck parcels."""

    key_field, id_field, time_field, text_field = "shipment_id", "event_id", "occurred_at", "note"
    malformed_kinds = (
        "wrong_type",
        "unknown_scan_type",
        "occurred_before_shipped",
        "huge_note",
        "negative_delay",
    )
    has_references = True

    def __init__(self, rng: random.Random, tag: str) -> None:
        self.rng, self.tag = rng, tag
        reference = ShipmentReference.load()
        self.carriers = tuple(reference.carriers.iter_rows(named=True))
        self.hubs = tuple(reference.hubs.iter_rows(named=True))
        self.notes = load_shipment_notes()
        self.exceptions = Weighted.of(self.notes.exception_weights)
        self.shipments, self.events = count(1), count(1)

    def next_id(self) -> str:
        return f"EVT-{self.tag}-{next(self.events):09d}"

    def new_entity(self) -> _Shipment:
        carrier = self.rng.choice(self.carriers)
        scans = self._add_delays(self._lifecycle(self._route()), carrier)
        if self.rng.random() < P_EXCEPTION:
            scans = self._add_exception(scans)
        scans = self._with_etas(scans)
        shipped_before = 0.0
        if self.rng.random() < P_IN_TRANSIT and len(scans) > 4:  # picked up before the stream
            skip = self.rng.randrange(1, len(scans) - 2)
            shipped_before = sum(s.gap for s in scans[1 : skip + 1]) + self._backlog()
            scans = [replace(scans[skip], gap=0.0), *scans[skip + 1 :]]
        if self.rng.random() < P_STUCK:  # nobody scans it again
            scans = scans[: self.rng.randrange(1, len(scans) - 1)]
        shipment_id = f"SHP-{self.tag}-{next(self.shipments):08d}"
        return _Shipment(shipment_id, carrier["carrier_id"], scans, shipped_before)

    def _backlog(self) -> float:
        """Extra time an in-transit shipment already lost before the stream shows it."""
        return self.rng.choice((0.0, 0.0, self.rng.uniform(1, 12), self.rng.uniform(12, 48))) * 3600

    def step(self, entity: _Shipment, at: datetime) -> tuple[dict[str, Any], None, Optional[float]]:
        scan = entity.scans[entity.pos]
        entity.pos += 1
        if entity.shipped_at is None:
            entity.shipped_at = at - timedelta(seconds=round(entity.shipped_before))
        shipped_at = entity.shipped_at
        payload: dict[str, Any] = {
            "event_id": self.next_id(),
            "shipment_id": entity.shipment_id,
            "carrier_id": entity.carrier_id,
            "hub_id": scan.hub_id,
            "scan_type": scan.scan_type,
            "occurred_at": iso_utc(at),
            "shipped_at": iso_utc(shipped_at),
        }
        if scan.eta_hours is not None:
            payload["eta"] = iso_utc(shipped_at + timedelta(hours=scan.eta_hours))
        payload["delay_minutes"] = scan.delay_minutes
        if scan.note is not None:
            payload["note"] = scan.note
        done = entity.pos >= len(entity.scans)
        return payload, None, None if done else entity.scans[entity.pos].gap

    def _hours(self, low: float, high: float) -> float:
        return min(MAX_GAP_HOURS, self.rng.uniform(low, high)) * 3600

    def _route(self) -> list[dict[str, Any]]:
        route = [self.rng.choice(self.hubs)]
        for _ in range(EXTRA_HUBS.pick(self.rng)):
            unused = [h for h in self.hubs if h not in route]
            nearby = [h for h in unused if h["region"] == route[-1]["region"]]
            route.append(self.rng.choice(nearby if nearby and self.rng.random() < 0.7 else unused))
        return route

    def _lifecycle(self, route: list[dict[str, Any]]) -> list[_Scan]:
        """picked_up, then arrived/departed at every hub, then out for delivery and delivered."""
        scans = [_Scan(0.0, "picked_up", route[0]["hub_id"])]
        for i, hub in enumerate(route):
            travel = self._hours(0.5, 3.0) if i == 0 else self._hours(1.0, 4.0)
            dwell = self._hours(0.5, 2.5 * (1 + hub["congestion"]))
            scans += [
                _Scan(travel, "arrived_hub", hub["hub_id"]),
                _Scan(dwell, "departed_hub", hub["hub_id"]),
            ]
        last = route[-1]["hub_id"]
        return [
            *scans,
            _Scan(self._hours(1.0, 4.0), "out_for_delivery", last),
            _Scan(self._hours(0.5, 4.0), "delivered", last),
        ]

    def _add_delays(self, scans: list[_Scan], carrier: dict[str, Any]) -> list[_Scan]:
        """Unreliable carriers delay more shipments, some of them several times.

        A delay holds the next scan back by up to the delay (within the normal scan gap).
        """
        if self.rng.random() >= min(0.9, (1 - carrier["reliability"]) * 2.5):
            return scans
        for _ in range(DELAYS_PER_SHIPMENT.pick(self.rng)):
            at = self.rng.randrange(1, len(scans) - 1)
            minutes = self.rng.choice(DELAY_MINUTES)
            delay = _Scan(
                self._hours(1.0, 4.0),
                "delay",
                scans[at - 1].hub_id,
                minutes,
                self.rng.choice(self.notes.delay_notes),
            )
            held = replace(
                scans[at], gap=max(scans[at].gap, min(MAX_GAP_HOURS, minutes / 60) * 3600)
            )
            scans = [*scans[:at], delay, held, *scans[at + 1 :]]
        return scans

    def _add_exception(self, scans: list[_Scan]) -> list[_Scan]:
        category = self.exceptions.pick(self.rng)
        note = self.rng.choice(self.notes.exception_notes[category])
        if category == "refused":  # the delivery attempt ends in a refusal
            return [*scans[:-1], replace(scans[-1], scan_type="exception", note=note)]
        if category == "address_issue":  # first attempt fails, a second one succeeds
            ofd = scans[-2]
            failed = _Scan(self._hours(0.3, 2.0), "exception", ofd.hub_id, note=note)
            retry = replace(ofd, gap=self._hours(1.0, 4.0))
            return [*scans[:-1], failed, retry, scans[-1]]
        at = self.rng.choice([i for i, s in enumerate(scans) if s.scan_type == "arrived_hub"]) + 1
        hub = scans[at - 1].hub_id
        delay = self.rng.choice((120, 240, 360, 720)) if category == "weather" else 0
        added = [_Scan(self._hours(0.3, 2.0), "exception", hub, delay, note)]
        if category == "customs_hold":
            added.append(
                _Scan(self._hours(1.0, 3.0), "delay", hub, self.rng.choice((240, 720, 1440)))
            )
        if category == "lost":  # nobody scans the parcel again
            return [*scans[:at], *added]
        return [*scans[:at], *added, *scans[at:]]

    def _with_etas(self, scans: list[_Scan]) -> list[_Scan]:
        """The carrier's estimate on most scans: the plan plus a buffer, pushed back by delays."""
        eta = sum(s.gap for s in scans if s.scan_type != "delay") / 3600 + self.rng.uniform(1, 8)
        result = []
        for scan in scans:
            eta += scan.delay_minutes / 60
            keep = scan.scan_type != "delivered" and self.rng.random() < 0.85
            result.append(scan.with_eta(round(eta, 2) if keep else None))
        return result

    def unknown_reference(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self.rng.random() < 0.5:
            return {**payload, "carrier_id": self.rng.choice(UNKNOWN_CARRIERS)}
        return {**payload, "hub_id": self.rng.choice(UNKNOWN_HUBS)}

    def malformed(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        if kind == "wrong_type":
            return {**payload, "delay_minutes": "abc"}
        if kind == "unknown_scan_type":
            return {**payload, "scan_type": self.rng.choice(("teleported", "returned", "held"))}
        if kind == "occurred_before_shipped":
            shipped = datetime.fromisoformat(payload["shipped_at"])
            earlier = shipped - timedelta(hours=self.rng.uniform(1, 6))
            return {**payload, "occurred_at": iso_utc(earlier)}
        if kind == "huge_note":
            return {**payload, "note": "Driver report: " + "parcel left at depot. " * 250}
        if kind == "negative_delay":
            delay = -self.rng.choice(DELAY_MINUTES)
            return {**payload, "scan_type": "delay", "delay_minutes": delay}
        raise ValueError(f"unknown malformed kind {kind!r}")


# --- public API -----------------------------------------------------------------------------------


def iter_shipment_surge(
    *,
    seed: int = 7,
    steady_events: int = 2000,
    burst_factor: int = 10,
    start: datetime = SURGE_START,
    topic: str = "shipments.events",
) -> Iterator[Generated]:
    """Shipment scan events of a surge, each with its kind (see the module docstring)."""
    yield from run_surge(ShipmentFlow, seed, steady_events, burst_factor, start, topic)


def shipment_surge(
    *,
    seed: int = 7,
    steady_events: int = 2000,
    burst_factor: int = 10,
    start: datetime = SURGE_START,
    topic: str = "shipments.events",
) -> Iterator[RawRecord]:
    """The records of `iter_shipment_surge`."""
    for generated in iter_shipment_surge(
        seed=seed, steady_events=steady_events, burst_factor=burst_factor, start=start, topic=topic
    ):
        yield generated.record
