"""Contracts of the shipments flow: `shipments.events` in, `shipments.decisions` out."""

from __future__ import annotations

from typing import Literal, Optional

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
    UtcDatetime,
)
from schemas.enrichment import Enrichment

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
