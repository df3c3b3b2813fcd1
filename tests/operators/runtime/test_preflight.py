"""Preflight checks against the real services: Kafka, Redis and the OpenAI-compatible server."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from operators.connectors.kafka.config import client_config
from operators.connectors.kafka.topics import create_topics
from operators.runtime.preflight import (
    PreflightError,
    check_kafka,
    check_llm,
    check_redis,
    run_preflight,
)
from scripts.redis_server import free_port
from tests.flows.kafka_runs import kafka_settings
from tests.support.openai_server import OpenAITestServer


def test_an_unreachable_broker_is_one_fatal_finding_within_the_bound() -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{free_port()}"}
    began = time.monotonic()
    [finding] = check_kafka(config, {"t.in": "input"}, timeout=1.0)
    assert time.monotonic() - began < 3.0
    assert finding.fatal and "did not answer within 1 s" in finding.message
    assert "Connection refused" in finding.message


@pytest.mark.kafka
def test_missing_output_and_dead_letter_topics_are_named(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap)
    create_topics(settings, [settings.topics.tickets_messages])
    topics = {
        settings.topics.tickets_messages: "input",
        settings.topics.tickets_responses: "output",
        settings.topics.tickets_dlq: "dead letters",
    }
    [finding] = check_kafka(client_config(settings.kafka), topics, timeout=3.0)
    assert finding.fatal
    assert f"{settings.topics.tickets_responses} (output)" in finding.message
    assert f"{settings.topics.tickets_dlq} (dead letters)" in finding.message
    assert settings.topics.tickets_messages not in finding.message
    create_topics(settings, list(topics))
    [found] = check_kafka(client_config(settings.kafka), topics, timeout=3.0)
    assert found.ok and not found.fatal


@pytest.mark.redis
def test_redis_answers_or_is_warned_about_without_its_password(redis_url: str) -> None:
    [ok] = check_redis(redis_url, timeout=1.0)
    assert ok.ok
    closed = f"redis://127.0.0.1:{free_port()}/0?password=s3cret"
    [down] = check_redis(closed, timeout=1.0)
    assert not down.ok and not down.fatal
    assert "password=***" in down.message and "s3cret" not in down.message


def test_an_endpoint_that_lists_models_passes(openai_server: OpenAITestServer) -> None:
    [finding] = check_llm(openai_server.base_url, "not-needed", timeout=2.0)
    assert finding.ok and "(3 models)" in finding.message
    assert openai_server.model_listings == 1 and openai_server.requests == []


@pytest.mark.parametrize(
    ("base", "words"),
    [
        ("{server}/wrong", "answered 404 on /models"),
        ("http://127.0.0.1:{closed}/v1", "cannot be reached"),
    ],
)
def test_a_wrong_base_url_is_a_warning_not_a_stop(
    openai_server: OpenAITestServer, base: str, words: str
) -> None:
    url = base.format(server=f"http://127.0.0.1:{openai_server.port}", closed=free_port())
    [finding] = check_llm(url, "not-needed", timeout=2.0)
    assert not finding.ok and not finding.fatal and words in finding.message


def test_findings_are_logged_once_each_and_fatal_ones_raise(caplog) -> None:
    caplog.set_level("INFO", logger="operators.runtime.preflight")
    closed = f"redis://127.0.0.1:{free_port()}/0"
    kafka = {"bootstrap.servers": f"127.0.0.1:{free_port()}"}
    began = time.monotonic()
    with pytest.raises(PreflightError, match="did not answer within 1 s") as raised:
        run_preflight(
            [lambda: check_kafka(kafka, {"t": "input"}, timeout=1.0),
             lambda: check_redis(closed, timeout=1.0)],
            flow="tickets",
        )  # fmt: skip
    assert time.monotonic() - began < 3.0  # the checks run together
    assert len(raised.value.problems) == 1
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "Redis at" in warnings[0].getMessage()


class _WebPage(BaseHTTPRequestHandler):
    """A web server that is not an OpenAI-compatible one (a proxy's welcome page)."""

    def do_GET(self) -> None:
        body = b"<html><body>Welcome</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def test_a_server_that_is_not_openai_compatible_is_a_warning() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        [finding] = check_llm(url, "not-needed", timeout=2.0)
    finally:
        server.shutdown()
        server.server_close()
    assert not finding.ok and not finding.fatal
    assert "like an OpenAI-compatible server" in finding.message


class _KeyRefused(_WebPage):
    """An OpenAI-compatible server that refuses the key, as the real one answers."""

    def do_GET(self) -> None:
        body = b'{"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}'
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_refused_key_is_a_warning_that_names_the_key_not_its_value() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeyRefused)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        [finding] = check_llm(url, "sk-s3cret", timeout=2.0)
    finally:
        server.shutdown()
        server.server_close()
    assert not finding.ok and "refused the API key (401)" in finding.message
    assert "s3cret" not in finding.message
