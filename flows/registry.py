"""The registry of Surgeflow's flows: each flow declared once, by its spec.

A spec says what is generic about a flow (name, key, topics, models, surge, reference data);
the flow module (`flows/<name>.py`) adds its own steps. The command lines that take a flow by
name (topics, load, surge, schema export) read `SPECS` (see `operators.runtime.flow_spec`).

To add a flow: write its input and output models (`schemas/`), its spec here, and its module
with its own steps on `operators.runtime.skeleton.build`; nothing generic changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from operators.config.settings import Settings
from operators.runtime.flow_spec import AnySpec, FlowSpec, FlowTopics
from operators.runtime.metrics import OutputCount, output_count
from operators.shipments.reference import ShipmentReference
from operators.shipments.surge import iter_shipment_surge
from operators.tickets.intents import IntentIndex
from operators.tickets.parse import load_products
from operators.tickets.reference import ChannelReference
from operators.tickets.surge import iter_ticket_surge
from schemas.shipments import ShipmentDecision, ShipmentEvent
from schemas.tickets import TicketMessage, TicketResponse


def shipment_topics(settings: Settings) -> FlowTopics:
    """`SURGEFLOW_TOPIC_SHIPMENTS_EVENTS`, `..._DECISIONS`, `..._DLQ`."""
    return FlowTopics(
        settings.topics.shipments_events,
        settings.topics.shipments_decisions,
        settings.topics.shipments_dlq,
    )


def ticket_topics(settings: Settings) -> FlowTopics:
    """`SURGEFLOW_TOPIC_TICKETS_MESSAGES`, `..._RESPONSES`, `..._DLQ`."""
    return FlowTopics(
        settings.topics.tickets_messages,
        settings.topics.tickets_responses,
        settings.topics.tickets_dlq,
    )


@dataclass(frozen=True)
class TicketReference:
    """The tickets flow's reference data: channels, the intent index, the product catalogue."""

    channels: ChannelReference
    intents: IntentIndex
    products: tuple[str, ...]

    @classmethod
    def load(cls) -> TicketReference:
        return cls(ChannelReference.load(), IntentIndex.from_file(), load_products())


DECISIONS: OutputCount[ShipmentDecision] = output_count(
    "surgeflow_decisions",
    "Shipment decisions published, by action (ok, expedite, reroute, notify_customer, escalate).",
    "action",
    lambda decision: decision.action,
)
RESPONSES: OutputCount[TicketResponse] = output_count(
    "surgeflow_responses",
    "Ticket responses published, by route (the worker the router chose).",
    "route",
    lambda response: response.route,
)

SHIPMENTS: FlowSpec[ShipmentEvent, ShipmentDecision, ShipmentReference] = FlowSpec(
    name="shipments",
    key_field="shipment_id",
    topics=shipment_topics,
    input_model=ShipmentEvent,
    output_model=ShipmentDecision,
    output_name="decisions",
    reference=ShipmentReference.load,
    surge=iter_shipment_surge,
    dead_letter_raw="bounded",  # scans are operational data
    output_count=DECISIONS,
)

TICKETS: FlowSpec[TicketMessage, TicketResponse, TicketReference] = FlowSpec(
    name="tickets",
    key_field="session_id",
    topics=ticket_topics,
    input_model=TicketMessage,
    output_model=TicketResponse,
    output_name="responses",
    reference=TicketReference.load,
    surge=iter_ticket_surge,
    dead_letter_raw="hash",  # ticket bodies are conversation text (PII)
    output_count=RESPONSES,
)

SPECS: Mapping[str, AnySpec] = {spec.name: spec for spec in (SHIPMENTS, TICKETS)}
