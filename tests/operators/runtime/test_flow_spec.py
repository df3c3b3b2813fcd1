"""The registry of flow specs: every flow declared once, consistently."""

from __future__ import annotations

import pytest

from operators.config.settings import Settings
from operators.connectors.kafka.topics import flow_topics
from operators.runtime.flow_spec import AnySpec, FlowTopics, flow_spec, flow_specs

SPECS = sorted(flow_specs().values(), key=lambda s: s.name)


def test_the_registry_holds_both_flows_by_their_names() -> None:
    assert sorted(flow_specs()) == ["shipments", "tickets"]
    assert all(flow_spec(name).name == name for name in flow_specs())


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_a_flow_key_is_a_field_of_its_input_and_its_output(spec: AnySpec) -> None:
    assert spec.key_field in spec.input_model.model_fields
    assert spec.key_field in spec.output_model.model_fields


def test_every_topic_belongs_to_one_flow() -> None:
    topics = flow_topics(Settings(_env_file=None))
    assert len(topics) == 3 * len(SPECS) == len(set(topics))


def test_an_unknown_flow_is_refused_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="shipments, tickets"):
        flow_spec("returns")


def test_a_spec_is_its_own_lookup() -> None:
    assert flow_spec(SPECS[0]) is SPECS[0]
    assert FlowTopics.named("returns", "requests", "decisions") == (
        "returns.requests",
        "returns.decisions",
        "returns.dlq",
    )
