"""Export one JSON Schema file per topic for consumers and producers.

Run `python -m schemas.export` after changing a model; `tests/schemas/test_json_schema_drift.py`
fails while a committed file differs from its model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.dead_letter import DeadLetter
from schemas.shipments import ShipmentDecision, ShipmentEvent
from schemas.tickets import TicketMessage, TicketResponse

SCHEMA_DIR = Path(__file__).parent / "json"

TOPIC_MODELS: dict[str, type[BaseModel]] = {
    "shipments.events": ShipmentEvent,
    "shipments.decisions": ShipmentDecision,
    "shipments.dlq": DeadLetter,
    "tickets.messages": TicketMessage,
    "tickets.responses": TicketResponse,
    "tickets.dlq": DeadLetter,
}


def render(topic: str) -> str:
    """The JSON Schema text of a topic's model, as it is committed."""
    model = TOPIC_MODELS[topic]
    schema = model.model_json_schema(mode="serialization")
    schema["$id"] = f"urn:surgeflow:topic:{topic}"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def schema_path(topic: str) -> Path:
    return SCHEMA_DIR / f"{topic}.schema.json"


def main() -> int:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for topic in TOPIC_MODELS:
        schema_path(topic).write_text(render(topic), encoding="utf-8")
        print(f"wrote {schema_path(topic)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
