"""A flow killed with SIGKILL three times under live input, and what the LLM server saw.

`crash_three_times` runs a flow the production way (`python -m bytewax.run flows.<name> -r DIR
-s 1 -b 0` subprocesses) while a producer keeps adding input, kills it mid-stream, while
replaying right after a restart, and while draining after the input stopped, restarting it each
time, then runs it to the end of the topic. `AnswerLog` records when the OpenAI-compatible test
server answered each request, so `paid_twice` can tell whether a call completed before a kill was
requested again after it.

A call completed when the server produced its answer at least `grace` seconds before the process
that sent it was killed: that process had the answer in time to write it to the cache, which the
flows do before emitting the output that uses it. An answer produced after its sender was killed
went nowhere. A chat call is identified by its whole body (model, messages, parameters); an
embeddings call by each (model, text) it asked for, since texts are cached one by one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from operators.config.settings import Settings
from operators.connectors.kafka.topics import flow_topics
from tests.flows.kafka_runs import Consumed
from tests.flows.recovery_runs import (
    FlowProcess,
    LiveProducer,
    Message,
    TopicFollower,
    flow_env,
    kill_all,
    start_flow,
    wait_all,
    wait_until,
)
from tests.support.fake_outputs import chat_content, embeddings_list
from tests.support.openai_server import CHAT_PATH, LoggedRequest, OpenAITestServer


def canonical(body: Any) -> str:
    """A request body as comparable text (sorted keys)."""
    return json.dumps(body, sort_keys=True)


def units(request: LoggedRequest) -> list[str]:
    """What a request pays for: the chat body, or each (model, text) of an embeddings call."""
    body = request.body if isinstance(request.body, dict) else {}
    if request.path.rstrip("/").endswith(CHAT_PATH):
        return [canonical(body)]
    texts = body.get("input", [])
    texts = [texts] if isinstance(texts, str) else texts
    return [f"{body.get('model')}|{text}" for text in texts]


class AnswerLog:
    """When the test server produced each answer, per request: it wraps the server's chat
    `responder` hook and its `embeddings_response`, both called with the request's own body
    object right before the answer is written."""

    def __init__(self, server: OpenAITestServer) -> None:
        self._server = server
        self._lock = threading.Lock()
        self._answered: dict[int, float] = {}
        self._bodies: list[Any] = []  # keeps the bodies alive, so their ids stay unique
        server.responder = self._chat
        server.embeddings_response = self._embeddings  # type: ignore[method-assign]

    def _chat(self, body: dict[str, Any]) -> str:
        content = chat_content(body, self._server.keywords)
        self._mark(body)
        return content

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = embeddings_list(body)
        self._mark(body)
        return answer

    def _mark(self, body: Any) -> None:
        with self._lock:
            self._answered[id(body)] = time.time()
            self._bodies.append(body)

    def answered_at(self, request: LoggedRequest) -> Optional[float]:
        """When the server produced the answer to `request`, if it did."""
        with self._lock:
            return self._answered.get(id(request.body))

    def answered_since(self, moment: float, *, grace: float) -> int:
        """How many requests that arrived after `moment` were answered `grace` seconds ago."""
        now = time.time()
        answered = [self.answered_at(r) for r in self._server.requests if r.at > moment]
        return sum(1 for at in answered if at is not None and at < now - grace)


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: when, and how many requests the server was still answering then."""

    at: float
    in_flight: int


def kill_when_in_flight(
    processes: Sequence[FlowProcess], server: OpenAITestServer, *, timeout: float
) -> Kill:
    """SIGKILL `processes` as soon as the server holds an unanswered request (or at `timeout`)."""
    wait_until(lambda: any(r.status == 0 for r in server.requests), timeout=timeout, poll=0.01)
    in_flight = sum(1 for r in server.requests if r.status == 0)
    at = time.time()
    kill_all(processes)
    return Kill(at, in_flight)


def completed_calls(
    server: OpenAITestServer, answers: AnswerLog, kills: Sequence[Kill], grace: float
) -> list[tuple[float, LoggedRequest]]:
    """(answer time, request) of every call that completed (see the module docstring)."""
    done = []
    for request in server.requests:
        answered = answers.answered_at(request)
        death = min((k.at for k in kills if k.at > request.at), default=float("inf"))
        if answered is not None and answered < death - grace:
            done.append((answered, request))
    return done


def paid_twice(
    server: OpenAITestServer, answers: AnswerLog, kills: Sequence[Kill], grace: float
) -> list[str]:
    """What was requested after a kill although a call completed before it had paid for it."""
    completed = completed_calls(server, answers, kills, grace)
    repeated = []
    for kill in kills:
        before = {u for answered, r in completed if answered < kill.at for u in units(r)}
        repeated += [
            f"after the kill at {kill.at:.2f}: {unit[:160]}"
            for r in server.requests
            if r.at > kill.at
            for unit in units(r)
            if unit in before
        ]
    return repeated


@dataclass
class CrashRun:
    """What three kills and a final run to the end left: outputs, placements, kills."""

    records: list[Consumed]
    placed: list[tuple[int, int]]
    kills: list[Kill]
    output_topic: str


def crash_three_times(
    flow: str,
    settings: Settings,
    messages: Sequence[Message],
    *,
    server: OpenAITestServer,
    answers: AnswerLog,
    store: Path,
    logs: Path,
    grace: float,
    rate: float = 30.0,
) -> CrashRun:
    """Run `flow` with recovery while `messages` are produced; SIGKILL it three times (see the
    module docstring), then run it to the end of the topic and read its outputs."""
    source, output, dlq = flow_topics(settings, flow)  # type: ignore[arg-type]
    env = flow_env(settings)
    producer = LiveProducer(settings, source, messages, rate=rate)
    follower = TopicFollower(settings, [output, dlq])
    producer.start()

    def restart() -> tuple[list[FlowProcess], Callable[[], int]]:
        since = time.time()
        run = start_flow(flow, env, logs, recovery=store)
        return run, lambda: answers.answered_since(since, grace=grace)

    kills = []
    run, completed = restart()  # 1: mid-stream, input still arriving
    assert wait_until(lambda: completed() >= 8, timeout=60), "the LLM steps never got busy"
    kills.append(kill_when_in_flight(run, server, timeout=10))
    run, _ = restart()  # 2: replaying, right after its first call
    requests = server.count()
    wait_until(lambda: server.count() > requests, timeout=30)
    kills.append(kill_when_in_flight(run, server, timeout=5))
    placed = producer.finish()
    run, completed = restart()  # 3: draining, the input complete
    wait_until(lambda: completed() >= 3, timeout=30)
    kills.append(kill_when_in_flight(run, server, timeout=3))
    to_end = {**env, "SURGEFLOW_KAFKA_TAIL": "false"}
    wait_all(start_flow(flow, to_end, logs, recovery=store), timeout=120)
    records = follower.read_to_end()
    follower.close()
    return CrashRun(records, placed, kills, output)
