"""A third flow, declared entirely in this test: spec + one step on the skeleton, over real Kafka.

`returns`, keyed by `order_id`, approves a refund for a small return and sends a record that does
not match its model to its dead letters. Nothing generic knows of it: its topics are created by
the generic helper from its spec, and the skeleton builds its frame.
"""

from __future__ import annotations

import json
import uuid

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow, Stream
from pydantic import Field

from flows.startup import start
from operators.config.settings import Settings
from operators.connectors.kafka.topics import create_topics, flow_topics
from operators.runtime import skeleton
from operators.runtime.flow_spec import FlowSpec, FlowTopics, flow_specs, no_reference
from operators.runtime.records import Valid
from operators.runtime.skeleton import FlowSteps, Frame
from schemas.common import Record
from tests.flows.kafka_runs import kafka_settings, run_over_kafka

pytestmark = [pytest.mark.kafka, pytest.mark.dataflow]


class ReturnRequest(Record):
    order_id: str = Field(min_length=1, max_length=64)
    amount_cents: int = Field(ge=0)


class ReturnDecision(Record):
    order_id: str
    refund: bool


def decide(
    _frame: Frame[None], requests: Stream[Valid[ReturnRequest]]
) -> FlowSteps[ReturnDecision]:
    decided = op.map(
        "decide_refund", requests,
        lambda v: ReturnDecision(order_id=v.model.order_id, refund=v.model.amount_cents <= 5000),
    )  # fmt: skip
    return FlowSteps(output=decided)


def returns_spec(prefix: str) -> FlowSpec[ReturnRequest, ReturnDecision, None]:
    return FlowSpec(
        name="returns", key_field="order_id", input_model=ReturnRequest,
        output_model=ReturnDecision, output_name="decisions", reference=no_reference,
        topics=lambda _settings: FlowTopics.named(f"{prefix}.returns", "requests", "decisions"),
    )  # fmt: skip


def test_a_third_flow_built_from_the_skeleton_runs_over_kafka(kafka_bootstrap: str) -> None:
    spec = returns_spec(f"t{uuid.uuid4().hex[:10]}")
    settings = kafka_settings(kafka_bootstrap)
    assert "returns" not in flow_specs()  # declared here only
    create_topics(settings, flow_topics(settings, spec))

    def build(s: Settings) -> Dataflow:
        return skeleton.build(spec, decide, s, start=start)

    messages = [
        (b"O-1", json.dumps({"order_id": "O-1", "amount_cents": 1999}).encode()),
        (b"O-2", json.dumps({"order_id": "O-2", "amount_cents": "lots"}).encode()),
        (b"O-3", json.dumps({"order_id": "O-3", "amount_cents": 25000}).encode()),
    ]
    run = run_over_kafka(build, settings, topics=spec.topics(settings), messages=messages)

    outputs = {r.key: r.json() for r in run.outputs}
    assert outputs == {
        b"O-1": {"order_id": "O-1", "refund": True},
        b"O-3": {"order_id": "O-3", "refund": False},
    }
    [letter] = [r.json() for r in run.dead_letters]
    assert letter["flow"] == "returns" and letter["step"] == "returns.validate"
    assert letter["error_type"] == "validation_error" and letter["key"] == "O-2"
    assert "amount_cents" in letter["error"]
    assert (letter["source"]["partition"], letter["source"]["offset"]) == run.placed[1]
