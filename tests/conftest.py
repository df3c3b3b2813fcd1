"""Shared fixtures: settings for fast in-process dataflow runs."""

from __future__ import annotations

import pytest

from flows.settings import Settings


@pytest.fixture()
def settings(tmp_path) -> Settings:
    """Embedded defaults with a small surge; nothing read from the environment."""
    return Settings(
        _env_file=None,
        kafka_bootstrap_servers=None,
        redis_url=None,
        openai_api_key=None,
        openai_base_url=None,
        surge_steady_events=150,
        output_dir=tmp_path / "out",
    )
