"""SIGTERM and SIGINT stop a flow gracefully: exit 0 in the bound, nothing lost, no call paid twice.

Each proof runs a flow the production way (`python -m bytewax.run flows.<name> -r DIR -s 1 -b 0`)
on a 4-partition topic of the real broker while a producer keeps adding input, against the
OpenAI-compatible test server with heavy-tailed latency and Redis as the cache (models of its own,
so the cache starts empty for them; an answered call is cached at once, so the request log shows
the calls whose answers were lost). It sends the signal while the server is still answering calls
of the flow and the producer is still writing, then checks the stop: exit
code 0 within `SURGEFLOW_SHUTDOWN_GRACE_SECONDS` + 5 s, exactly one stop line, no traceback, and
no output the stop itself made up (no `end_of_input` decision, no timed-out call dead-lettered).
It restarts the flow on the same store and runs it to the end of the topic, then checks that every
input has its output or dead letter (outputs deduplicated by id), that no request the stopped
process had sent was sent again (the request log: a chat body, or an embeddings (model, text)),
and that no output of the stopped run was written again (nothing was replayed).

An input sent twice (the surge's re-sent duplicates: the same bytes, so the same output id) is
answered once per copy by design (the session marks the copy `replay`, its output id absorbs
it). When the stop falls between the two copies, the restarted run answers the second one under
an id the stopped run wrote: that is not a replay, so "written again" counts an id only when it
was written more often than its input was sent. The tickets proof makes that case happen in
every run: the surge's first message is sent again as the last record, after the signal.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from operators.config.settings import Settings
from operators.connectors.kafka.topics import flow_topics
from operators.runtime.shutdown import HARD_STOP_MARGIN_SECONDS
from operators.shipments.surge import iter_shipment_surge
from operators.surge.engine import Generated
from operators.tickets.respond import response_id_of
from operators.tickets.surge import iter_ticket_surge
from tests.flows.crash_runs import AnswerLog, units
from tests.flows.kafka_runs import Consumed, kafka_settings, keyed, with_topics
from tests.flows.recovery_checks import by_id, unaccounted_inputs, unanswered_messages
from tests.flows.recovery_runs import (
    LiveProducer,
    TopicFollower,
    flow_env,
    init_recovery,
    kill_all,
    start_flow,
    wait_all,
    wait_until,
)
from tests.support.openai_server import OpenAITestServer, lognormal_latency

STOP_BOUND_SECONDS = Settings().recovery.shutdown_grace_seconds + HARD_STOP_MARGIN_SECONDS
HELD_RECORDS = 10
"""Records the producer sends only after the signal (the tickets proof's re-sent copy of the
first message among them)."""


def stop_settings(bootstrap: str, redis: str, server: OpenAITestServer, flow: str) -> Settings:
    """Topics of their own, tailing; the test server; Redis; models no other run uses.

    Redis gets 5 s per command instead of 0.5 s: on a loaded machine a command that timed out
    left answers out of the shared cache (the in-process front only, by design), and the restart
    then sent those calls again, which this proof is not about."""
    fresh = uuid.uuid4().hex[:8]
    settings = kafka_settings(
        bootstrap,
        kafka_tail=True,
        openai_base_url=server.base_url,
        redis_url=redis,
        redis_timeout_seconds=5.0,
        llm_timeout_seconds=10.0,
        llm_max_retries=1,
        llm_model_classify=f"gpt-4o-mini-stop-{fresh}",
        llm_model_route=f"gpt-4o-mini-route-{fresh}",
        llm_model_reply=f"gpt-4o-mini-reply-{fresh}",
        llm_model_embeddings=f"text-embedding-3-small-{fresh}",
    )
    return with_topics(settings, flow)


@dataclass
class StoppedRun:
    """A run stopped by a signal, then run again to the end of the topic."""

    code: int
    seconds: float
    log: str
    in_flight: int
    before_stop: list[Consumed]
    records: list[Consumed]
    placed: list[tuple[int, int]]
    output_topic: str
    sent_first: int
    sent_again: list[str]

    def outputs(self, id_field: str) -> dict[str, list[dict]]:
        return by_id((r for r in self.records if r.topic == self.output_topic), id_field)

    def dead_letters(self) -> dict[str, list[dict]]:
        dead = (r for r in self.records if r.topic != self.output_topic)
        return by_id(dead, "dead_letter_id")

    def stop_lines(self, name: str) -> list[str]:
        return [line for line in self.log.splitlines() if f"stopped on {name}" in line]

    def written_again(self, id_field: str, copies: Mapping[str, int] | None = None) -> list[str]:
        """Ids of outputs the stopped run wrote that the restarted one wrote again (replays): an
        id counts when it was written more often in all than its input was sent (`copies`, by
        id; 1 when not given), so a re-sent input answered again is not a replay."""
        return written_again(self.before_stop, self.records, self.output_topic, id_field, copies)

    def summary(
        self, flow: str, name: str, id_field: str, copies: Mapping[str, int] | None = None
    ) -> str:
        return (
            f"\n{flow}, {name}: exit {self.code} after {self.seconds:.2f} s, {self.in_flight} "
            f"calls in flight at the signal, {self.sent_first} requests before the exit, "
            f"{len(self.sent_again)} sent again after the restart, "
            f"{len(self.written_again(id_field, copies))} outputs written again, "
            f"{len(self.stop_lines(name))} stop lines"
        )


def written_again(
    before_stop: Sequence[Consumed],
    records: Sequence[Consumed],
    output_topic: str,
    id_field: str,
    copies: Mapping[str, int] | None = None,
) -> list[str]:
    """Ids of `output_topic` records in `before_stop` (what the stopped run wrote) that the rest
    of `records` (everything read to the end) holds again, when the id was written more often in
    all than its input was sent: `copies[id]` times, 1 for an id `copies` does not name."""
    outputs = [r for r in records if r.topic == output_topic]
    first = {(r.partition, r.offset) for r in before_stop if r.topic == output_topic}
    before = Counter(r.json()[id_field] for r in outputs if (r.partition, r.offset) in first)
    after = Counter(r.json()[id_field] for r in outputs if (r.partition, r.offset) not in first)
    sent = copies or {}
    return sorted(i for i in before if i in after and before[i] + after[i] > sent.get(i, 1))


def resent_last(generated: list[Generated]) -> list[Generated]:
    """`generated` and, as its last record, the first record again (a re-sent duplicate: the
    same bytes and key), so its two copies fall on either side of a stop."""
    return [*generated, dataclasses.replace(generated[0], kind="duplicate")]


def response_copies(generated: Sequence[Generated]) -> Counter[str]:
    """How many records of `generated` ask for each `response_id` (a re-sent message twice)."""
    copies: Counter[str] = Counter()
    for g in generated:
        if g.kind in ("valid", "duplicate", "late"):
            message = json.loads(g.record.value)
            copies[response_id_of(message["session_id"], message["message_id"])] += 1
    return copies


def stop_and_resume(
    flow: str,
    generated: list[Generated],
    signum: signal.Signals,
    services: tuple[str, str],
    tmp: Path,
) -> StoppedRun:
    """Run `flow` with recovery while `generated` is produced, send `signum` while calls are in
    flight, then run it to the end of the topic; what the server and the topics saw."""
    with OpenAITestServer(latency=lognormal_latency(0.3, 3.0, seed=7)) as server:
        answers = AnswerLog(server)
        settings = stop_settings(*services, server, flow)
        source, output, dlq = flow_topics(settings, flow)  # type: ignore[arg-type]
        store = init_recovery(tmp / "recovery", 4)
        env = flow_env(settings)
        # The last records wait for the signal: input still arrives while the flow stops.
        producer = LiveProducer(settings, source, keyed(generated), rate=25, held=HELD_RECORDS)
        follower = TopicFollower(settings, [output, dlq])
        producer.start()
        (run,) = started = start_flow(flow, env, tmp / "logs", recovery=store)
        try:  # a failed check leaves no flow running (the first one tails the topic)
            busy = wait_until(lambda: answers.answered_since(0, grace=0) >= 8, timeout=60)
            assert busy, f"the LLM steps never got busy:\n{run.log_tail()}"
            wait_until(lambda: any(r.status == 0 for r in server.requests), timeout=10, poll=0.01)
            in_flight = sum(1 for r in server.requests if r.status == 0)
            assert producer.is_alive(), "the producer had finished before the signal"
            signalled = time.monotonic()
            run.proc.send_signal(signum)
            producer.release()
            code = run.wait(STOP_BOUND_SECONDS + 10)
            seconds = time.monotonic() - signalled
            exited = time.time()
            before_stop = list(follower.read_to_end())
            placed = producer.finish()
            first = {unit for r in server.requests if r.at < exited for unit in units(r)}
            to_end = {**env, "SURGEFLOW_KAFKA_TAIL": "false"}
            started = start_flow(flow, to_end, tmp / "logs", recovery=store)
            wait_all(started, timeout=120)
        finally:
            producer.release()
            kill_all([run, *started])
        again = [u[:160] for r in server.requests if r.at > exited for u in units(r) if u in first]
        records = follower.read_to_end()
        follower.close()
        return StoppedRun(
            code, seconds, run.log.read_text(errors="replace"), in_flight, before_stop, records,
            placed, output, len(first), again,
        )  # fmt: skip


def check_stop(run: StoppedRun, name: str) -> None:
    """Exit 0 within the bound, one stop line, no traceback, nothing sent again."""
    assert run.code == 0, f"exit code {run.code} after {name}:\n{run.log[-4000:]}"
    assert run.seconds < STOP_BOUND_SECONDS, run.seconds
    assert len(run.stop_lines(name)) == 1, run.log[-4000:]
    assert "Traceback" not in run.log and "KeyboardInterrupt" not in run.log, run.log[-4000:]
    assert run.in_flight > 0, "no call was in flight at the signal"
    assert run.sent_again == [], f"{len(run.sent_again)} calls sent again: {run.sent_again[:3]}"
    stop_made = [
        r.json() for r in run.before_stop
        if r.topic != run.output_topic and "TimeoutError" in r.json().get("error", "")
    ]  # fmt: skip
    assert stop_made == [], f"the stop dead-lettered calls it cut short: {stop_made[:3]}"


@pytest.mark.timeout(240)
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.dataflow
def test_sigterm_stops_the_shipments_flow_gracefully(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    generated = list(iter_shipment_surge(seed=11, steady_events=50, burst_factor=6))
    services = (kafka_bootstrap, redis_url)
    run = stop_and_resume("shipments", generated, signal.SIGTERM, services, tmp_path)
    print(run.summary("shipments", "SIGTERM", "decision_id"))
    check_stop(run, "SIGTERM")
    assert run.written_again("decision_id") == []
    stopped_windows = [
        r.json()["decision_id"] for r in run.before_stop
        if r.topic == run.output_topic and r.json()["trigger"] == "end_of_input"
    ]  # fmt: skip
    assert stopped_windows == [], f"the stop closed windows as end_of_input: {stopped_windows}"
    decisions = run.outputs("decision_id")
    assert unaccounted_inputs(generated, run.placed, decisions, run.dead_letters()) == []


@pytest.mark.timeout(240)
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.dataflow
def test_sigint_stops_the_tickets_flow_gracefully(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    # The first message is sent again last, after the signal: the stopped run answers it, the
    # restarted one answers its copy again under the same id (by design, not a replay).
    generated = resent_last(list(iter_ticket_surge(seed=13, steady_events=30, burst_factor=6)))
    copies = response_copies(generated)
    services = (kafka_bootstrap, redis_url)
    run = stop_and_resume("tickets", generated, signal.SIGINT, services, tmp_path)
    print(run.summary("tickets", "SIGINT", "response_id", copies))
    check_stop(run, "SIGINT")
    assert run.written_again("response_id", copies) == []
    first = json.loads(generated[0].record.value)
    resent = response_id_of(first["session_id"], first["message_id"])
    ids = [r.json()["response_id"] for r in run.records if r.topic == run.output_topic]
    stopped = [r.json()["response_id"] for r in run.before_stop if r.topic == run.output_topic]
    # The case the count is for did happen: one answer before the stop, one after the restart.
    assert (stopped.count(resent), ids.count(resent)) == (1, 2), (stopped.count(resent), ids)
    responses = run.outputs("response_id")
    assert unanswered_messages(generated, run.placed, responses, run.dead_letters()) == []


def _out(offset: int, response_id: str) -> Consumed:
    value = json.dumps({"response_id": response_id}).encode()
    return Consumed("responses", 0, offset, None, value, {})


def test_written_again_counts_an_id_written_more_often_than_its_input_was_sent() -> None:
    stopped = [_out(0, "a"), _out(1, "b"), _out(2, "c"), _out(3, "c")]
    restarted = [_out(4, "a"), _out(5, "b"), _out(6, "c"), _out(7, "d")]
    dead = Consumed("dlq", 0, 0, None, json.dumps({"response_id": "d"}).encode(), {})
    records = [*stopped, *restarted, dead]
    assert written_again(stopped, records, "responses", "response_id") == ["a", "b", "c"]
    # "a" was sent twice (a copy after the stop): answering the copy again is no replay; "c"
    # was sent twice and both copies were answered before the stop, so a third output is one.
    sent = {"a": 2, "c": 2}
    assert written_again(stopped, records, "responses", "response_id", sent) == ["b", "c"]
    assert written_again(stopped, stopped, "responses", "response_id") == []
