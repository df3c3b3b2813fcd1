"""The committed JSON Schema files are exactly what the models export."""

import json

import pytest

from schemas.export import render, schema_path, topic_models

TOPIC_MODELS = topic_models()


@pytest.mark.parametrize("topic", sorted(TOPIC_MODELS))
def test_committed_schema_matches_model(topic: str) -> None:
    path = schema_path(topic)
    assert path.is_file(), f"{path} is missing: run `python -m schemas.export`"
    assert path.read_text(encoding="utf-8") == render(topic), (
        f"{path} drifted from {TOPIC_MODELS[topic].__name__}: run `python -m schemas.export`"
    )


def test_every_flow_has_its_three_topics_exported() -> None:
    assert sorted(TOPIC_MODELS) == sorted(
        p.name.removesuffix(".schema.json") for p in schema_path("x").parent.glob("*.schema.json")
    )


@pytest.mark.parametrize("flow", ["shipments", "tickets"])
def test_a_dead_letter_topic_schema_says_its_flow(flow: str) -> None:
    flow_property = json.loads(render(f"{flow}.dlq"))["properties"]["flow"]
    assert flow_property["const"] == flow


def test_output_schemas_document_deterministic_ids() -> None:
    decisions = json.loads(render("shipments.decisions"))
    responses = json.loads(render("tickets.responses"))
    assert "decision_id" in decisions["required"]
    assert "response_id" in responses["required"]
    assert "deterministic" in decisions["description"]
    assert "deterministic" in responses["description"]
