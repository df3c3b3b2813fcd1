"""The tickets flow from `tickets.messages` to `tickets.responses` and `tickets.dlq` on a real
Kafka broker: one response or one dead letter per message, ids as on the embedded transports,
output keyed and partitioned by `session_id`, every kind of bad input dead-lettered."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from flows.tickets import build_flow
from operators.surge import iter_ticket_surge
from schemas import TicketResponse
from tests.flows.flow_runs import embedded_settings, run_flow, surge_for
from tests.flows.kafka_runs import KafkaRun, kafka_settings, keyed, run_over_kafka, with_topics
from tests.support.bad_records import TICKET, TICKET_BAD, kafka_only

pytestmark = [pytest.mark.kafka, pytest.mark.dataflow]

SURGE = {"surge_steady_events": 100}


def topics(settings) -> tuple[str, str, str]:
    s = settings
    return s.topic_tickets_messages, s.topic_tickets_responses, s.topic_tickets_dlq


@pytest.fixture(scope="module")
def surge_run(kafka_bootstrap: str) -> tuple[KafkaRun, list]:
    settings = with_topics(kafka_settings(kafka_bootstrap, **SURGE), "tickets")
    generated = list(surge_for(iter_ticket_surge, settings)())
    run = run_over_kafka(build_flow, settings, topics=topics(settings), messages=keyed(generated))
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
    input_partition: dict[str, set[int]] = defaultdict(set)
    for g, (partition, _) in zip(generated, run.placed, strict=True):
        if g.record.key is not None:
            input_partition[g.record.key].add(partition)
    for record in run.outputs:
        session_id = record.json()["session_id"]
        assert record.key == session_id.encode()
        assert {record.partition} == input_partition[session_id]
        assert record.headers["schema"] == b"TicketResponse"


def test_every_kind_of_bad_input_is_dead_lettered_and_the_flow_goes_on(
    kafka_bootstrap: str,
) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap, surge_steady_events=20), "tickets")
    generated = list(surge_for(iter_ticket_surge, settings)())
    half = len(generated) // 2
    bad = {name: (b"S-BAD", v, kind, words) for name, (v, kind, words) in TICKET_BAD.items()}
    bad.update(kafka_only(TICKET, "session_id"))
    assert len(bad) >= 20
    messages = keyed(generated[:half]) + [(k, v) for k, v, _, _ in bad.values()]
    messages += keyed(generated[half:])
    run = run_over_kafka(build_flow, settings, topics=topics(settings), messages=messages)
    dead_at = run.dead_at()
    for (name, (_, _, kind, words)), where in zip(bad.items(), run.placed[half:], strict=False):
        (letter,) = dead_at[where]
        assert letter["error_type"] == kind, (name, letter["error"])
        assert words in letter["error"], (name, letter["error"])
    later = {
        json.loads(g.record.value)["message_id"] for g in generated[half:] if g.kind == "valid"
    }
    assert later <= {r.message_id for r in responses(run)}, "later messages were still answered"
