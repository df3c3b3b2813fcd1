"""Shared fixtures: settings, the loopback OpenAI-compatible server, Kafka and Redis.

Kafka and Redis are real: `KAFKA_BOOTSTRAP_SERVERS` / `REDIS_URL` when set, else a broker started
from the Maven Central jars (`scripts/kafka_broker.py`) and a `redis-server` on loopback, once per
test session. Tests that stop Redis get a server of their own (`redis_server`). Prometheus
(`observed_flows`) scrapes both flows once per session inside a network namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from operators.config.settings import Settings
from scripts.redis_server import RedisServer
from tests.flows.flow_runs import embedded_settings
from tests.support.openai_server import OpenAITestServer


@pytest.fixture()
def settings(tmp_path) -> Settings:
    """Embedded defaults with a small surge; no service taken from the environment."""
    return embedded_settings(surge_steady_events=150, output_dir=tmp_path / "out")


@pytest.fixture
def openai_server() -> Iterator[OpenAITestServer]:
    """A started server; stopped (and any hung request released) after the test."""
    with OpenAITestServer() as server:
        yield server


@pytest.fixture
def llm_settings(openai_server: OpenAITestServer) -> Callable[..., Settings]:
    """Settings pointing at `openai_server`, with short timeouts; keyword overrides allowed."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "openai_base_url": openai_server.base_url,
            "openai_api_key": None,
            "kafka_bootstrap_servers": None,
            "redis_url": None,
            "llm_timeout_seconds": 2.0,
            "llm_max_retries": 1,
            **overrides,
        }
        return Settings(**values)

    return make


SERVICES: dict[str, str] = {}
"""What the session used or started, printed at the end of the run."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for name, line in SERVICES.items():
        terminalreporter.write_line(f"{name}: {line}")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real broker: `KAFKA_BOOTSTRAP_SERVERS`, else one started here."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        SERVICES["kafka"] = f"KAFKA_BOOTSTRAP_SERVERS={given}"
        yield given
        return
    from scripts.kafka_broker import KafkaBroker

    with KafkaBroker() as broker:
        SERVICES["kafka"] = (
            f"broker {broker.bootstrap_servers} started here: storage formatted in "
            f"{broker.format_seconds:.1f} s, ready {broker.started_in:.1f} s after launch"
        )
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: `REDIS_URL`, else a `redis-server` started for the session."""
    given = os.environ.get("REDIS_URL")
    if given:
        SERVICES["redis"] = f"REDIS_URL={given}"
        yield given
        return
    with RedisServer() as server:
        SERVICES["redis"] = f"redis-server {server.url} started here"
        yield server.url


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A `redis-server` of the test's own, which the test may stop."""
    with RedisServer() as server:
        yield server


class ObservedFlows:
    """Both flows run once with the dataflow API on, scraped every second by a real Prometheus,
    all inside a network namespace of their own (`unshare -rn`): Bytewax binds its API to
    0.0.0.0 with no host setting, and in the namespace that is a loopback nothing else reaches.
    `query(promql)` answers through Prometheus's HTTP API, evaluated at `at`, the last moment
    both flows were scraped up."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first, f"the namespace session ended: {proc.stderr.read() if proc.stderr else ''}"
        self.run: dict[str, Any] = json.loads(first)
        self.at: float = self.run["at"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of `promql`; AssertionError with Prometheus's error if it fails."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(promql.replace("\n", " ") + "\n")
        self._proc.stdin.flush()
        answer = json.loads(self._proc.stdout.readline())
        assert "error" not in answer, f"{promql}: {answer['error']}"
        result: list[dict[str, Any]] = answer["result"]
        return result

    def value(self, promql: str) -> float:
        """The single sample of `promql` as a float (AssertionError when it is not one)."""
        result = self.query(promql)
        assert len(result) == 1, (promql, result)
        return float(result[0]["value"][1])

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@pytest.fixture(scope="session")
def observed_flows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObservedFlows]:
    """A real Prometheus that scraped both flows (see `ObservedFlows`), once per session."""
    work = tmp_path_factory.mktemp("observed")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        ["unshare", "-rn", sys.executable, "-m", "tests.observe.netns_session", str(work)],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    observed = ObservedFlows(proc)
    SERVICES["prometheus"] = (
        f"prometheus scraped both flows in a network namespace (exit codes {observed.run['codes']})"
    )
    try:
        yield observed
    finally:
        observed.close()
