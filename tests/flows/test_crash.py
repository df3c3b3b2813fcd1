"""A crash costs time, not input and not money: three SIGKILLs of each flow under live input.

The proofs run each flow the production way (`python -m bytewax.run flows.<name> -r DIR
-s 1 -b 0` subprocesses) on a 4-partition topic while a producer keeps adding input, with the
OpenAI-compatible test server (lognormal latency, so calls are in flight) and Redis as the cache.
They SIGKILL the flow three times (mid-stream, while replaying right after a restart, and while
draining after the input stopped), restart it each time, and end with a run to the end of the
topic (`tests.flows.crash_runs`). Then every input must have its output or dead letter (outputs
deduplicated by id), and no call the server had completed before a kill may be requested after
it. A completed call is one whose 200 answer the server produced at least `GRACE_SECONDS` before
the process that sent it was killed; "requested again" means a chat request with an identical
body (model, messages, parameters), or an embeddings request for a (model, text) already
embedded.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from operators.config.settings import Settings
from operators.shipments.surge import iter_shipment_surge
from operators.surge.engine import Generated
from operators.tickets.surge import iter_ticket_surge
from tests.flows.crash_runs import (
    AnswerLog,
    CrashRun,
    completed_calls,
    crash_three_times,
    paid_twice,
)
from tests.flows.kafka_runs import kafka_settings, keyed, with_topics
from tests.flows.recovery_checks import (
    by_id,
    disagreeing_copies,
    events_in_two_decisions,
    unaccounted_inputs,
    unanswered_messages,
)
from tests.flows.recovery_runs import init_recovery
from tests.support.openai_server import OpenAITestServer, lognormal_latency

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.dataflow]

GRACE_SECONDS = 2.0
"""Time a completed call gets to reach the cache before a kill (the flows write it at once)."""


def crash_settings(bootstrap: str, redis_url: str, server: OpenAITestServer, flow: str) -> Settings:
    """Kafka topics of their own, tailing; the test server; Redis; models no other run uses (so
    the shared cache starts empty for them)."""
    fresh = f"{uuid.uuid4().hex[:8]}"
    models = {
        "llm_model_classify": f"gpt-4o-mini-crash-{fresh}",
        "llm_model_route": f"gpt-4o-mini-route-{fresh}",
        "llm_model_reply": f"gpt-4o-mini-reply-{fresh}",
        "llm_model_embeddings": f"text-embedding-3-small-{fresh}",
    }
    settings = kafka_settings(
        bootstrap,
        kafka_tail=True,
        openai_base_url=server.base_url,
        redis_url=redis_url,
        llm_timeout_seconds=10.0,
        llm_max_retries=1,
        **models,
    )
    return with_topics(settings, flow)


def check_costs(server: OpenAITestServer, answers: AnswerLog, run: CrashRun) -> int:
    """No completed call was paid for again; enough had completed for that to mean something."""
    completed = completed_calls(server, answers, run.kills, GRACE_SECONDS)
    assert sum(answered < run.kills[-1].at for answered, _ in completed) >= 10
    assert paid_twice(server, answers, run.kills, GRACE_SECONDS) == []
    assert any(kill.in_flight for kill in run.kills), "no call was in flight at any kill"
    return len(completed)


def check_sources(outputs: dict[str, list[dict]]) -> None:
    """Per output id: at most one copy was paid for, and its replays came from the cache."""
    sources = Counter(tuple(c["enrichment"]["source"] for c in cs) for cs in outputs.values())
    assert all(s.count("llm") <= 1 for s in sources), f"an output was paid for twice: {sources}"
    assert all(s[0] != "llm" or set(s[1:]) <= {"cache"} for s in sources), sources
    assert sum(s[0] == "llm" for s in sources) > 0, "the LLM answered nothing"
    assert any(len(copies) > 1 for copies in outputs.values()), "no output was replayed"


@dataclass(frozen=True)
class CrashResult:
    run: CrashRun
    completed: int
    requests: int

    def by_id(self, id_field: str) -> dict[str, list[dict]]:
        return by_id((r for r in self.run.records if r.topic == self.run.output_topic), id_field)

    def dead_letters(self) -> dict[str, list[dict]]:
        return by_id(
            (r for r in self.run.records if r.topic != self.run.output_topic), "dead_letter_id"
        )

    def summary(self, flow: str, inputs: int, outputs: int) -> str:
        kills = [k.in_flight for k in self.run.kills]
        return (
            f"\n{flow}: {inputs} inputs, {outputs} outputs ({len(self.run.records)} records with "
            f"dead letters), in flight at the kills: {kills}, {self.requests} requests, "
            f"{self.completed} completed calls, none requested again"
        )


def crash(
    flow: str, generated: list[Generated], latency_seed: int, kafka: str, redis: str, tmp: Path
) -> CrashResult:
    """`flow` killed three times over `generated`, against a server with heavy-tailed latency;
    checks that no completed call was requested again."""
    with OpenAITestServer(latency=lognormal_latency(0.3, 3.0, seed=latency_seed)) as server:
        answers = AnswerLog(server)
        settings = crash_settings(kafka, redis, server, flow)
        store = init_recovery(tmp / "recovery", 4)
        run = crash_three_times(
            flow, settings, keyed(generated), server=server, answers=answers,
            store=store, logs=tmp / "logs", grace=GRACE_SECONDS,
        )  # fmt: skip
        return CrashResult(run, check_costs(server, answers, run), server.count())


@pytest.mark.timeout(240)
def test_three_sigkills_lose_no_shipment_input_and_pay_no_completed_call_twice(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    generated = list(iter_shipment_surge(seed=11, steady_events=50, burst_factor=6))
    result = crash("shipments", generated, 3, kafka_bootstrap, redis_url, tmp_path)
    decisions = result.by_id("decision_id")
    assert unaccounted_inputs(generated, result.run.placed, decisions, result.dead_letters()) == []
    assert disagreeing_copies(decisions) == [] and events_in_two_decisions(decisions) == []
    check_sources(decisions)
    print(result.summary("shipments", len(generated), len(decisions)))


@pytest.mark.timeout(240)
def test_three_sigkills_lose_no_ticket_and_pay_no_completed_call_twice(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    generated = list(iter_ticket_surge(seed=13, steady_events=30, burst_factor=6))
    result = crash("tickets", generated, 5, kafka_bootstrap, redis_url, tmp_path)
    responses = result.by_id("response_id")
    assert unanswered_messages(generated, result.run.placed, responses, result.dead_letters()) == []
    check_sources(responses)
    print(result.summary("tickets", len(generated), len(responses)))
