"""The engine behind `operators.surge`: fills the record slots of a surge for any `SurgeFlow`.

Plain Python (no Bytewax import). It owns the two phases, the upload lag, and the records that
are not simply the next scan or message: duplicates, late deliveries, unknown references and
malformed values. The flows (`operators.shipments.surge`, `operators.tickets.surge`) only make
up entities and their payloads. See the `operators.surge` docstring for the stream shape.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate, count
from typing import Any, Generic, Optional, Protocol, TypeVar

import orjson

from operators.runtime.records import RawRecord

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
RAW_MALFORMED = frozenset(
    {"broken_json", "json_array", "empty_bytes", "null", "non_utf8", "deep_nesting"}
)
_TAG_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_MARKER = "\x00surge-marker"  # stands in for raw bytes spliced into a serialised record
_MARKER_JSON = orjson.dumps(_MARKER)
_LATIN1_JSON = '"Colis abîmé à l\'entrepôt, déjà signalé"'.encode("latin-1")
_NESTED = b"[" * 100 + b"]" * 100

T = TypeVar("T")


@dataclass(frozen=True)
class Generated:
    """One generated record and what it is."""

    record: RawRecord
    kind: str  # "valid", "duplicate", "late", "unknown_reference", "malformed:<what>"
    intent: Optional[str] = None  # tickets: the true route of a schema-valid message


class SurgeFlow(Protocol):
    """What the engine needs from a flow's content generator."""

    key_field: str
    id_field: str
    time_field: str
    text_field: str
    malformed_kinds: tuple[str, ...]
    has_references: bool

    def new_entity(self) -> Any: ...
    def step(
        self, entity: Any, at: datetime
    ) -> tuple[dict[str, Any], Optional[str], Optional[float]]: ...
    def next_id(self) -> str: ...
    def malformed(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]: ...
    def unknown_reference(self, payload: dict[str, Any]) -> dict[str, Any]: ...


def iso_utc(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Weighted(Generic[T]):
    """Fixed weighted choices; `pick` draws exactly as `rng.choices(options, weights)[0]`."""

    options: tuple[T, ...]
    cum_weights: tuple[int, ...]

    @classmethod
    def of(cls, weights: dict[T, int]) -> Weighted[T]:
        return cls(tuple(weights), tuple(accumulate(weights.values())))

    def pick(self, rng: random.Random) -> T:
        return rng.choices(self.options, cum_weights=self.cum_weights)[0]


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


_Slot = tuple[bytes, Optional[str], str, Optional[str]]  # value, key, kind, intent


class _Engine:
    """Fills record slots from due entities, new entities, held records and malformed ones."""

    def __init__(self, flow: SurgeFlow, rng: random.Random, origin: datetime, topic: str) -> None:
        self.flow, self.rng, self.origin, self.topic = flow, rng, origin, topic
        self.due: list[tuple[float, int, Any]] = []
        self.held: list[_Held] = []
        self.serial = count()
        self.template: Optional[dict[str, Any]] = None
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

    def _next(self, now: float) -> _Slot:
        if self.template is not None and self.rng.random() < P_MALFORMED:
            kind = self.deck.draw()
            payload = {**self.template, self.flow.id_field: self.flow.next_id()}
            value, key = self._malformed(kind, payload)
            return value, key, f"malformed:{kind}", None
        if self.held and self.held[0].emit_at <= now:
            held = heapq.heappop(self.held)
            return held.value, held.key, held.kind, held.intent
        return self._next_scan(now)

    def _next_scan(self, now: float) -> _Slot:
        """The next scan/message; late ones are held back, some others are held as duplicates."""
        while True:
            payload, intent = self._scan(now)
            key = payload[self.flow.key_field]
            if self.rng.random() < P_LATE:
                self._hold(now + self.rng.uniform(2 * 3600, 6 * 3600), payload, "late", intent)
                continue
            if self.flow.has_references and self.rng.random() < P_UNKNOWN_REFERENCE:
                value = orjson.dumps(self.flow.unknown_reference(payload))
                return value, key, "unknown_reference", intent
            if self.rng.random() < P_DUPLICATE:
                self._hold(now + self.rng.uniform(60, 900), payload, "duplicate", intent)
            self.template = payload
            return orjson.dumps(payload), key, "valid", intent

    def _scan(self, now: float) -> tuple[dict[str, Any], Optional[str]]:
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

    def _hold(
        self, emit_at: float, payload: dict[str, Any], kind: str, intent: Optional[str]
    ) -> None:
        key = payload[self.flow.key_field]
        held = _Held(emit_at, next(self.serial), orjson.dumps(payload), key, kind, intent)
        heapq.heappush(self.held, held)

    def _malformed(self, kind: str, payload: dict[str, Any]) -> tuple[bytes, Optional[str]]:
        """The bytes of a malformed record built from a valid payload, and its Kafka key."""
        flow, key = self.flow, payload[self.flow.key_field]
        if kind in RAW_MALFORMED:
            return self._raw_malformed(kind, payload), key
        if kind == "control_chars":
            key = f"{key[:4]}\x07\x1b{key[4:]}"
            return orjson.dumps({**payload, flow.key_field: key}), key
        if kind == f"missing_{flow.key_field}":
            rest = {name: value for name, value in payload.items() if name != flow.key_field}
            return orjson.dumps(rest), None
        if kind == "extra_field":
            return orjson.dumps({**payload, "source_system": "legacy-edi-gateway"}), key
        if kind == "naive_timestamp":
            naive = payload[flow.time_field].removesuffix("Z")
            return orjson.dumps({**payload, flow.time_field: naive}), key
        return orjson.dumps(flow.malformed(kind, payload)), key

    def _raw_malformed(self, kind: str, payload: dict[str, Any]) -> bytes:
        """Values that are not one JSON object of UTF-8 text."""
        if kind == "broken_json":
            text = orjson.dumps(payload)
            return text[: self.rng.randrange(len(text) // 3, 2 * len(text) // 3)]
        if kind == "json_array":
            return orjson.dumps([payload])
        if kind == "empty_bytes":
            return b""
        if kind == "null":
            return b"null"
        text = orjson.dumps({**payload, self.flow.text_field: _MARKER})
        raw = _LATIN1_JSON if kind == "non_utf8" else _NESTED
        return text.replace(_MARKER_JSON, raw)


def run_surge(
    flow_type: type, seed: int, steady_events: int, burst_factor: int, start: datetime, topic: str
) -> Iterator[Generated]:
    """The records of one surge of `flow_type(rng, tag)`, checked arguments first."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be a timezone-aware datetime")
    if steady_events < 0 or burst_factor < 1:
        raise ValueError("steady_events must be >= 0 and burst_factor >= 1")
    rng = random.Random(seed)
    tag = "".join(rng.choice(_TAG_ALPHABET) for _ in range(4))
    origin = start.astimezone(UTC).replace(microsecond=0)
    flow = flow_type(rng, tag)
    yield from _Engine(flow, rng, origin, topic).run(steady_events, burst_factor)
