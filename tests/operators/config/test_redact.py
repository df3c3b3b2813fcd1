"""Secrets never leave in a URL: the one redaction helper and the settings repr that uses it."""

from __future__ import annotations

import pytest

from operators.config.redact import redacted_text, redacted_url
from tests.flows.flow_runs import embedded_settings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://host/0?password=s3cret", "redis://host/0?password=***"),
        ("rediss://host/0?db=1&Password=s3cret", "rediss://host/0?db=1&Password=***"),
        ("https://s3cret@host/v1", "https://***@host/v1"),
        ("https://host/v1?api-key=s3cret&deployment=x", "https://host/v1?api-key=***&deployment=x"),
        ("https://host/v1?access_token=s3cret", "https://host/v1?access_token=***"),
        ("https://host/blob?sig=s3cret&se=2030", "https://host/blob?sig=***&se=2030"),
        ("http://[broken/0?password=s3cret", "***"),
    ],
)
def test_every_secret_form_of_a_url_is_masked(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
    assert "s3cret" not in redacted_url(url)


def test_urls_inside_text_are_masked_and_the_rest_kept() -> None:
    text = "Redis at redis://h/0?password=s3cret failed; see http://u:s3cret@h/v1 (retrying)"
    assert redacted_text(text) == (
        "Redis at redis://h/0?password=*** failed; see http://u:***@h/v1 (retrying)"
    )


def test_the_settings_repr_shows_no_secret() -> None:
    settings = embedded_settings(
        redis_url="redis://h/0?password=s3cret-redis",
        openai_base_url="https://user:s3cret-llm@h/v1?api-key=s3cret-key",
        openai_api_key="s3cret-api",
        kafka_sasl_password="s3cret-sasl",
        kafka_config={"ssl.key.password": "s3cret-ssl", "linger.ms": "5"},
    )
    shown = repr(settings) + str(settings)
    assert "s3cret" not in shown
    assert "https://user:***@h/v1?api-key=***" in shown and "'linger.ms': '5'" in shown
