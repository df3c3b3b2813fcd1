"""Plain data passed between the steps of the shipments flow (no Bytewax import).

Every type here is a frozen dataclass of picklable values, so it can cross workers and sit in
recovery snapshots. Each carries the `SourceRef` of the input it came from, so a later failure can
still dead-letter it with its topic, partition and offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.dead_letter import SourceRef
from schemas.shipments import ShipmentEvent


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
