"""Plain data passed between the steps of the shipments flow (no Bytewax import).

Every type here is a frozen dataclass of picklable values, so it can cross workers and sit in
recovery snapshots. Each carries the `SourceRef` of the input it came from, so a later failure can
still dead-letter it with its topic, partition and offset.

About half of all `EnrichedEvent`s cross to the process of the worker that owns their shipment
(`operators.runtime.exchange.route_by_key`). One pickles as one flat tuple of its values, its
scan's and its source's (`EnrichedEvent.__reduce_ex__`), and is rebuilt without validation
(`_enriched`): pydantic's own pickle of the scan and the source names four state entries each
and rebuilds them through `__setstate__`, about twice the bytes and 1.6x the time of the flat form
(`benchmarks/crossing.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, SupportsIndex

from schemas.dead_letter import SourceRef
from schemas.shipments import ShipmentEvent

_EVENT_FIELDS: tuple[str, ...] = tuple(ShipmentEvent.model_fields)
_ALL_FIELDS = -1
"""The fields-set mask of a scan that set every field (the usual case)."""
_new_event = ShipmentEvent.__new__
_new_source = SourceRef.__new__
_new_enriched: Any = object.__new__
_set = object.__setattr__
_SOURCE_SET = frozenset(("topic", "partition", "offset"))


@dataclass(frozen=True, init=False)
class EnrichedEvent:
    """A shipment scan joined with its carrier and hub reference data. Its `__init__` sets the
    instance's `__dict__` in one call, not one `object.__setattr__` per field."""

    event: ShipmentEvent
    source: SourceRef
    carrier_name: str
    sla_hours: float
    carrier_reliability: float  # 0..1, share of on-time deliveries
    region: str
    hub_congestion: float  # 0..1
    sla_due_at: datetime  # shipped_at + sla_hours, UTC

    def __init__(
        self,
        event: ShipmentEvent,
        source: SourceRef,
        carrier_name: str,
        sla_hours: float,
        carrier_reliability: float,
        region: str,
        hub_congestion: float,
        sla_due_at: datetime,
    ) -> None:
        object.__setattr__(
            self,
            "__dict__",
            {
                "event": event, "source": source, "carrier_name": carrier_name,
                "sla_hours": sla_hours, "carrier_reliability": carrier_reliability,
                "region": region, "hub_congestion": hub_congestion, "sla_due_at": sla_due_at,
            },
        )  # fmt: skip

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        """The flat form (see the module docstring) when the scan is a plain `ShipmentEvent` and
        the source a plain `SourceRef`, neither with extra or private values; otherwise the
        fields, each pickled as it pickles itself."""
        v = self.__dict__
        event, source = v["event"], v["source"]
        if (
            type(self) is not EnrichedEvent
            or type(event) is not ShipmentEvent
            or type(source) is not SourceRef
            or event.__pydantic_extra__ is not None
            or event.__pydantic_private__ is not None
            or source.__pydantic_extra__ is not None
            or source.__pydantic_private__ is not None
            or source.__pydantic_fields_set__ != _SOURCE_SET
        ):
            return (_fields, (type(self), dict(v)))
        e, r = event.__dict__, source.__dict__
        return (
            _enriched,
            (
                e["event_id"], e["shipment_id"], e["carrier_id"], e["hub_id"], e["scan_type"],
                e["occurred_at"], e["shipped_at"], e["eta"], e["delay_minutes"], e["note"],
                _fields_mask(event.__pydantic_fields_set__), r["topic"], r["partition"],
                r["offset"], v["carrier_name"], v["sla_hours"], v["carrier_reliability"],
                v["region"], v["hub_congestion"], v["sla_due_at"],
            ),
        )  # fmt: skip


def _fields(cls: type[EnrichedEvent], values: dict[str, Any]) -> EnrichedEvent:
    """An `EnrichedEvent` (or subclass) unpickled from its `__dict__`."""
    out: EnrichedEvent = _new_enriched(cls)
    _set(out, "__dict__", values)
    return out


_SETS: dict[int, frozenset[str]] = {}
"""Fields-set mask → the field names it stands for (at most 2 ** 10 entries)."""


def _fields_mask(fields_set: set[str]) -> int:
    """`fields_set` of a scan as a bit mask over `_EVENT_FIELDS`; `_ALL_FIELDS` when it holds
    them all."""
    if len(fields_set) == len(_EVENT_FIELDS):
        return _ALL_FIELDS
    return sum(1 << i for i, name in enumerate(_EVENT_FIELDS) if name in fields_set)


def _fields_set(mask: int) -> set[str]:
    if mask == _ALL_FIELDS:
        return set(_EVENT_FIELDS)
    names = _SETS.get(mask)
    if names is None:
        names = _SETS[mask] = frozenset(
            name for i, name in enumerate(_EVENT_FIELDS) if mask >> i & 1
        )
    return set(names)


def _enriched(
    event_id: str,
    shipment_id: str,
    carrier_id: str,
    hub_id: str,
    scan_type: str,
    occurred_at: datetime,
    shipped_at: datetime,
    eta: Optional[datetime],
    delay_minutes: int,
    note: Optional[str],
    fields_mask: int,
    topic: str,
    partition: Optional[int],
    offset: Optional[int],
    carrier_name: str,
    sla_hours: float,
    carrier_reliability: float,
    region: str,
    hub_congestion: float,
    sla_due_at: datetime,
) -> EnrichedEvent:
    """An `EnrichedEvent` unpickled from its flat form: its values were valid when it was
    pickled, so the scan and the source are rebuilt without validation."""
    event = _new_event(ShipmentEvent)
    _set(
        event,
        "__dict__",
        {
            "event_id": event_id, "shipment_id": shipment_id, "carrier_id": carrier_id,
            "hub_id": hub_id, "scan_type": scan_type, "occurred_at": occurred_at,
            "shipped_at": shipped_at, "eta": eta, "delay_minutes": delay_minutes, "note": note,
        },
    )  # fmt: skip
    _set(event, "__pydantic_fields_set__", _fields_set(fields_mask))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    source = _new_source(SourceRef)
    _set(source, "__dict__", {"topic": topic, "partition": partition, "offset": offset})
    _set(source, "__pydantic_fields_set__", set(_SOURCE_SET))
    _set(source, "__pydantic_extra__", None)
    _set(source, "__pydantic_private__", None)
    out: EnrichedEvent = _new_enriched(EnrichedEvent)
    _set(
        out,
        "__dict__",
        {
            "event": event, "source": source, "carrier_name": carrier_name,
            "sla_hours": sla_hours, "carrier_reliability": carrier_reliability,
            "region": region, "hub_congestion": hub_congestion, "sla_due_at": sla_due_at,
        },
    )  # fmt: skip
    return out
