"""Export one JSON Schema file per topic for consumers and producers.

Run `python -m schemas.export` after changing a model; `tests/schemas/test_json_schema_drift.py`
fails while a committed file differs from its model. The topics are those of every registered flow
(`flows.registry`) under their default names: its input and output models, and its dead letters
(`DeadLetter`, whose `flow` is that flow).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Optional

from pydantic import BaseModel

from operators.config.settings import Settings
from operators.runtime.flow_spec import AnySpec, flow_specs
from schemas.dead_letter import dead_letter_of

SCHEMA_DIR = Path(__file__).parent / "json"


def topic_models(specs: Optional[Iterable[AnySpec]] = None) -> Mapping[str, type[BaseModel]]:
    """The model of each topic of `specs` (default: the registered flows), by default topic name."""
    defaults = Settings.model_construct()  # field defaults, not the environment
    models: dict[str, type[BaseModel]] = {}
    for spec in flow_specs().values() if specs is None else specs:
        topics = spec.topics(defaults)
        models[topics.input] = spec.input_model
        models[topics.output] = spec.output_model
        models[topics.dead_letters] = dead_letter_of(spec.name)
    return models


def render(topic: str, model: Optional[type[BaseModel]] = None) -> str:
    """The JSON Schema text of a topic's model (default: the registered one), as it is committed."""
    schema = (model or topic_models()[topic]).model_json_schema(mode="serialization")
    schema["$id"] = f"urn:surgeflow:topic:{topic}"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def schema_path(topic: str) -> Path:
    return SCHEMA_DIR / f"{topic}.schema.json"


def main() -> int:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for topic, model in topic_models().items():
        schema_path(topic).write_text(render(topic, model), encoding="utf-8")
        print(f"wrote {schema_path(topic)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
