"""Deterministic, seeded Black Friday surges for `shipments.events` and `tickets.messages`.

Plain Python (no Bytewax import). The same arguments give byte-identical output on any machine:
every choice comes from one `random.Random(seed)`, never from the wall clock, `hash()` or set
order. The generators are lazy, so a surge of millions of records never sits in memory.

Stream shape
------------
A run simulates 24 hours from `start` (Black Friday 2025, 00:00 UTC, by default) in two phases:

- steady: `steady_events` records spread evenly over the first 12 simulated hours;
- burst: `steady_events * burst_factor` records over the next 12 hours, i.e. `burst_factor`
  times the event-time rate.

A run yields exactly `steady_events * (1 + burst_factor)` records and `offset` is the 0-based
sequence number of each. Each record slot is filled by the next scan of a shipment (the next
message of a ticket session) that is due, or else by a new shipment (session), so the number of
live keys grows with the rate. Event timestamps trail their slot by up to five minutes of upload
lag, so records come out in event-time order up to a few minutes of disorder. Shipments and
sessions still in flight when the 24 hours end are cut off, as in any window of a real stream.

Kinds (`Generated.kind`)
------------------------
- `valid`: a record that validates against its schema (`ShipmentEvent` / `TicketMessage`).
- `duplicate` (~2%): the exact bytes of an earlier valid record, re-sent 1-15 minutes later.
- `late` (~0.2%): a valid record emitted 2-6 simulated hours after its own timestamp.
- `unknown_reference` (~0.3%, shipments only): schema-valid, but its `carrier_id` or `hub_id` is
  not in `data/carriers.csv` / `data/hubs.csv`.
- `malformed:<what>` (~0.5%): fails validation; `<what>` names the defect. Kinds are dealt in
  shuffled rounds, so every kind shows up once a run has a few dozen malformed records:
  `broken_json`, `json_array`, `empty_bytes`, `null`, `non_utf8`, `extra_field`,
  `naive_timestamp`, `deep_nesting`, `control_chars`, `missing_<key field>`, and per flow
  `wrong_type`, `unknown_scan_type`, `occurred_before_shipped`, `huge_note`, `negative_delay`
  (shipments) or `wrong_type`, `unknown_channel`, `empty_body`, `huge_body`, `unknown_tier`
  (tickets).

`RawRecord.key` is the record's `shipment_id` / `session_id`, as a Kafka producer would set it;
it is None for the records that lack one (`malformed:missing_*`).

Command line: `python -m operators.surge {shipments,tickets} [--seed N] [--steady N] [--burst N]
[--out FILE]` writes one record value per line (records that cannot be one line of UTF-8 text are
skipped and counted on stderr).
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any, Optional, Protocol

import orjson

from operators.records import RawRecord
from operators.reference import ShipmentReference
from operators.surge_tickets import TicketFlow

SURGE_START = datetime(2025, 11, 28, 0, 0, tzinfo=UTC)
"""Black Friday 2025, the default start of a surge."""

PHASE_SECONDS = 12 * 3600.0
P_MALFORMED = 0.005
P_DUPLICATE = 0.02
P_LATE = 0.003
P_UNKNOWN_REFERENCE = 0.003
MAX_UPLOAD_LAG = 300.0
GENERIC_MALFORMED = (
    "broken_json",
    "json_array",
    "empty_bytes",
    "null",
    "non_utf8",
    "extra_field",
    "naive_timestamp",
    "deep_nesting",
    "control_chars",
)
_TAG_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_MARKER = "\x00surge-marker"  # stands in for raw bytes spliced into a serialised record
_MARKER_JSON = orjson.dumps(_MARKER)
_LATIN1_JSON = '"Colis abîmé à l\'entrepôt, déjà signalé"'.encode("latin-1")
_NESTED = b"[" * 100 + b"]" * 100


@dataclass(frozen=True)
class Generated:
    """One generated record and what it is."""

    record: RawRecord
    kind: str  # "valid", "duplicate", "late", "unknown_reference", "malformed:<what>"
    intent: Optional[str] = None  # tickets: the true route of a schema-valid message


class _Flow(Protocol):
    """What the engine needs from a flow's content generator."""

    key_field: str
    id_field: str
    time_field: str
    text_field: str
    malformed_kinds: tuple[str, ...]
    has_references: bool

    def new_entity(self) -> Any: ...
    def step(self, entity: Any, at: datetime) -> tuple[dict, Optional[str], Optional[float]]: ...
    def next_id(self) -> str: ...
    def malformed(self, kind: str, payload: dict) -> dict: ...
    def unknown_reference(self, payload: dict) -> dict: ...


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Deck:
    """Deals kinds in shuffled rounds, so every kind appears once per round."""

    def __init__(self, rng: random.Random, kinds: tuple[str, ...]) -> None:
        self._rng = rng
        self._kinds = kinds
        self._hand: list[str] = []

    def draw(self) -> str:
        if not self._hand:
            self._hand = list(self._kinds)
            self._rng.shuffle(self._hand)
        return self._hand.pop()


@dataclass(order=True)
class _Held:
    """A record waiting to be re-sent (duplicate) or delivered late."""

    emit_at: float
    serial: int
    value: bytes = field(compare=False)
    key: Optional[str] = field(compare=False)
    kind: str = field(compare=False)
    intent: Optional[str] = field(compare=False)


class _Engine:
    """Fills record slots from due entities, new entities, held records and malformed ones."""

    def __init__(self, flow: _Flow, rng: random.Random, origin: datetime, topic: str) -> None:
        self.flow, self.rng, self.origin, self.topic = flow, rng, origin, topic
        self.due: list[tuple[float, int, Any]] = []
        self.held: list[_Held] = []
        self.serial = count()
        self.template: Optional[dict] = None
        self.deck = _Deck(
            rng, (*GENERIC_MALFORMED, f"missing_{flow.key_field}", *flow.malformed_kinds)
        )

    def run(self, steady_events: int, burst_factor: int) -> Iterator[Generated]:
        offset = 0
        for phase, events in enumerate((steady_events, steady_events * burst_factor)):
            spacing = PHASE_SECONDS / events if events else 0.0
            for i in range(events):
                value, key, kind, intent = self._next(phase * PHASE_SECONDS + i * spacing)
                record = RawRecord(value=value, key=key, topic=self.topic, offset=offset)
                yield Generated(record, kind, intent)
                offset += 1

    def _next(self, now: float) -> tuple[bytes, Optional[str], str, Optional[str]]:
        if self.template is not None and self.rng.random() < P_MALFORMED:
            kind = self.deck.draw()
            value, key = self._malformed(
                kind, {**self.template, self.flow.id_field: self.flow.next_id()}
            )
            return value, key, f"malformed:{kind}", None
        if self.held and self.held[0].emit_at <= now:
            held = heapq.heappop(self.held)
            return held.value, held.key, held.kind, held.intent
        while True:
            payload, intent = self._scan(now)
            key = payload[self.flow.key_field]
            if self.rng.random() < P_LATE:
                self._hold(now + self.rng.uniform(2 * 3600, 6 * 3600), payload, "late", intent)
                continue
            if self.flow.has_references and self.rng.random() < P_UNKNOWN_REFERENCE:
                return (
                    orjson.dumps(self.flow.unknown_reference(payload)),
                    key,
                    "unknown_reference",
                    intent,
                )
            if self.rng.random() < P_DUPLICATE:
                self._hold(now + self.rng.uniform(60, 900), payload, "duplicate", intent)
            self.template = payload
            return orjson.dumps(payload), key, "valid", intent

    def _scan(self, now: float) -> tuple[dict, Optional[str]]:
        """The next scan/message: of the earliest due entity, else of a new one."""
        if self.due and self.due[0][0] <= now:
            entity = heapq.heappop(self.due)[2]
        else:
            entity = self.flow.new_entity()
        lag = min(MAX_UPLOAD_LAG, self.rng.expovariate(1 / 45))
        at = self.origin + timedelta(seconds=round(max(0.0, now - lag)))
        payload, intent, gap = self.flow.step(entity, at)
        if gap is not None:
            heapq.heappush(self.due, (now + gap, next(self.serial), entity))
        return payload, intent

    def _hold(self, emit_at: float, payload: dict, kind: str, intent: Optional[str]) -> None:
        key = payload[self.flow.key_field]
        held = _Held(emit_at, next(self.serial), orjson.dumps(payload), key, kind, intent)
        heapq.heappush(self.held, held)

    def _malformed(self, kind: str, payload: dict) -> tuple[bytes, Optional[str]]:
        flow, key = self.flow, payload[self.flow.key_field]
        if kind == "broken_json":
            text = orjson.dumps(payload)
            return text[: self.rng.randrange(len(text) // 3, 2 * len(text) // 3)], key
        if kind == "json_array":
            return orjson.dumps([payload]), key
        if kind == "empty_bytes":
            return b"", key
        if kind == "null":
            return b"null", key
        if kind in ("non_utf8", "deep_nesting"):
            text = orjson.dumps({**payload, flow.text_field: _MARKER})
            raw = _LATIN1_JSON if kind == "non_utf8" else _NESTED
            return text.replace(_MARKER_JSON, raw), key
        if kind == "extra_field":
            return orjson.dumps({**payload, "source_system": "legacy-edi-gateway"}), key
        if kind == "naive_timestamp":
            naive = payload[flow.time_field].removesuffix("Z")
            return orjson.dumps({**payload, flow.time_field: naive}), key
        if kind == "control_chars":
            key = f"{key[:4]}\x07\x1b{key[4:]}"
            return orjson.dumps({**payload, flow.key_field: key}), key
        if kind == f"missing_{flow.key_field}":
            rest = {name: value for name, value in payload.items() if name != flow.key_field}
            return orjson.dumps(rest), None
        return orjson.dumps(flow.malformed(kind, payload)), key


def _engine_run(
    flow_type: type, seed: int, steady_events: int, burst_factor: int, start: datetime, topic: str
) -> Iterator[Generated]:
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be a timezone-aware datetime")
    if steady_events < 0 or burst_factor < 1:
        raise ValueError("steady_events must be >= 0 and burst_factor >= 1")
    rng = random.Random(seed)
    tag = "".join(rng.choice(_TAG_ALPHABET) for _ in range(4))
    origin = start.astimezone(UTC).replace(microsecond=0)
    flow = flow_type(rng, tag)
    yield from _Engine(flow, rng, origin, topic).run(steady_events, burst_factor)


# --- shipments -----------------------------------------------------------------------------------


EXCEPTION_NOTES: dict[str, tuple[str, ...]] = {
    "damaged": (
        "Parcel damaged in transit, outer box crushed",
        "DAMAGED PACKAGE - corner torn open, contents may be affected",
        "pkg recieved wet and damaged at sort",
        "Box dented, item rattling inside",
        "damaged parcel resealed at hub, photos taken",
    ),
    "address_issue": (
        "Address unclear - street number missing",
        "Incomplete address: no apartment number, driver could not deliver",
        "adress incomplete, cannot deliver",
        "Recipient address not found",
        "Wrong postcode on label, address needs correction",
    ),
    "customs_hold": (
        "Held at customs pending documentation",
        "Customs hold: commercial invoice missing",
        "CUSTOMS INSPECTION - awaiting duty payment",
        "customs clearence delayed, HS code query",
    ),
    "weather": (
        "Severe weather, linehaul suspended",
        "Snow storm - road closed, shipment held",
        "weather delay: flights grounded due to fog",
        "Flooding on route, vehicle turned back",
    ),
    "refused": (
        "Recipient refused delivery",
        "Delivery REFUSED by customer - return to sender",
        "consignee refused parcel at door",
    ),
    "lost": (
        "Parcel missing at hub, trace initiated",
        "Package not located during sort - possibly lost",
        "Shipment lost, last seen at outbound dock",
        "parcel mising from manifest",
    ),
    "other": (
        "Label unreadable, manual relabel needed",
        "Sorter jam, package re-inducted",
    ),
}
EXCEPTION_WEIGHTS = {
    "damaged": 20,
    "address_issue": 20,
    "customs_hold": 12,
    "weather": 14,
    "refused": 10,
    "lost": 10,
    "other": 14,
}
DELAY_NOTES = (
    None,
    None,
    "Linehaul capacity shortage",
    "Missed connection at hub",
    "High volume - Black Friday backlog",
    "Vehicle breakdown",
    "sorting backlog",
)
DELAY_MINUTES = (30, 45, 60, 90, 120, 180, 240, 360, 480, 720)
UNKNOWN_CARRIERS = ("CAR-NOVAPOST", "CAR-QUICKDROP", "CAR-GHOSTLINE")
UNKNOWN_HUBS = ("HUB-XYZ9", "HUB-TMP0", "HUB-OSL7")
MAX_GAP_HOURS = 4.5
P_EXCEPTION = 0.07
P_IN_TRANSIT = 0.35
P_STUCK = 0.03


@dataclass(frozen=True)
class _Scan:
    gap: float  # seconds after the previous scan of the shipment (0 for the pickup)
    scan_type: str
    hub_id: str
    delay_minutes: int = 0
    note: Optional[str] = None
    eta_hours: Optional[float] = None  # after shipped_at, as the carrier estimates it then


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

    def step(self, entity: _Shipment, at: datetime) -> tuple[dict, None, Optional[float]]:
        scan = entity.scans[entity.pos]
        entity.pos += 1
        if entity.shipped_at is None:
            entity.shipped_at = at - timedelta(seconds=round(entity.shipped_before))
        shipped_at = entity.shipped_at
        payload = {
            "event_id": self.next_id(),
            "shipment_id": entity.shipment_id,
            "carrier_id": entity.carrier_id,
            "hub_id": scan.hub_id,
            "scan_type": scan.scan_type,
            "occurred_at": _iso(at),
            "shipped_at": _iso(shipped_at),
        }
        if scan.eta_hours is not None:
            payload["eta"] = _iso(shipped_at + timedelta(hours=scan.eta_hours))
        payload["delay_minutes"] = scan.delay_minutes
        if scan.note is not None:
            payload["note"] = scan.note
        done = entity.pos >= len(entity.scans)
        return payload, None, None if done else entity.scans[entity.pos].gap

    def _hours(self, low: float, high: float) -> float:
        return min(MAX_GAP_HOURS, self.rng.uniform(low, high)) * 3600

    def _route(self) -> list[dict]:
        route = [self.rng.choice(self.hubs)]
        for _ in range(self.rng.choices((0, 1, 2, 3), (25, 35, 28, 12))[0]):
            unused = [h for h in self.hubs if h not in route]
            nearby = [h for h in unused if h["region"] == route[-1]["region"]]
            route.append(self.rng.choice(nearby if nearby and self.rng.random() < 0.7 else unused))
        return route

    def _lifecycle(self, route: list[dict]) -> list[_Scan]:
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

    def _add_delays(self, scans: list[_Scan], carrier: dict) -> list[_Scan]:
        """Unreliable carriers delay more shipments, some of them several times.

        A delay holds the next scan back by up to the delay (within the normal scan gap).
        """
        if self.rng.random() >= min(0.9, (1 - carrier["reliability"]) * 2.5):
            return scans
        for _ in range(self.rng.choices((1, 2, 3, 4, 5, 6), (40, 22, 14, 10, 8, 6))[0]):
            at = self.rng.randrange(1, len(scans) - 1)
            minutes = self.rng.choice(DELAY_MINUTES)
            delay = _Scan(
                self._hours(1.0, 4.0),
                "delay",
                scans[at - 1].hub_id,
                minutes,
                self.rng.choice(DELAY_NOTES),
            )
            held = replace(
                scans[at], gap=max(scans[at].gap, min(MAX_GAP_HOURS, minutes / 60) * 3600)
            )
            scans = [*scans[:at], delay, held, *scans[at + 1 :]]
        return scans

    def _add_exception(self, scans: list[_Scan]) -> list[_Scan]:
        category = self.rng.choices(list(EXCEPTION_WEIGHTS), list(EXCEPTION_WEIGHTS.values()))[0]
        note = self.rng.choice(EXCEPTION_NOTES[category])
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
            result.append(replace(scan, eta_hours=round(eta, 2) if keep else None))
        return result

    def unknown_reference(self, payload: dict) -> dict:
        if self.rng.random() < 0.5:
            return {**payload, "carrier_id": self.rng.choice(UNKNOWN_CARRIERS)}
        return {**payload, "hub_id": self.rng.choice(UNKNOWN_HUBS)}

    def malformed(self, kind: str, payload: dict) -> dict:
        if kind == "wrong_type":
            return {**payload, "delay_minutes": "abc"}
        if kind == "unknown_scan_type":
            return {**payload, "scan_type": self.rng.choice(("teleported", "returned", "held"))}
        if kind == "occurred_before_shipped":
            shipped = datetime.fromisoformat(payload["shipped_at"])
            earlier = shipped - timedelta(hours=self.rng.uniform(1, 6))
            return {**payload, "occurred_at": _iso(earlier)}
        if kind == "huge_note":
            return {**payload, "note": "Driver report: " + "parcel left at depot. " * 250}
        if kind == "negative_delay":
            delay = -self.rng.choice(DELAY_MINUTES)
            return {**payload, "scan_type": "delay", "delay_minutes": delay}
        raise ValueError(f"unknown malformed kind {kind!r}")


# --- public API ----------------------------------------------------------------------------------


def iter_shipment_surge(
    *,
    seed: int = 7,
    steady_events: int = 2000,
    burst_factor: int = 10,
    start: datetime = SURGE_START,
    topic: str = "shipments.events",
) -> Iterator[Generated]:
    """Shipment scan events of a surge, each with its kind (see the module docstring)."""
    yield from _engine_run(ShipmentFlow, seed, steady_events, burst_factor, start, topic)


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


def iter_ticket_surge(
    *,
    seed: int = 7,
    steady_events: int = 2000,
    burst_factor: int = 10,
    start: datetime = SURGE_START,
    topic: str = "tickets.messages",
) -> Iterator[Generated]:
    """Support messages of a surge, each with its kind and true route (see the module docstring)."""
    yield from _engine_run(TicketFlow, seed, steady_events, burst_factor, start, topic)


def ticket_surge(
    *,
    seed: int = 7,
    steady_events: int = 2000,
    burst_factor: int = 10,
    start: datetime = SURGE_START,
    topic: str = "tickets.messages",
) -> Iterator[RawRecord]:
    """The records of `iter_ticket_surge`."""
    for generated in iter_ticket_surge(
        seed=seed, steady_events=steady_events, burst_factor=burst_factor, start=start, topic=topic
    ):
        yield generated.record


# --- command line --------------------------------------------------------------------------------


def write_jsonl(generated: Iterator[Generated], out: Any) -> tuple[Counter[str], int]:
    """Write each record value as one line; skip values that cannot be one line of UTF-8 text.

    Returns the kinds written and the number skipped (not UTF-8, empty, or holding a newline).
    """
    kinds: Counter[str] = Counter()
    skipped = 0
    for item in generated:
        value = item.record.value
        if not value or b"\n" in value or b"\r" in value or not _is_utf8(value):
            skipped += 1
            continue
        out.write(value + b"\n")
        kinds[item.kind] += 1
    return kinds, skipped


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m operators.surge", description="Write a seeded surge as JSON lines."
    )
    parser.add_argument("flow", choices=("shipments", "tickets"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--steady", type=int, default=2000, help="events of the steady phase")
    parser.add_argument("--burst", type=int, default=10, help="burst factor (rate multiplier)")
    parser.add_argument("--out", type=Path, help="output file (default: stdout)")
    args = parser.parse_args(argv)
    generate = iter_shipment_surge if args.flow == "shipments" else iter_ticket_surge
    generated = generate(seed=args.seed, steady_events=args.steady, burst_factor=args.burst)
    if args.out is None:
        kinds, skipped = write_jsonl(generated, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        with args.out.open("wb") as out:
            kinds, skipped = write_jsonl(generated, out)
    summary = ", ".join(f"{kind}={n}" for kind, n in sorted(kinds.items()))
    print(f"wrote {kinds.total()} records ({summary})", file=sys.stderr)
    print(f"skipped {skipped} records that are not one line of UTF-8 text", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
