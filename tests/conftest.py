"""Shared fixtures: settings, the loopback OpenAI-compatible server, Kafka and Redis.

Kafka and Redis are real: `KAFKA_BOOTSTRAP_SERVERS` / `REDIS_URL` when set, else a broker started
from the Maven Central jars (`scripts/kafka_broker.py`) and a `redis-server` on loopback, once per
test session. Tests that stop Redis get a server of their own (`redis_server`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
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
