"""The shipments flow from `shipments.events` to `shipments.decisions` and `shipments.dlq` on a
real Kafka broker: every input accounted for exactly once, ids as on the embedded transports,
output keyed and partitioned by `shipment_id`, every kind of bad input dead-lettered."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from flows.shipments import build_flow
from operators.connectors.kafka.topics import create_topics
from operators.shipments.surge import iter_shipment_surge
from schemas import DeadLetter, ShipmentDecision
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
from tests.support.bad_records import SHIPMENT, SHIPMENT_BAD, kafka_only

pytestmark = [pytest.mark.kafka, pytest.mark.dataflow]

SURGE = {"surge_steady_events": 150}


@pytest.fixture(scope="module")
def surge_run(kafka_bootstrap: str) -> tuple[KafkaRun, list]:
    settings = with_topics(kafka_settings(kafka_bootstrap, **SURGE), "shipments")
    generated = list(surge_for(iter_shipment_surge, settings)())
    run = run_over_kafka(
        build_flow, settings, topics=io_topics(settings, "shipments"), messages=keyed(generated)
    )
    return run, generated


def decisions(run: KafkaRun) -> list[ShipmentDecision]:
    return [ShipmentDecision.model_validate_json(r.value) for r in run.outputs]


def test_every_input_is_accounted_for_exactly_once(surge_run) -> None:
    run, generated = surge_run
    covered = Counter(e for d in decisions(run) for e in d.event_ids)
    dead_at = run.dead_at()
    assert not [e for e, n in covered.items() if n > 1], "an event is in two decisions"
    assert not [w for w, letters in dead_at.items() if len(letters) > 1], "two dead letters"
    for g, where in zip(generated, run.placed, strict=True):
        if g.kind.startswith("malformed") or g.kind == "unknown_reference":
            assert where in dead_at, f"no dead letter for {g.kind} at {where}"
        elif g.kind == "valid":
            event_id = json.loads(g.record.value)["event_id"]
            assert covered[event_id] + (where in dead_at) == 1, f"valid event {event_id} lost"
    duplicates = sum(d.duplicate_events for d in decisions(run))
    assert sum(covered.values()) + duplicates + len(run.dead_letters) == len(generated)


def test_ids_are_the_ones_the_embedded_transports_give(surge_run) -> None:
    run, _ = surge_run
    embedded = embedded_settings(**SURGE)
    local = run_flow(build_flow, embedded, surge_for(iter_shipment_surge, embedded))
    local_ids = {d["decision_id"] for d in local.by_topic["shipments.decisions"]}
    assert {d.decision_id for d in decisions(run)} == local_ids
    local_dead = Counter(d["error_type"] for d in local.by_topic["shipments.dlq"])
    assert Counter(r.json()["error_type"] for r in run.dead_letters) == local_dead


def test_output_is_keyed_and_partitioned_by_shipment(surge_run) -> None:
    run, generated = surge_run
    input_partition = input_partitions(generated, run.placed)
    for record in run.outputs:
        shipment_id = record.json()["shipment_id"]
        assert record.key == shipment_id.encode()
        assert record.partition == input_partition[shipment_id]
        assert record.headers["content-type"] == b"application/json"
        assert record.headers["schema"] == b"ShipmentDecision"
    for record in run.dead_letters:
        letter = DeadLetter.model_validate_json(record.value)
        assert letter.source.topic == run.settings.topics.shipments_events
        assert record.key == (None if letter.key is None else letter.key.encode())


def test_a_second_run_repeats_the_same_ids(surge_run) -> None:
    run, _ = surge_run
    again = run_over_kafka(
        build_flow, run.settings, topics=io_topics(run.settings, "shipments"), messages=[]
    )
    ids = Counter(r.json()["decision_id"] for r in again.outputs)
    assert set(ids) == {d.decision_id for d in decisions(run)}
    assert set(ids.values()) == {2}, "a replay re-emits each decision once, with the same id"


def test_every_kind_of_bad_input_is_dead_lettered_and_the_flow_goes_on(
    kafka_bootstrap: str,
) -> None:
    settings = with_topics(kafka_settings(kafka_bootstrap, surge_steady_events=20), "shipments")
    generated = list(surge_for(iter_shipment_surge, settings)())
    bad = {name: (b"SHP-BAD", v, kind, words) for name, (v, kind, words) in SHIPMENT_BAD.items()}
    bad.update(kafka_only(SHIPMENT, "shipment_id"))
    assert len(bad) >= 20
    run = run_with_bad_input(build_flow, settings, flow="shipments", generated=generated, bad=bad)
    half = len(generated) // 2
    later = {json.loads(g.record.value)["event_id"] for g in generated[half:] if g.kind == "valid"}
    decided = {e for d in decisions(run) for e in d.event_ids}
    assert decided & later, "records after the bad ones were still decided"


def test_output_the_broker_cannot_take_stops_the_flow_loudly(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap, surge_steady_events=10)
    # preflight off: the start-up check would refuse the missing topic before any output; this
    # is the run-time path (a topic deleted or refusing writes while the flow runs)
    update = {"kafka_delivery_timeout_seconds": 3.0, "preflight": False}
    settings = settings.replaced(**update)
    create_topics(settings, [settings.topics.shipments_events, settings.topics.shipments_dlq])
    generated = keyed(surge_for(iter_shipment_surge, settings)())
    with pytest.raises(Exception) as caught:  # Bytewax re-raises the sink's error
        run_over_kafka(
            build_flow, settings, topics=io_topics(settings, "shipments"), messages=generated
        )
    assert "not delivered to Kafka" in _chain(caught.value)


def _chain(exc: BaseException | None) -> str:
    text = []
    while exc is not None:
        text.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return " | ".join(text)
