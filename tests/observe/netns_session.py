"""Runs inside a network namespace of its own (`unshare -rn`, see `observed_flows` in
tests/conftest.py): loopback up, a Kafka broker, the OpenAI test server, both flows with
Bytewax's dataflow API (each tailing its input topic, fed at a steady rate)
(which binds 0.0.0.0:<port>, so only this namespace's loopback sees it), and a Prometheus that
scrapes them every second. The flows snapshot every second to recovery stores of their own.

Once all input is sent, the session reads both output topics and waits for a moment T at which
Prometheus's last scrape of both flows agrees with them: for two consecutive scrapes, the
outputs counted by label (`surgeflow_decisions_total` by action, `surgeflow_responses_total` by
route) equal the records read back from the topics by the same field. Then it stops the flows
(SIGTERM). When no such moment comes before the deadline, T is the last moment both were
scraped up and the counts are those last read, so the tests comparing them fail.

Protocol on stdout, one JSON object a line: first `{"at": T, "outputs": {...}, ...}` once both
flows have ended (queries are evaluated at T, since the series go stale when the targets stop;
`outputs` is, per flow, the records on its output topic at T by the label's value); then one
answer per PromQL line read from stdin: `{"result": [...]}` or `{"error": "..."}`. Ends at EOF on
stdin.

    python -m tests.observe.netns_session WORKDIR
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from operators.config.settings import Settings
from operators.shipments.surge import iter_shipment_surge
from operators.tickets.surge import iter_ticket_surge
from scripts.kafka_broker import KafkaBroker
from scripts.prometheus_server import PrometheusServer, PrometheusServerError
from tests.flows.flow_runs import surge_for
from tests.flows.kafka_runs import io_topics, kafka_settings, keyed, with_topics
from tests.flows.recovery_runs import (
    ROOT,
    LiveProducer,
    TopicFollower,
    flow_env,
    free_ports,
    init_recovery,
)
from tests.support.openai_server import OpenAITestServer

FLOWS = ("shipments", "tickets")
SURGES = {"shipments": iter_shipment_surge, "tickets": iter_ticket_surge}
OUTPUT_LABELS = {"shipments": ("surgeflow_decisions_total", "action"),
                 "tickets": ("surgeflow_responses_total", "route")}  # fmt: skip
"""Per flow, the counter of its outputs and the label it counts them by (an output field)."""
RUN_SECONDS = 120
RATE = 60.0
FAILING_MODEL = "gpt-4.1-mini"

Counts = dict[str, dict[str, int]]
"""Per flow, outputs by the value of its label."""


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def flows_over_kafka(bootstrap: str, llm: OpenAITestServer) -> Settings:
    """Settings that read both flows from fresh topics of the broker, tailing them."""
    settings = kafka_settings(
        bootstrap, kafka_tail=True, surge_steady_events=100, openai_base_url=llm.base_url,
        openai_api_key="test-key",
    )  # fmt: skip
    for flow in FLOWS:
        with_topics(settings, flow)
    return settings


def topic_counts(kafka: Settings, records: list[Any]) -> Counts:
    """Per flow, the records of its output topic by the value of its label's field."""
    counts: Counts = {flow: {} for flow in FLOWS}
    outputs = {io_topics(kafka, flow)[1]: flow for flow in FLOWS}
    for record in records:
        flow = outputs[record.topic]
        value = str(record.json()[OUTPUT_LABELS[flow][1]])
        counts[flow][value] = counts[flow].get(value, 0) + 1
    return counts


def scraped_counts(prometheus: PrometheusServer, at: float) -> Counts:
    """Per flow, its output counter by label as Prometheus last scraped it before `at`."""
    counts: Counts = {flow: {} for flow in FLOWS}
    for flow, (metric, label) in OUTPUT_LABELS.items():
        for r in prometheus.query(f'sum by ({label}) ({metric}{{flow="{flow}"}})', at=at):
            counts[flow][r["metric"][label]] = round(float(r["value"][1]))
    return counts


def run_flows(work: Path, llm: OpenAITestServer, bootstrap: str) -> dict[str, Any]:
    ports = dict(zip(FLOWS, free_ports(len(FLOWS)), strict=True))
    prometheus = PrometheusServer([f"127.0.0.1:{port}" for port in ports.values()])
    prometheus.start()
    try:
        return scrape(work, llm, bootstrap, ports, prometheus)
    except BaseException:
        prometheus.stop()
        raise


def scrape(
    work: Path, llm: OpenAITestServer, bootstrap: str, ports: dict[str, int],
    prometheus: PrometheusServer,
) -> dict[str, Any]:  # fmt: skip
    procs: dict[str, subprocess.Popen[bytes]] = {}
    kafka = flows_over_kafka(bootstrap, llm)
    producers = {
        flow: LiveProducer(
            kafka, io_topics(kafka, flow)[0], keyed(surge_for(SURGES[flow], kafka)()), rate=RATE
        )
        for flow in FLOWS
    }
    for producer in producers.values():
        producer.start()
    for flow, port in ports.items():
        settings = kafka
        cache = work / flow / "api"
        cache.mkdir(parents=True)
        env = flow_env(
            settings,
            BYTEWAX_DATAFLOW_API_ENABLED="true",
            BYTEWAX_DATAFLOW_API_PORT=str(port),
            BYTEWAX_DATAFLOW_API_CACHE_PATH=str(cache),
        )
        log = (work / f"{flow}.log").open("wb")
        recovery = init_recovery(work / flow / "recovery", 1)
        recovery_args = ["-r", str(recovery), "-s", "1", "-b", "0"]
        procs[flow] = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", f"flows.{flow}", *recovery_args],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    follower = TopicFollower(kafka, [io_topics(kafka, flow)[1] for flow in FLOWS])
    at, outputs = settle(procs, producers, follower, kafka, prometheus)
    follower.close()
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)  # they tail their topics: a graceful stop
    codes = {}
    for flow, proc in procs.items():
        try:
            codes[flow] = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[flow] = proc.wait()
    return {"at": at, "outputs": outputs, "codes": codes, "prometheus": prometheus}


def settle(
    procs: dict[str, subprocess.Popen[bytes]], producers: dict[str, LiveProducer],
    follower: TopicFollower, kafka: Settings, prometheus: PrometheusServer,
) -> tuple[float, Counts]:  # fmt: skip
    """Wait until every input is sent, then for two scrapes in a row that agree with the output
    topics; (T, the outputs at T), else at the deadline (the last moment both were up, the last
    outputs read)."""
    at, outputs, agreed = 0.0, topic_counts(kafka, []), 0
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline and all(p.poll() is None for p in procs.values()):
        time.sleep(0.5)
        sent = all(not p.is_alive() for p in producers.values())
        now = time.time()
        counts = topic_counts(kafka, follower.poll())
        try:
            up = prometheus.query("sum(up) == 2", at=now)
            scraped = scraped_counts(prometheus, now) if up and sent else None
        except PrometheusServerError:
            continue
        if not up:
            continue
        at, outputs = now, counts
        if scraped == counts and all(counts.values()):
            agreed += 1
            if agreed == 2:
                break
            time.sleep(1.0)  # the next agreement comes from another scrape
        else:
            agreed = 0
    for producer in producers.values():
        producer.finish()
    return at, outputs


def main() -> None:
    work = Path(sys.argv[1])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with KafkaBroker() as broker, OpenAITestServer() as llm:
        # One model the tickets flow calls fails throughout: its breaker opens and its calls
        # fall back, so those series carry data too.
        llm.fail_model(FAILING_MODEL, status=503)
        ran = run_flows(work, llm, broker.bootstrap_servers)
        prometheus: PrometheusServer = ran.pop("prometheus")
        try:
            emit({**ran, "llm_requests": len(llm.requests)})
            for line in sys.stdin:
                promql = line.strip()
                try:
                    emit({"result": prometheus.query(promql, at=ran["at"])})
                except PrometheusServerError as error:
                    emit({"error": str(error)})
        finally:
            prometheus.stop()


if __name__ == "__main__":
    os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    main()
