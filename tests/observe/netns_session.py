"""Runs inside a network namespace of its own (`unshare -rn`, see `observed_flows` in
tests/conftest.py): loopback up, a Kafka broker, the OpenAI test server, both flows with
Bytewax's dataflow API (shipments tailing a topic fed at a steady rate, tickets on its paced
embedded surge)
(which binds 0.0.0.0:<port>, so only this namespace's loopback sees it), and a Prometheus that
scrapes them every second. The flows snapshot every second to recovery stores of their own.

Protocol on stdout, one JSON object a line: first `{"at": T, ...}` once both flows have ended,
T being the last moment Prometheus had scraped both while they ran (queries are evaluated at T,
since the series go stale when the targets stop); then one answer per PromQL line read from stdin:
`{"result": [...]}` or `{"error": "..."}`. Ends at EOF on stdin.

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
from scripts.kafka_broker import KafkaBroker
from scripts.prometheus_server import PrometheusServer, PrometheusServerError
from tests.flows.flow_runs import embedded_settings, surge_for
from tests.flows.kafka_runs import io_topics, kafka_settings, keyed, with_topics
from tests.flows.recovery_runs import ROOT, LiveProducer, flow_env, free_ports, init_recovery
from tests.support.openai_server import OpenAITestServer

FLOWS = ("shipments", "tickets")
RUN_SECONDS = 120
RATE = 60.0
FAILING_MODEL = "gpt-4.1-mini"


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def shipments_over_kafka(bootstrap: str, llm: OpenAITestServer) -> Settings:
    """Settings that read shipments from a fresh topic of the broker, tailing it."""
    settings = kafka_settings(
        bootstrap, kafka_tail=True, surge_steady_events=100, openai_base_url=llm.base_url,
        openai_api_key="test-key",
    )  # fmt: skip
    return with_topics(settings, "shipments")


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
    kafka = shipments_over_kafka(bootstrap, llm)
    messages = keyed(surge_for(iter_shipment_surge, kafka)())
    producer = LiveProducer(kafka, io_topics(kafka, "shipments")[0], messages, rate=RATE)
    producer.start()
    for flow, port in ports.items():
        settings = (
            kafka
            if flow == "shipments"
            else embedded_settings(
                surge_steady_events=100,
                surge_rate=RATE,
                output_dir=work / flow / "out",
                openai_base_url=llm.base_url,
                openai_api_key="test-key",
            )
        )
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
    at = 0.0
    deadline = time.monotonic() + RUN_SECONDS
    while procs["tickets"].poll() is None and time.monotonic() < deadline:
        now = time.time()
        if all(p.poll() is None for p in procs.values()):
            try:
                up = prometheus.query("sum(up) == 2", at=now)
            except PrometheusServerError:
                up = []
            if up:
                at = now
        time.sleep(0.5)
    producer.finish()
    procs["shipments"].send_signal(signal.SIGTERM)  # it tails the topic: a graceful stop
    codes = {}
    for flow, proc in procs.items():
        try:
            codes[flow] = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[flow] = proc.wait()
    return {"at": at, "codes": codes, "prometheus": prometheus}


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
