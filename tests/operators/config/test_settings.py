"""`Settings`: the variable names users set, secrets kept out of logs, transports chosen by them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from operators.config.settings import Settings, flat_names
from operators.connectors import io
from operators.connectors.kafka.config import producer_config
from operators.connectors.kafka.sink import KafkaRecordSink
from operators.connectors.kafka.source import KafkaRecordSource
from operators.connectors.sinks import StdoutSink
from operators.connectors.sources import GeneratorSource
from operators.errors import ConfigurationError
from operators.shipments.surge import shipment_surge

SERVICES = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean environment for `Settings()` (no service or SURGEFLOW_ variable leaks in)."""
    for name in SERVICES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"SURGEFLOW_{name}", raising=False)
    return monkeypatch


def test_services_are_read_from_their_conventional_names(env: pytest.MonkeyPatch) -> None:
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    env.setenv("REDIS_URL", "redis://:hunter2@cache:6379/0")
    env.setenv("OPENAI_API_KEY", "sk-test")
    env.setenv("SURGEFLOW_KAFKA_CONFIG", '{"ssl.ca.location": "/etc/ca.pem"}')
    settings = Settings()
    assert settings.kafka.enabled and settings.redis.enabled and settings.llm.enabled
    assert settings.kafka.config == {"ssl.ca.location": "/etc/ca.pem"}
    assert producer_config(settings.kafka)["bootstrap.servers"] == "k1:9092,k2:9092"


def test_secrets_never_show_in_a_printed_settings(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_URL", "redis://:hunter2@cache:6379/0")
    env.setenv("OPENAI_API_KEY", "sk-test")
    env.setenv("SURGEFLOW_KAFKA_SASL_PASSWORD", "kafka-secret")
    shown = repr(Settings()) + str(Settings().model_dump())
    assert "hunter2" not in shown and "kafka-secret" not in shown and "sk-test" not in shown


def test_kafka_settings_choose_the_kafka_transports(env: pytest.MonkeyPatch) -> None:
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    source, sink = io.endpoints(
        Settings(), flow="shipments", topic="shipments.events", generator=shipment_surge
    )
    assert isinstance(source, KafkaRecordSource) and isinstance(sink, KafkaRecordSink)


def test_no_kafka_means_the_embedded_transports(env: pytest.MonkeyPatch) -> None:
    source, sink = io.endpoints(
        Settings(), flow="shipments", topic="shipments.events", generator=shipment_surge
    )
    assert isinstance(source, GeneratorSource) and isinstance(sink, StdoutSink)


def test_kafka_and_a_file_at_once_is_refused(env: pytest.MonkeyPatch, tmp_path) -> None:
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    env.setenv("SURGEFLOW_OUTPUT_DIR", str(tmp_path))
    with pytest.raises(ConfigurationError, match="not both"):
        io.endpoints(
            Settings(), flow="shipments", topic="shipments.events", generator=shipment_surge
        )


def test_sasl_credentials_reach_every_client(env: pytest.MonkeyPatch) -> None:
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9093")
    env.setenv("SURGEFLOW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    env.setenv("SURGEFLOW_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    env.setenv("SURGEFLOW_KAFKA_SASL_USERNAME", "flows")
    env.setenv("SURGEFLOW_KAFKA_SASL_PASSWORD", "kafka-secret")
    config = producer_config(Settings().kafka)
    assert config["security.protocol"] == "SASL_SSL"
    assert (config["sasl.mechanism"], config["sasl.username"], config["sasl.password"]) == (
        "SCRAM-SHA-512", "flows", "kafka-secret",
    )  # fmt: skip


def test_the_event_time_range_is_read_from_the_environment_and_checked(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("SURGEFLOW_EVENT_TIME_MIN", "2020-01-01T00:00:00Z")
    env.setenv("SURGEFLOW_EVENT_TIME_MAX", "2030-01-01T00:00:00+02:00")
    env.setenv("SURGEFLOW_MAX_FUTURE_SKEW_HOURS", "2")
    settings = Settings()
    assert settings.io.event_time_min == datetime(2020, 1, 1, tzinfo=UTC)
    assert settings.io.event_time_max == datetime(2029, 12, 31, 22, tzinfo=UTC)
    assert settings.io.max_future_skew_hours == 2
    env.delenv("SURGEFLOW_EVENT_TIME_MIN")
    env.delenv("SURGEFLOW_EVENT_TIME_MAX")
    defaults = Settings()
    assert defaults.io.event_time_min == datetime(2000, 1, 1, tzinfo=UTC)
    assert defaults.io.event_time_max == datetime(2100, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "change",
    [
        {"event_time_min": "2030-01-01T00:00:00Z", "event_time_max": "2020-01-01T00:00:00Z"},
        {"event_time_min": "2020-01-01T00:00:00Z", "event_time_max": "2020-01-01T00:00:00Z"},
        {"event_time_max": "9999-12-31T00:00:00Z"},  # no room left for windows, timers, SLAs
        {"event_time_min": "0001-01-01T00:00:00Z"},
        {"event_time_min": "2020-01-01T00:00:00"},  # naive
        {"max_future_skew_hours": 0},
        {"max_future_skew_hours": -1},
        {"session_ttl_minutes": 1e12},  # would overflow the session's expiry time
        {"sla_warning_hours": 1e12},
    ],
)
def test_an_unworkable_time_setting_is_refused(change: dict) -> None:
    with pytest.raises(ValueError):
        Settings(_env_file=None, **change)


def test_the_embedding_timeout_grows_per_text_and_is_bounded(env: pytest.MonkeyPatch) -> None:
    env.setenv("SURGEFLOW_EMBED_TIMEOUT_PER_TEXT_SECONDS", "0.2")
    llm = Settings(llm_timeout_seconds=10.0, embed_batch_size=100).llm
    assert llm.embed_timeout(1) == pytest.approx(10.2)
    assert llm.embed_timeout(100) == pytest.approx(30.0)
    for change in (
        {"embed_timeout_per_text_seconds": -0.1},
        {"embed_timeout_per_text_seconds": float("nan")},
        # a full batch of 2048 would get 20 + 2048 x 0.3 s, past the 600 s bound of a request
        {"embed_batch_size": 2048, "embed_timeout_per_text_seconds": 0.3},
    ):
        with pytest.raises(ValueError):
            Settings(_env_file=None, **change)


# --- the README's configuration table is the contract -------------------------------------------

README = Path(__file__).resolve().parents[3] / "README.md"
SAMPLES = {  # values not derivable from the default alone
    "SURGEFLOW_KAFKA_CONFIG": '{"linger.ms": "5"}',
    "SURGEFLOW_LLM_PRICES": '{"gpt-4o-mini": [1.0, 2.0]}',
    "SURGEFLOW_LLM_ENDPOINT_PRICES": '{"http://127.0.0.1:8080/v1": {"*": [0, 0]}}',
    "SURGEFLOW_REPLY_LINK_DOMAINS": '["example.org"]',
    "SURGEFLOW_EVENT_TIME_MIN": "2001-01-01T00:00:00Z",
    "SURGEFLOW_EVENT_TIME_MAX": "2099-01-01T00:00:00Z",
    "SURGEFLOW_DEAD_LETTER_RAW": "none",
    "SURGEFLOW_INPUT_FILE": "/tmp/in.jsonl",
    "SURGEFLOW_OUTPUT_DIR": "/tmp/out",
    "BYTEWAX_RECOVERY_DIRECTORY": "/tmp/recovery",
    "BYTEWAX_SNAPSHOT_INTERVAL": "7",
    "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "3",
    "SURGEFLOW_LLM_ROUTE_MODELS": '{"refund": "gpt-4o"}',
    "SURGEFLOW_LLM_STRUCTURED_OUTPUT": "json_object_schema",
    "SURGEFLOW_LLM_CLASSIFY_STRUCTURED_OUTPUT": "json_object",
    "SURGEFLOW_LLM_ROUTE_STRUCTURED_OUTPUT": "none",
    "SURGEFLOW_LLM_REPLY_STRUCTURED_OUTPUT": "json_schema",
}


def readme_variables() -> list[str]:
    """The variables of the README's configuration table, in order."""
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section, flags=re.MULTILINE)


def documented() -> dict[str, tuple[str, str]]:
    """Every variable a settings group reads (all its accepted names) → (group, field)."""
    return {
        variable: (group, field)
        for group, field in flat_names().values()
        for variable in type(getattr(Settings(), group)).variables()[field]
    }


def sample(variable: str, default: Any) -> str:
    """A valid value of `variable` other than its default."""
    if variable in SAMPLES:
        return SAMPLES[variable]
    if isinstance(default, bool):
        return "false" if default else "true"
    if isinstance(default, (int, float)):
        return str(default + 1 if isinstance(default, int) else round(default + 0.5, 3))
    if default in ("INFO", "text", "beginning", "PLAINTEXT"):
        return {"INFO": "DEBUG", "text": "json", "beginning": "end", "PLAINTEXT": "SSL"}[default]
    return f"custom-{default or variable.lower()}"


def test_every_readme_variable_reaches_its_group_and_every_setting_has_a_row(
    env: pytest.MonkeyPatch,
) -> None:
    names = documented()
    listed = readme_variables()
    assert len(listed) == len(set(listed)), "a variable has two rows"
    assert set(listed) <= set(names), f"not read by the settings: {set(listed) - set(names)}"
    primary = {type(getattr(Settings(), g)).variables()[f][0] for g, f in flat_names().values()}
    assert primary <= set(listed), f"no README row: {sorted(primary - set(listed))}"
    defaults = Settings(_env_file=None)
    for variable in listed:
        group, field = names[variable]
        env.setenv(variable, sample(variable, getattr(getattr(defaults, group), field)))
    given = Settings(_env_file=None)
    for variable in listed:
        group, field = names[variable]
        value, default = (getattr(getattr(s, group), field) for s in (given, defaults))
        assert value != default, f"{variable} did not reach settings.{group}.{field}"


def test_flat_keywords_are_the_variable_names_and_reach_the_same_fields() -> None:
    settings = Settings(
        _env_file=None, llm_timeout_seconds=2, redis_url=None, window_minutes=30,
        bytewax_recovery_directory="/tmp/r", bytewax_snapshot_interval=5,
        bytewax_recovery_backup_interval=0,
    )  # fmt: skip
    assert settings.llm.timeout_seconds == 2 and settings.redis.url is None
    assert settings.shipments.window_minutes == 30 and settings.recovery.directory == Path("/tmp/r")
    assert settings.replaced(window_minutes=90).shipments.window_minutes == 90
    assert settings.flat()["llm_timeout_seconds"] == 2
    with pytest.raises(TypeError, match="unknown settings llm_timeout"):
        Settings(llm_timeout=2)
    with pytest.raises(ValueError, match="llm_timeout_seconds"):
        Settings(_env_file=None, llm_timeout_seconds=-1)
