"""Shared fixtures: embedded-default settings, the loopback OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flows.settings import Settings
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
            "llm_timeout_seconds": 2.0,
            "llm_max_retries": 1,
            **overrides,
        }
        return Settings(**values)

    return make
