"""Contracts of the shipments flow: `shipments.events` in, `shipments.decisions` out."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal, Optional, get_args

import orjson
from pydantic import Field, model_validator

from schemas.common import (
    SCHEMA_VERSION,
    EventTime,
    Id,
    NonNegativeInt,
    Probability,
    Reason,
    Record,
    Text,
    TimeBounds,
    UtcDatetime,
    trusted,
)
from schemas.enrichment import Enrichment, EnrichmentJson

ScanType = Literal[
    "picked_up",
    "arrived_hub",
    "departed_hub",
    "out_for_delivery",
    "delivered",
    "delay",
    "exception",
]
Action = Literal["ok", "expedite", "reroute", "notify_customer", "escalate"]
ExceptionCategory = Literal[
    "none", "damaged", "address_issue", "customs_hold", "weather", "lost", "refused", "other"
]
DecisionTrigger = Literal["window_closed", "stuck_timer", "end_of_input"]


class ShipmentEvent(Record):
    """One carrier or warehouse scan of a shipment (topic `shipments.events`, key `shipment_id`)."""

    event_id: Id
    shipment_id: Id
    carrier_id: Id
    hub_id: Id
    scan_type: ScanType
    occurred_at: EventTime
    shipped_at: EventTime
    eta: Optional[UtcDatetime] = None
    delay_minutes: NonNegativeInt = Field(default=0, le=100_000)
    note: Optional[Text] = None

    @model_validator(mode="after")
    def _shipped_before_scan(self) -> ShipmentEvent:
        if self.occurred_at < self.shipped_at:
            raise ValueError("occurred_at is before shipped_at")
        return self

    @classmethod
    def from_common_shape(cls, obj: dict[str, Any], bounds: TimeBounds) -> Optional[ShipmentEvent]:
        """The scan of the parsed JSON object `obj`, equal to `model_validate(obj,
        context=bounds.context())`, built without pydantic when `obj` has the common
        well-formed shape; `None` for anything else, which `model_validate` decides (see
        `event_from_common_shape`). A subclass, which may add validators, always gets `None`."""
        return event_from_common_shape(obj, bounds) if cls is ShipmentEvent else None


class ShipmentEnrichment(Enrichment):
    """Enrichment of a decision: the exception-note category and a drafted message."""

    category: ExceptionCategory = "none"
    message_draft: Text = ""


class ShipmentDecision(Record):
    """One decision per shipment per decision window (topic `shipments.decisions`).

    `decision_id` is deterministic (shipment, window, trigger): a replay after a crash
    reproduces the same id, so consumers drop duplicates by it.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    decision_id: Id = Field(
        description="Deterministic id of the decision: a hash of shipment_id, window_start, "
        "window_end and the kind of decision (window or stuck). A replay after a crash or a "
        "restart emits the same decision again with the same id (delivery is at-least-once): "
        "keep the first record per id and drop the rest. Copies agree on the decision itself "
        "(action, reasons, risk, event_ids); decided_at and the enrichment may differ (a "
        "replayed LLM answer comes from the cache at no cost, and a call that fell back to "
        "the rules the first time may be answered by the LLM on the replay)."
    )
    shipment_id: Id
    action: Action
    reasons: list[Reason] = Field(max_length=20)
    risk: Probability
    trigger: DecisionTrigger
    window_start: UtcDatetime
    window_end: UtcDatetime
    event_ids: list[Id] = Field(max_length=10_000)
    duplicate_events: NonNegativeInt = 0
    carrier_id: Id
    hub_id: Id
    region: str = Field(min_length=1, max_length=40)
    last_scan_at: UtcDatetime
    sla_due_at: UtcDatetime
    notes: list[Text] = Field(default_factory=list, max_length=20)
    decided_at: UtcDatetime
    enrichment: Optional[ShipmentEnrichment] = None

    def json_bytes(self) -> bytes:
        """This decision's JSON, byte for byte what `model_dump_json()` encodes
        (`decision_json`)."""
        return decision_json(self)


_EVENT_FIELDS: tuple[str, ...] = tuple(ShipmentEvent.model_fields)
_EVENT_KEYS: frozenset[str] = frozenset(_EVENT_FIELDS)
_EVENT_REQUIRED: frozenset[str] = frozenset(
    name for name, info in ShipmentEvent.model_fields.items() if info.is_required()
)
_SCAN_TYPES: frozenset[str] = frozenset(get_args(ScanType))
_is_id = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}").fullmatch
"""An `Id` that stripping leaves as it is (no whitespace can match)."""
_is_utc_text = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)"
).fullmatch
"""A timestamp written as `YYYY-MM-DDTHH:MM:SS[.ffffff]` in UTC (`Z` or `+00:00`)."""
_set = object.__setattr__


def _utc_time(value: object) -> Optional[datetime]:
    """The UTC datetime validation makes of `value` when it is a timestamp in the common form
    (`_is_utc_text`), else `None`. (Not memoised: the timestamps of a stream rarely repeat, and
    a memo measured slower than parsing.)"""
    if type(value) is not str or not _is_utc_text(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # such as a 30th of February: validation says why
        return None


def event_from_common_shape(obj: dict[str, Any], bounds: TimeBounds) -> Optional[ShipmentEvent]:
    """`ShipmentEvent.model_validate(obj, context=bounds.context())` without pydantic, for a
    scan of the common well-formed shape; `None` when `obj` is anything else.

    The shape: known fields only, the required ones present; identifiers that match `Id` as
    they are; a known scan type; timestamps as `YYYY-MM-DDTHH:MM:SS[.ffffff]` and `Z` or
    `+00:00`, within `bounds` (event times not too far ahead of its wall clock), the scan not
    before the shipping; `eta` such a timestamp or null; `delay_minutes` an int in 0..100,000;
    `note` null or text of at most 4,000 characters that stripping leaves as it is. Anything
    else, valid or not, goes to full validation (which normalises it or says why it fails).
    """
    keys = obj.keys()
    if not (keys <= _EVENT_KEYS and keys >= _EVENT_REQUIRED):
        return None
    event_id, shipment_id = obj["event_id"], obj["shipment_id"]
    carrier_id, hub_id = obj["carrier_id"], obj["hub_id"]
    if not (
        type(event_id) is str
        and type(shipment_id) is str
        and type(carrier_id) is str
        and type(hub_id) is str
        and _is_id(event_id)
        and _is_id(shipment_id)
        and _is_id(carrier_id)
        and _is_id(hub_id)
    ):
        return None
    scan_type = obj["scan_type"]
    if type(scan_type) is not str or scan_type not in _SCAN_TYPES:
        return None
    occurred_at, shipped_at = _utc_time(obj["occurred_at"]), _utc_time(obj["shipped_at"])
    if occurred_at is None or shipped_at is None or occurred_at < shipped_at:
        return None
    eta = obj.get("eta")
    if eta is not None:
        eta = _utc_time(eta)
        if eta is None or not bounds.earliest <= eta <= bounds.latest:
            return None
    earliest, latest = bounds.earliest, bounds.latest
    if not (earliest <= shipped_at and occurred_at <= latest):  # shipped_at <= occurred_at
        return None
    now, ahead = bounds.now, bounds.max_ahead
    if now is not None and ahead is not None and occurred_at - now > ahead:
        return None  # shipped_at <= occurred_at is not ahead either
    delay_minutes = obj.get("delay_minutes", 0)
    if type(delay_minutes) is not int or not 0 <= delay_minutes <= 100_000:
        return None
    note = obj.get("note")
    if note is not None and not (type(note) is str and len(note) <= 4000 and note == note.strip()):
        return None
    return trusted(
        ShipmentEvent,
        {
            "event_id": event_id, "shipment_id": shipment_id, "carrier_id": carrier_id,
            "hub_id": hub_id, "scan_type": scan_type, "occurred_at": occurred_at,
            "shipped_at": shipped_at, "eta": eta, "delay_minutes": delay_minutes, "note": note,
        },
        set(keys),
    )  # fmt: skip


_ACTIONS: frozenset[str] = frozenset(get_args(Action))
_TRIGGERS: frozenset[str] = frozenset(get_args(DecisionTrigger))
_DECISION_SET: frozenset[str] = frozenset(ShipmentDecision.model_fields) - {
    "schema_version",
    "enrichment",
}
_new_decision = ShipmentDecision.__new__


def _stripped_text(value: object, low: int, high: int) -> bool:
    """`value` is a str of `low..high` characters that `str_strip_whitespace` leaves as it is
    (Python's `str.strip` removes every character pydantic's strip does, and a few more)."""
    return type(value) is str and low <= len(value) <= high and value == value.strip()


def _all_stripped_text(values: list[str], high: int) -> bool:
    """Every one of `values` is `_stripped_text(value, 1, high)` (one loop, no call per value)."""
    for value in values:
        if not (type(value) is str and 0 < len(value) <= high and value == value.strip()):
            return False
    return True


def decision_from_rules(
    *,
    decision_id: str,
    shipment_id: str,
    action: Action,
    reasons: list[str],
    risk: float,
    trigger: DecisionTrigger,
    window_start: datetime,
    window_end: datetime,
    event_ids: list[str],
    duplicate_events: int,
    carrier_id: str,
    hub_id: str,
    region: str,
    last_scan_at: datetime,
    sla_due_at: datetime,
    notes: list[str],
    decided_at: datetime,
) -> ShipmentDecision:
    """The `ShipmentDecision` of these fields, equal (and serialised byte for byte) to
    `ShipmentDecision(**fields)`, built without running its validators when the values are
    already what they would make.

    For the rules' decisions only: the identifiers (`decision_id` a hex digest; `shipment_id`,
    `event_ids`, `carrier_id`, `hub_id` and the `notes` taken from validated `ShipmentEvent`s)
    are trusted; everything else is checked in Python: datetimes in `datetime.UTC`, the action
    and trigger, risk a float in 0..1, the bounds and the stripping of reasons and region, the
    list lengths. A value that fails a check goes through full validation, which normalises it
    or raises `ValidationError` as before.
    """
    if not (
        action in _ACTIONS
        and trigger in _TRIGGERS
        and type(risk) is float
        and 0.0 <= risk <= 1.0
        and type(duplicate_events) is int
        and duplicate_events >= 0
        and window_start.tzinfo is UTC
        and window_end.tzinfo is UTC
        and last_scan_at.tzinfo is UTC
        and sla_due_at.tzinfo is UTC
        and decided_at.tzinfo is UTC
        and type(reasons) is list
        and len(reasons) <= 20
        and _all_stripped_text(reasons, 300)
        and _stripped_text(region, 1, 40)
        and type(event_ids) is list
        and len(event_ids) <= 10_000
        and type(notes) is list
        and len(notes) <= 20
    ):
        return ShipmentDecision(
            decision_id=decision_id, shipment_id=shipment_id, action=action, reasons=reasons,
            risk=risk, trigger=trigger, window_start=window_start, window_end=window_end,
            event_ids=event_ids, duplicate_events=duplicate_events, carrier_id=carrier_id,
            hub_id=hub_id, region=region, last_scan_at=last_scan_at, sla_due_at=sla_due_at,
            notes=notes, decided_at=decided_at,
        )  # fmt: skip
    return trusted(
        ShipmentDecision,
        {
            "schema_version": SCHEMA_VERSION,
            "decision_id": decision_id,
            "shipment_id": shipment_id,
            "action": action,
            "reasons": reasons,
            "risk": risk,
            "trigger": trigger,
            "window_start": window_start,
            "window_end": window_end,
            "event_ids": event_ids,
            "duplicate_events": duplicate_events,
            "carrier_id": carrier_id,
            "hub_id": hub_id,
            "region": region,
            "last_scan_at": last_scan_at,
            "sla_due_at": sla_due_at,
            "notes": notes,
            "decided_at": decided_at,
            "enrichment": None,
        },
        set(_DECISION_SET),
    )


_DECISION_FIELDS: tuple[str, ...] = tuple(ShipmentDecision.model_fields)
_enrichment_json = EnrichmentJson(ShipmentEnrichment)
"""The JSON of the enrichments serialised last: a few shared ones on the rules path."""
_serialise = ShipmentDecision.__pydantic_serializer__.to_json


def decision_json(decision: ShipmentDecision) -> bytes:
    """`decision.model_dump_json().encode()`, made by orjson from the decision's values.

    orjson writes what pydantic writes for the values a decision holds (strings, ints, floats,
    lists, tuples, None, UTC datetimes with `Z`); the values are taken in field order, and the
    bytes are copied to their exact size (see the end of the function). A
    decision of a subclass, with extra values, with values laid out otherwise, with a number of
    another type than its field's (pydantic writes an int in a float field as a float), or with
    a value orjson cannot encode, is serialised by pydantic as before.
    """
    values = decision.__dict__
    enrichment = values["enrichment"]
    if not (
        type(decision) is ShipmentDecision
        and decision.__pydantic_extra__ is None
        and tuple(values) == _DECISION_FIELDS
        and type(values["risk"]) is float
        and type(values["duplicate_events"]) is int
    ):
        return _serialise(decision)
    if enrichment is not None:
        if type(enrichment) is not ShipmentEnrichment:
            return _serialise(decision)
        fragment = _enrichment_json(enrichment)
        if fragment is None:
            return _serialise(decision)
        values = {**values, "enrichment": fragment}
    try:
        made = orjson.dumps(values, option=orjson.OPT_UTC_Z)
    except TypeError:  # a value orjson does not encode
        return _serialise(decision)
    # orjson writes into a buffer of several KB and shrinks it in place: kept as it is, each
    # record held its buffer's memory until written (a surge's records, hundreds of MB of RSS).
    # An exact copy costs about 0.2 µs.
    return bytes(memoryview(made))


def with_enrichment(
    decision: ShipmentDecision, enrichment: Optional[ShipmentEnrichment]
) -> ShipmentDecision:
    """`decision.model_copy(update={"enrichment": enrichment})` (no validation either), without
    pydantic's generic copy: the same fields, fields set, extra and private values."""
    copied = _new_decision(ShipmentDecision)
    _set(copied, "__dict__", {**decision.__dict__, "enrichment": enrichment})
    _set(copied, "__pydantic_fields_set__", {*decision.__pydantic_fields_set__, "enrichment"})
    _set(copied, "__pydantic_extra__", decision.__pydantic_extra__)
    _set(copied, "__pydantic_private__", decision.__pydantic_private__)
    return copied
