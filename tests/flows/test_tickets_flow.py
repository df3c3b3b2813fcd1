"""The tickets flow end to end on the embedded transports, with 1 and 2 workers."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from flows.tickets import build_flow
from operators.config.settings import Settings
from operators.tickets.surge import iter_ticket_surge
from schemas import DeadLetter, TicketResponse
from schemas.common import deterministic_id
from tests.flows.flow_runs import FlowRun, embedded_settings, run_flow, surge_for

pytestmark = pytest.mark.dataflow


@pytest.fixture(scope="module")
def small() -> Settings:
    return embedded_settings(surge_steady_events=100)


def surge(settings: Settings):
    return surge_for(iter_ticket_surge, settings)


@pytest.fixture(scope="module")
def one_worker(small: Settings) -> FlowRun:
    return run_flow(build_flow, small, surge(small))


def responses_of(run: FlowRun) -> list[TicketResponse]:
    return [TicketResponse.model_validate(r) for r in run.by_topic["tickets.responses"]]


def dead_letters_of(run: FlowRun) -> list[DeadLetter]:
    return [DeadLetter.model_validate(d) for d in run.by_topic["tickets.dlq"]]


def test_every_message_gets_one_response_or_one_dead_letter(
    small: Settings, one_worker: FlowRun
) -> None:
    generated = list(surge(small)())
    responses, dead = responses_of(one_worker), dead_letters_of(one_worker)
    answered = Counter(r.message_id for r in responses)
    dead_at = Counter(d.source.offset for d in dead)
    resent = Counter(
        json.loads(g.record.value)["message_id"] for g in generated if g.kind == "duplicate"
    )
    for g in generated:
        if g.kind.startswith("malformed"):
            assert dead_at[g.record.offset] == 1, g
        elif g.kind in {"valid", "late"}:
            message_id = json.loads(g.record.value)["message_id"]
            assert answered[message_id] == 1 + resent[message_id], g
            assert dead_at[g.record.offset] == 0, g
    assert resent, "the surge re-sends some messages"
    assert len(responses) + len(dead) == len(generated)
    assert all(d.error and d.source.topic == "tickets.messages" for d in dead)


def test_a_resent_message_gets_the_same_response_again(one_worker: FlowRun) -> None:
    by_message: dict[str, set] = {}
    for r in responses_of(one_worker):
        by_message.setdefault(r.message_id, set()).add(
            (r.response_id, r.route, r.priority, r.reply, r.history_size)
        )
    assert all(len(versions) == 1 for versions in by_message.values())


def test_responses_are_deterministic_keyed_and_formatted(one_worker: FlowRun) -> None:
    responses = responses_of(one_worker)
    for r in responses:
        assert r.response_id == deterministic_id(r.session_id, r.message_id)
        assert r.enrichment.source == "rules" and r.route_method == "lexical"
        assert r.reply
    by_channel = {r.channel: r for r in responses}
    assert set(by_channel) == {"email", "chat", "it"}
    assert len(by_channel["chat"].reply) <= 600
    keys = [
        (rec.key, json.loads(rec.value)["session_id"])
        for rec in one_worker.records
        if rec.topic == "tickets.responses"
    ]
    assert all(k == s for k, s in keys)


def test_sessions_carry_history(one_worker: FlowRun) -> None:
    responses = responses_of(one_worker)
    per_session = Counter(r.session_id for r in responses)
    multi = [s for s, n in per_session.items() if n > 1]
    assert multi
    sizes = sorted(r.history_size for r in responses if r.session_id == multi[0])
    assert sizes == list(range(len(sizes)))


def test_lexical_routing_accuracy_on_the_labelled_surge(
    small: Settings, one_worker: FlowRun
) -> None:
    truth = {
        json.loads(g.record.value)["message_id"]: g.intent
        for g in surge(small)()
        if g.kind == "valid" and g.intent
    }
    responses = responses_of(one_worker)
    scored = [r for r in responses if r.message_id in truth]
    accuracy = sum(r.route == truth[r.message_id] for r in scored) / len(scored)
    assert accuracy >= 0.7, accuracy


def test_two_workers_give_the_same_output(small: Settings, one_worker: FlowRun) -> None:
    two = run_flow(build_flow, small, surge(small), workers=2)

    def summary(run: FlowRun) -> set:
        answered = {(r.response_id, r.route, r.priority, r.reply) for r in responses_of(run)}
        return answered | {(d.dead_letter_id, d.error_type) for d in dead_letters_of(run)}

    assert summary(one_worker) == summary(two)
