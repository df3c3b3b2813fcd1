"""Every part real at once: Kafka in and out, the OpenAI-compatible server, Redis as the cache.

A flow reads its input topic to the end, enriches through the server with Redis in front of it,
and writes its output and dead-letter topics. A second run over the same topic (no recovery, so
Kafka is read again from the beginning, as after losing the recovery store) re-emits the same
ids and is answered by Redis alone: the server sees no new request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import pytest
from bytewax.dataflow import Dataflow

from flows.shipments import build_flow as build_shipments
from flows.tickets import build_flow as build_tickets
from operators.shipments.surge import iter_shipment_surge
from operators.surge.engine import Generated
from operators.tickets.surge import iter_ticket_surge
from scripts.redis_server import RedisServer
from tests.flows.kafka_runs import (
    Consumed,
    io_topics,
    kafka_settings,
    keyed,
    run_over_kafka,
    with_topics,
)
from tests.support.openai_server import OpenAITestServer

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.dataflow]


@dataclass(frozen=True)
class Case:
    build: Callable[..., Dataflow]
    surge: Callable[..., Iterator[Generated]]
    topics: Callable[..., tuple[str, str, str]]
    id_field: str


CASES = {
    "shipments": Case(
        build_shipments,
        iter_shipment_surge,
        partial(io_topics, flow="shipments"),
        "decision_id",
    ),
    "tickets": Case(
        build_tickets,
        iter_ticket_surge,
        partial(io_topics, flow="tickets"),
        "response_id",
    ),
}


def accounted(outputs: list[Consumed], dead: list[Consumed], name: str) -> int:
    """Input records the outputs stand for (decisions cover events; responses one message)."""
    if name == "tickets":
        return len(outputs) + len(dead)
    decisions = [r.json() for r in outputs]
    covered = [e for d in decisions for e in d["event_ids"]]
    assert len(covered) == len(set(covered)), "an event is in two decisions"
    return len(covered) + sum(d["duplicate_events"] for d in decisions) + len(dead)


@pytest.mark.parametrize("name", sorted(CASES))
def test_kafka_llm_and_redis_together_and_a_replay_costs_nothing(
    name: str, kafka_bootstrap: str, openai_server: OpenAITestServer, redis_server: RedisServer
) -> None:
    case = CASES[name]
    settings = kafka_settings(
        kafka_bootstrap,
        openai_base_url=openai_server.base_url,
        llm_timeout_seconds=2.0,
        llm_max_retries=1,
        redis_url=redis_server.url,
    )
    with_topics(settings, name)
    generated = list(partial(case.surge, seed=5, steady_events=40, burst_factor=4)())
    topics = case.topics(settings)

    first = run_over_kafka(case.build, settings, topics=topics, messages=keyed(generated))
    calls = openai_server.count()
    assert calls > 0
    assert accounted(first.outputs, first.dead_letters, name) == len(generated)
    sources = Counter(r.json()["enrichment"]["source"] for r in first.outputs)
    assert sources["llm"] > 0, sources

    again = run_over_kafka(case.build, settings, topics=topics, messages=[])
    assert openai_server.count() == calls, "the replay called the provider"
    seen = {(r.partition, r.offset) for r in first.outputs}
    replayed = [r for r in again.outputs if (r.partition, r.offset) not in seen]
    before = {r.json()[case.id_field]: r.json() for r in first.outputs}
    assert Counter(r.json()[case.id_field] for r in replayed) == Counter(
        r.json()[case.id_field] for r in first.outputs
    )
    for record in replayed:
        out = record.json()
        was = before[out[case.id_field]]["enrichment"]["source"]
        assert out["enrichment"]["source"] == ("cache" if was == "llm" else was)
        assert out["enrichment"]["cost_usd"] == 0
