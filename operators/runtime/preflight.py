"""Checks of the configured services when a flow is built, before any worker starts.

Each check is bounded by `timeout` and they run together, so the whole preflight takes about one
timeout. Every problem is one line naming the service (credentials redacted), never librdkafka's
retry chatter:

- Kafka (fatal): the broker answers metadata within the bound, and the flow's input, output and
  dead-letter topics exist. A flow that cannot read its input or write its output is broken
  configuration: `PreflightError` (a `ConfigurationError`) stops the start.
- Redis (warning): it answers PING. Without it the flow runs with per-process cache and limits.
- LLM endpoint (warning): it answers `GET /models` through the openai client like an
  OpenAI-compatible server. Refused, timed out, 404 (a wrong path in `OPENAI_BASE_URL`), 401/403
  (the key) or an answer that is not a model list are warned about once; the flow still starts and
  every call falls back to the rules engine while the endpoint does not answer.

Clients are injectable (factories); the checks themselves name no flow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

import openai
import redis
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from operators.config.redact import redacted_text, redacted_url
from operators.errors import ConfigurationError

log = logging.getLogger(__name__)

KAFKA_ATTEMPT_SECONDS = 0.5
"""Metadata is asked for in slices this long until the bound, so a broker that comes up in the
meantime is found."""


class PreflightError(ConfigurationError):
    """A service the flow cannot run without is unreachable or incomplete; says which and why."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Finding:
    """What one check found: `fatal` problems stop the start, the others are warnings."""

    service: str
    ok: bool
    message: str
    fatal: bool = False


Check = Callable[[], list[Finding]]


def check_kafka(
    config: Mapping[str, Any],
    topics: Mapping[str, str],
    *,
    timeout: float,
    admin_factory: Callable[[dict[str, Any]], AdminClient] = AdminClient,
) -> list[Finding]:
    """The broker in `config` answers within `timeout` and has every topic of `topics`
    (topic → its role, e.g. `input`, `output`, `dead letters`)."""
    servers = str(config.get("bootstrap.servers", "?"))
    reasons: list[KafkaError] = []
    quiet = {
        **config,
        "logger": _Discard(),
        "error_cb": reasons.append,
        "reconnect.backoff.max.ms": 500,
    }
    admin = admin_factory(quiet)
    deadline = time.monotonic() + timeout
    metadata = None
    while metadata is None:
        left = deadline - time.monotonic()
        try:
            metadata = admin.list_topics(timeout=max(min(KAFKA_ATTEMPT_SECONDS, left), 0.05))
        except KafkaException as exc:
            admin.poll(0)
            if time.monotonic() >= deadline:
                reason = _most_telling(reasons) or _kafka_reason(exc)
                return [
                    Finding(
                        "kafka", False, fatal=True,
                        message=f"Kafka at {servers} did not answer within {timeout:g} s "
                        f"({redacted_text(reason)}); check KAFKA_BOOTSTRAP_SERVERS and the "
                        "security settings",
                    )
                ]  # fmt: skip
    missing = [
        f"{topic} ({role})"
        for topic, role in topics.items()
        if (found := metadata.topics.get(topic)) is None
        or found.error is not None
        or not found.partitions
    ]
    if missing:
        return [
            Finding(
                "kafka", False, fatal=True,
                message=f"Kafka topics missing on {servers}: {', '.join(missing)}; create them "
                "with `python -m operators.connectors.kafka.topics` "
                "(or set the SURGEFLOW_TOPIC_* names)",
            )
        ]  # fmt: skip
    counts = ", ".join(f"{t} ({len(metadata.topics[t].partitions)})" for t in topics)
    return [Finding("kafka", True, f"Kafka at {servers} answers; topics with partitions: {counts}")]


def _most_telling(errors: Sequence[KafkaError]) -> Optional[str]:
    """The last error that says why (refused, unresolvable, authentication), rather than the
    summary "1/1 brokers are down"."""
    telling = [e for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN] or list(errors)
    return telling[-1].str() if telling else None


def _kafka_reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


class _Discard:
    """A librdkafka logger that drops every line (the preflight reports one line itself)."""

    def log(self, level: int, msg: str, *args: Any) -> None:
        return None


def check_redis(
    url: str,
    *,
    timeout: float,
    client_factory: Callable[..., Any] = redis.Redis.from_url,
) -> list[Finding]:
    """Redis at `url` answers PING within `timeout`; a failure is a warning (the flow degrades)."""
    shown = redacted_url(url)
    try:
        client = client_factory(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except redis.AuthenticationError as exc:
        problem = f"refused the credentials ({redacted_text(str(exc))})"
    except (redis.RedisError, OSError, ValueError) as exc:
        problem = f"did not answer within {timeout:g} s ({type(exc).__name__}: {_short(exc)})"
    else:
        return [Finding("redis", True, f"Redis at {shown} answers")]
    return [
        Finding(
            "redis", False,
            f"Redis at {shown} {problem}: the flow starts with per-process cache and limits and "
            "tries Redis again while it runs",
        )
    ]  # fmt: skip


def check_llm(
    base_url: Optional[str],
    api_key: Optional[str],
    *,
    timeout: float,
    client_factory: Callable[..., openai.OpenAI] = openai.OpenAI,
) -> list[Finding]:
    """The OpenAI-compatible endpoint answers `GET /models` within `timeout` with a model list."""
    shown = redacted_url(base_url or "https://api.openai.com/v1")
    until = "LLM calls fall back to the rules engine until it answers"
    fail = "LLM calls will fail and fall back to the rules engine"
    try:
        client = client_factory(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)
        try:
            page = client.models.list()
            models = [m.id for m in page.data]
        finally:
            client.close()
    except openai.APITimeoutError:
        problem = f"did not answer /models within {timeout:g} s; {until}"
    except openai.APIConnectionError as exc:
        problem = f"cannot be reached ({_short(exc.__cause__ or exc)}); {until}"
    except openai.NotFoundError:
        problem = (
            "answered 404 on /models: OPENAI_BASE_URL should be the API root of an "
            f"OpenAI-compatible server (usually ending in /v1); {fail}"
        )
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        problem = f"refused the API key ({exc.status_code}): check OPENAI_API_KEY; {fail}"
    except openai.APIStatusError as exc:
        problem = f"answered {exc.status_code} on /models; {fail}"
    except (openai.OpenAIError, AttributeError, TypeError, ValueError) as exc:
        problem = (
            f"did not answer /models like an OpenAI-compatible server ({type(exc).__name__}); "
            f"{fail}"
        )
    else:
        answer = f"LLM endpoint {shown} answers /models ({len(models)} models)"
        return [Finding("llm", True, answer)]
    return [Finding("llm", False, f"LLM endpoint {shown} {problem}")]


def _short(exc: BaseException) -> str:
    return redacted_text(str(exc) or type(exc).__name__)[:300]


def run_preflight(checks: Sequence[Check], *, flow: str) -> list[Finding]:
    """Run `checks` together; log each finding; raise `PreflightError` for the fatal ones."""
    if not checks:
        return []
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(len(checks), 1), thread_name_prefix="preflight") as ex:
        findings = [f for found in ex.map(lambda check: check(), checks) for f in found]
    for finding in findings:
        if finding.ok:
            log.info("preflight: %s", finding.message)
        elif not finding.fatal:
            log.warning("preflight: %s", finding.message)
    fatal = [f.message for f in findings if f.fatal]
    if fatal:
        raise PreflightError(fatal)
    log.info("preflight of %s done in %.2f s", flow, time.monotonic() - began)
    return findings
