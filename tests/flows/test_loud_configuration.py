"""Misconfiguration is loud: `python -m bytewax.run flows.<name>` as an operator starts it.

Each test runs the flow as a subprocess against the real broker, Redis and the OpenAI-compatible
test server (or a closed loopback port) and reads its stderr.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import pytest

from operators.connectors.kafka.topics import create_topics
from scripts.redis_server import free_port
from tests.flows.flow_runs import embedded_settings
from tests.flows.kafka_runs import kafka_settings, produce_raw
from tests.flows.recovery_runs import ROOT, flow_env
from tests.support.openai_server import OpenAITestServer

LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"[\w.]+ \[(shipments|tickets) (w\d+|-)\] "
)


@dataclass
class Run:
    code: int
    seconds: float
    stderr: str
    stdout: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()

    def logged(self, level: str) -> list[str]:
        return [line for line in self.lines if LINE.match(line) and f" {level} " in line[:40]]


def run_flow(flow: str, settings: Any, *args: str, **extra: str) -> Run:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bytewax.run", f"flows.{flow}", *args],
        cwd=ROOT, env=flow_env(settings, **extra), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return Run(done.returncode, time.monotonic() - began, done.stderr, done.stdout)


SMALL = dict(surge_steady_events=20)


def test_an_unreachable_bootstrap_stops_the_start_within_the_bound_with_one_line() -> None:
    address = f"127.0.0.1:{free_port()}"
    run = run_flow("tickets", embedded_settings(kafka_bootstrap_servers=address))
    assert run.code != 0
    assert run.seconds < 10, run.seconds  # preflight bound 3 s; was 11 s and 285 lines
    assert not [line for line in run.lines if line.startswith("%")], "librdkafka lines"
    naming = [line for line in run.lines if address in line]
    assert len(naming) == 1 and naming[0].startswith("operators.runtime.preflight.PreflightError: ")
    assert "did not answer within 3 s" in naming[0] and "Connection refused" in naming[0]


@pytest.mark.kafka
def test_a_missing_output_topic_stops_the_start_naming_it(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap)
    create_topics(settings, [settings.topics.tickets_messages, settings.topics.tickets_dlq])
    produce_raw(settings, settings.topics.tickets_messages, [(b"S-1", b"{}")])
    run = run_flow("tickets", settings)
    assert run.code != 0
    assert run.seconds < 15, run.seconds  # was 31.8 s: a delivery timeout naming no topic
    [error] = [
        line for line in run.lines if line.startswith("operators.runtime.preflight.PreflightError")
    ]
    assert f"{settings.topics.tickets_responses} (output)" in error
    assert settings.topics.tickets_dlq not in error


@pytest.mark.parametrize("where", ["wrong path", "refused"])
def test_a_wrong_llm_endpoint_is_one_loud_warning_at_start(
    openai_server: OpenAITestServer, where: str
) -> None:
    port = openai_server.port if where == "wrong path" else free_port()
    base = f"http://127.0.0.1:{port}/{'api' if where == 'wrong path' else 'v1'}"
    settings = embedded_settings(openai_base_url=base, llm_max_retries=0, **SMALL)
    run = run_flow("tickets", settings)
    assert run.code == 0, run.stderr[-2000:]
    warnings = run.logged("WARNING")
    preflight = [line for line in warnings if " operators.runtime.preflight " in line]
    assert len(preflight) == 1, run.stderr[-3000:]  # was 0: 219 of 220 outputs on rules, silently
    assert "LLM endpoint" in preflight[0] and base in preflight[0]
    expected = "answered 404 on /models" if where == "wrong path" else "cannot be reached"
    assert expected in preflight[0]
    # One line says the embedding model has no routing calibration (text-embedding-3-small).
    calibration = [line for line in warnings if " operators.tickets.calibration " in line]
    assert len(calibration) == 1 and "not calibrated" in calibration[0], calibration
    # The rest is at most one breaker line per model (a refused endpoint opens each breaker).
    others = [line for line in warnings if line not in preflight + calibration]
    assert all(" operators.llm.breaker " in line for line in others), others
    assert len(others) <= 2, others


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_the_log_level_takes_effect_and_lines_say_when_what_where(
    openai_server: OpenAITestServer, level: str
) -> None:
    settings = embedded_settings(
        openai_base_url=openai_server.base_url, log_level=level, llm_max_retries=0, **SMALL
    )
    openai_server.fail_next(2, status=500)  # failed calls and lexical routing log at DEBUG
    run = run_flow("tickets", settings, "-w", "2")
    assert run.code == 0, run.stderr[-2000:]
    ours = [line for line in run.lines if LINE.match(line)]
    assert ours and len(ours) == len(run.lines), run.stderr[-2000:]  # every line formatted
    info = run.logged("INFO")
    assert any("preflight: LLM endpoint" in line and "answers /models" in line for line in info)
    assert all("[tickets -]" in line for line in info if "preflight" in line)
    debug = run.logged("DEBUG")
    assert bool(debug) == (level == "DEBUG")
    if level == "DEBUG":  # lines of the worker threads carry their worker
        workers = {LINE.match(line).group(3) for line in debug}  # type: ignore[union-attr]
        assert workers & {"w0", "w1"}, workers


def test_json_lines_when_asked(openai_server: OpenAITestServer) -> None:
    settings = embedded_settings(openai_base_url=openai_server.base_url, log_format="json", **SMALL)
    run = run_flow("shipments", settings)
    assert run.code == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in run.lines]
    assert lines and all(line["flow"] == "shipments" for line in lines)
    assert {"time", "level", "logger", "worker", "message"} <= set(lines[0])
    assert {line["worker"] for line in lines} == {"w0"}  # one worker: on the main thread


@pytest.mark.redis
def test_no_secret_of_a_url_reaches_the_log() -> None:
    closed = free_port()
    settings = embedded_settings(
        redis_url=f"redis://127.0.0.1:{closed}/0?password=S3cretRedis",
        openai_base_url=f"http://user:S3cretUser@127.0.0.1:{closed}/v1?api-key=S3cretKey",
        llm_max_retries=0,
        **SMALL,
    )
    run = run_flow("tickets", settings)
    assert run.code == 0, run.stderr[-2000:]
    assert "password=***" in run.stderr and "user:***@" in run.stderr  # the lines are there
    assert "S3cret" not in run.stderr + run.stdout  # was 2 lines with the Redis password


BUILD_TWICE = """
import logging, sys
{host}
from flows import shipments, tickets
from tests.flows.flow_runs import embedded_settings
for build in (tickets.build_flow, tickets.build_flow, shipments.build_flow):
    build(embedded_settings(log_level="INFO"))
logging.getLogger("operators.x").info("after three builds")
print(len(logging.getLogger().handlers), type(logging.getLogger().handlers[0]).__name__)
"""


@pytest.mark.parametrize("host", [False, True])
def test_logging_is_configured_once_and_a_host_keeps_its_own(host: bool) -> None:
    setup = "logging.basicConfig(format='HOST %(message)s')" if host else ""
    done = subprocess.run(
        [sys.executable, "-c", BUILD_TWICE.format(host=setup)],
        cwd=ROOT, env=flow_env(embedded_settings()), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    handlers = "1 StreamHandler" if host else "1 _FlowHandler"
    assert done.stdout.strip() == handlers
    [line] = [line for line in done.stderr.splitlines() if "after three builds" in line]
    if host:  # the host's format, our level (asked for) on our loggers
        assert line == "HOST after three builds"
    else:  # the last flow built names the process's lines; one worker: the main thread
        assert LINE.match(line) and "[shipments w0]" in line


def test_preflight_can_be_switched_off() -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = embedded_settings(openai_base_url=f"http://{address}/v1", preflight=False, **SMALL)
    run = run_flow("tickets", settings)
    assert run.code == 0 and "preflight" not in run.stderr
