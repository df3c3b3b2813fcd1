"""The tickets flow from `tickets.messages` to `tickets.responses` and `tickets.dlq` on a real
Kafka broker: one response or one dead letter per message, ids as on the embedded transports,
output keyed and partitioned by `session_id`, every kind of bad input dead-lettered."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from flows.tickets import build_flow
from operators.tickets.surge import iter_ticket_surge
from schemas import TicketResponse
from tests.flows.flow_runs import embedded_settings, run_flow, surge_for
from tests.flows.kafka_runs import (
    KafkaRun,
    input_partitions,
    io_topics,
    kafka_settings,
    keyed,
    run_over_kafka,
    run_with_bad_input,
    with_topics,
)
from tests.support.bad_records import TICKET, TICKET_BAD, kafka_only

pytestmark = [pytest.mark.kafka, pytest.mark.dataflow]

SURGE = {"surge_steady_events": 100}


@pytest.fixture(scope="module")
def surge_run(kafka_bootstrap: str) -> tuple[KafkaRun, list]:
    settings = with_topics(kafka_settings(kafka_bootstrap, **SURGE), "tickets")
    generated = list(surge_for(iter_ticket_surge, settings)())
    run = run_over_kafka(
        build_flow, settings, topics=io_topics(settings, "tickets"), messages=keyed(generated)
    )
    return run, generated


def responses(run: KafkaRun) -> list[TicketResponse]:
    return [TicketResponse.model_validate_json(r.value) for r in run.outputs]


def test_every_message_gets_one_response_or_one_dead_letter(surge_run) -> None:
    run, generated = surge_run
    answered = Counter(r.message_id for r in responses(run))
    dead_at = run.dead_at()
    resent = Counter(
        json.loads(g.record.value)["message_id"] for g in generated if g.kind == "duplicate"
    )
    for g, where in zip(generated, run.placed, strict=True):
        if g.kind.startswith("malformed"):
            assert len(dead_at.get(where, [])) == 1, g
        elif g.kind in {"valid", "late"}:
            message_id = json.loads(g.record.value)["message_id"]
            assert answered[message_id] == 1 + resent[message_id], g
            assert where not in dead_at, g
    assert len(run.outputs) + len(run.dead_letters) == len(generated)


def test_ids_are_the_ones_the_embedded_transports_give(surge_run) -> None:
    run, _ = surge_run
    embedded = embedded_settings(**SURGE)
    local = run_flow(build_flow, embedded, surge_for(iter_ticket_surge, embedded))
    local_ids = Counter(r["response_id"] for r in local.by_topic["tickets.responses"])
    assert Counter(r.response_id for r in responses(run)) == local_ids
    local_dead = Counter(d["error_type"] for d in local.by_topic["tickets.dlq"])
    assert Counter(r.json()["error_type"] for r in run.dead_letters) == local_dead


def test_output_is_keyed_and_partitioned_by_session(surge_run) -> None:
    run, generated = surge_run
    input_partition = input_partitions(generated, run.placed)
    for record in run.outputs:
        session_id = record.json()["session_id"]
        assert record.key == session_id.encode()
        assert record.partition == input_partition[session_id]
        assert record.headers["schema"] == b"TicketResponse"


def test_every_kind_of_bad_input_is_dead_lettered_and_the_flow_goes_on(
    kafka_bootstrap: str,
) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap, surge_steady_events=20), "tickets")
    generated = list(surge_for(iter_ticket_surge, settings)())
    bad = {name: (b"S-BAD", v, kind, words) for name, (v, kind, words) in TICKET_BAD.items()}
    bad.update(kafka_only(TICKET, "session_id"))
    assert len(bad) >= 20
    run = run_with_bad_input(build_flow, settings, flow="tickets", generated=generated, bad=bad)
    half = len(generated) // 2
    later = {
        json.loads(g.record.value)["message_id"] for g in generated[half:] if g.kind == "valid"
    }
    assert later <= {r.message_id for r in responses(run)}, "later messages were still answered"
