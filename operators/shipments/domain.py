"""Plain data passed between the steps of the shipments flow (no Bytewax import).

Every type here is a frozen dataclass of picklable values, so it can cross workers and sit in
recovery snapshots. Each carries the `SourceRef` of the input it came from, so a later failure can
still dead-letter it with its topic, partition and offset.

About half of all `EnrichedEvent`s cross to the process of the worker that owns their shipment
(`operators.runtime.exchange.route_by_key`), in groups. The flow's groups are `EnrichedGroup`s:
one pickles as its keys and one flat list of its items' values (each item's scan's, source's and
its own, `_flat`), and unpickles, through one call, as a plain list of the same pairs, the scans
and sources rebuilt without validation (`_group`). Pydantic's own pickle of a scan and a source
writes four state entries each and rebuilds them through `__setstate__`: a batch's group took
303 bytes and 7.6 µs per scan to pickle and unpickle that way, 177 bytes and 4.0 µs in the flat
form (`python -m benchmarks.crossing --micro`). An `EnrichedEvent` pickled on its own takes the
same flat form, a `SourceRef` its three values; pickles of the older form still load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, SupportsIndex

from schemas.common import FieldsMask, trusted
from schemas.dead_letter import SourceRef
from schemas.shipments import ShipmentEvent

_EVENT_FIELDS = FieldsMask(ShipmentEvent)
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
        the source a plain `SourceRef` with all three fields set, neither with extra or private
        values; otherwise the fields, each pickled as it pickles itself."""
        values = _flat(self)
        if values is None:
            return (_fields, (type(self), dict(self.__dict__)))
        return (_enriched, values)


FLAT_WIDTH = 20
"""Values in the flat form of one `EnrichedEvent`."""


def _flat(item: EnrichedEvent) -> Optional[tuple[Any, ...]]:
    """The `FLAT_WIDTH` values of `item`'s flat form, `None` when it has none."""
    v = item.__dict__
    event, source = v["event"], v["source"]
    if (
        type(item) is not EnrichedEvent
        or type(event) is not ShipmentEvent
        or type(source) is not SourceRef
        or event.__pydantic_extra__ is not None
        or event.__pydantic_private__ is not None
        or source.__pydantic_extra__ is not None
        or source.__pydantic_private__ is not None
        or source.__pydantic_fields_set__ != _SOURCE_SET
    ):
        return None
    fields_mask = _EVENT_FIELDS.mask(event.__pydantic_fields_set__)
    if fields_mask is None:
        return None
    e, r = event.__dict__, source.__dict__
    return (
        e["event_id"], e["shipment_id"], e["carrier_id"], e["hub_id"], e["scan_type"],
        e["occurred_at"], e["shipped_at"], e["eta"], e["delay_minutes"], e["note"],
        fields_mask, r["topic"], r["partition"], r["offset"],
        v["carrier_name"], v["sla_hours"], v["carrier_reliability"], v["region"],
        v["hub_congestion"], v["sla_due_at"],
    )  # fmt: skip


class EnrichedGroup(list[tuple[str, EnrichedEvent]]):
    """`(key, EnrichedEvent)` pairs bound for one worker (`route_by_key(..., group=...)`),
    pickled, when they cross to another process, as their keys and one flat list of every
    item's flat form: one call to unpickle the group, not one per item. They unpickle as a plain
    list of the same pairs. A group holding an item with no flat form pickles as a list."""

    __slots__ = ()

    def __reduce__(self) -> Any:
        keys: list[str] = []
        flat: list[Any] = []
        for key, item in self:
            values = _flat(item)
            if values is None:
                return (list, (list(self),))
            keys.append(key)
            flat.extend(values)
        return (_group, (keys, flat))


def _group(keys: Sequence[str], flat: Sequence[Any]) -> list[tuple[str, EnrichedEvent]]:
    """The pairs of an `EnrichedGroup` unpickled from its keys and flat values (`FLAT_WIDTH`
    per item): they were valid when they were pickled, so each scan and source is rebuilt
    without validation."""
    out = []
    values = iter(flat)
    for key, (
        event_id, shipment_id, carrier_id, hub_id, scan_type, occurred_at, shipped_at, eta,
        delay_minutes, note, fields_mask, topic, partition, offset, carrier_name, sla_hours,
        carrier_reliability, region, hub_congestion, sla_due_at,
    ) in zip(keys, zip(*[values] * FLAT_WIDTH, strict=False), strict=True):  # fmt: skip
        event = trusted(
            ShipmentEvent,
            {
                "event_id": event_id, "shipment_id": shipment_id, "carrier_id": carrier_id,
                "hub_id": hub_id, "scan_type": scan_type, "occurred_at": occurred_at,
                "shipped_at": shipped_at, "eta": eta, "delay_minutes": delay_minutes,
                "note": note,
            },
            _EVENT_FIELDS.fields_set(fields_mask),
        )  # fmt: skip
        source = trusted(
            SourceRef, {"topic": topic, "partition": partition, "offset": offset}, set(_SOURCE_SET)
        )
        item = EnrichedEvent(
            event, source, carrier_name, sla_hours, carrier_reliability, region, hub_congestion,
            sla_due_at,
        )  # fmt: skip
        out.append((key, item))
    return out


def _fields(cls: type[EnrichedEvent], values: dict[str, Any]) -> EnrichedEvent:
    """An `EnrichedEvent` (or subclass) unpickled from its `__dict__`."""
    out: EnrichedEvent = _new_enriched(cls)
    _set(out, "__dict__", values)
    return out


def _enriched(*values: Any) -> EnrichedEvent:
    """An `EnrichedEvent` unpickled from its flat form (as one item of a group, `_group`)."""
    return _group(("",), values)[0][1]
