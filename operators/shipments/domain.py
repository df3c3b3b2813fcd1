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


@dataclass(frozen=True)
class EnrichedEvent:
    """A shipment scan joined with its carrier and hub reference data."""

    event: ShipmentEvent
    source: SourceRef
    carrier_name: str
    sla_hours: float
    carrier_reliability: float  # 0..1, share of on-time deliveries
    region: str
    hub_congestion: float  # 0..1
    sla_due_at: datetime  # shipped_at + sla_hours, UTC
