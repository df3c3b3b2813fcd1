"""Pydantic models for every topic, and the JSON Schema files exported from them."""

from schemas.common import SCHEMA_VERSION, deterministic_id, utc_now
from schemas.dead_letter import DeadLetter, FieldError, SourceRef
from schemas.enrichment import Enrichment
from schemas.shipments import ShipmentDecision, ShipmentEnrichment, ShipmentEvent
from schemas.tickets import Entities, TicketMessage, TicketResponse

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetter",
    "Enrichment",
    "Entities",
    "FieldError",
    "ShipmentDecision",
    "ShipmentEnrichment",
    "ShipmentEvent",
    "SourceRef",
    "TicketMessage",
    "TicketResponse",
    "deterministic_id",
    "utc_now",
]
