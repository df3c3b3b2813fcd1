"""Every setting of Surgeflow, read from environment variables by one pydantic-settings class.

An unset service means its embedded default: no `KAFKA_BOOTSTRAP_SERVERS` reads the bundled surge
generator (or `SURGEFLOW_INPUT_FILE`) and writes JSON lines to stdout (or `SURGEFLOW_OUTPUT_DIR`);
no `REDIS_URL` keeps the cache in process; no `OPENAI_BASE_URL`/`OPENAI_API_KEY` uses the rules
engine instead of an LLM.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    AliasChoices,
    AwareDatetime,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from operators.config.redact import MASK, is_secret_name, redacted_url

_DOMAIN_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
LinkDomain = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, min_length=3, max_length=253,
        pattern=rf"^(\*\.)?{_DOMAIN_LABEL}(\.{_DOMAIN_LABEL})+$",
    ),
]  # fmt: skip
"""A domain name for the reply policy's link allow-list (`*.` prefix allowed, same meaning)."""


def _env(name: str) -> AliasChoices:
    """Accept the conventional name (`REDIS_URL`) and the prefixed one (`SURGEFLOW_REDIS_URL`)."""
    return AliasChoices(name, f"SURGEFLOW_{name}")


DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    # USD per 1M tokens: (input, output)
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
}


Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""USD per 1M tokens: finite and not negative (a negative price would make a call earn money)."""

EVENT_TIME_FLOOR = datetime(1000, 1, 1, tzinfo=UTC)
EVENT_TIME_CEILING = datetime(9000, 1, 1, tzinfo=UTC)
"""The widest settable range of input timestamps: a millennium from each end of the calendar."""


class Settings(BaseSettings):
    """Configuration of both flows. Environment variables are `SURGEFLOW_<FIELD>` unless noted."""

    model_config = SettingsConfigDict(
        env_prefix="SURGEFLOW_", extra="ignore", frozen=True, populate_by_name=True
    )

    # --- services (unset = embedded default) ---
    kafka_bootstrap_servers: Optional[str] = Field(
        default=None, validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )
    redis_url: Optional[SecretStr] = Field(
        default=None, validation_alias=_env("REDIS_URL"), description="may hold a password"
    )
    openai_api_key: Optional[SecretStr] = Field(
        default=None, validation_alias=_env("OPENAI_API_KEY")
    )
    openai_base_url: Optional[str] = Field(default=None, validation_alias=_env("OPENAI_BASE_URL"))
    preflight: bool = Field(
        default=True,
        description="check the configured services when a flow is built; false for air-gapped "
        "starts",
    )
    preflight_timeout_seconds: float = Field(
        default=3.0, gt=0, le=60, description="bound of each preflight check (they run together)"
    )

    # --- topics ---
    topic_shipments_events: str = "shipments.events"
    topic_shipments_decisions: str = "shipments.decisions"
    topic_shipments_dlq: str = "shipments.dlq"
    topic_tickets_messages: str = "tickets.messages"
    topic_tickets_responses: str = "tickets.responses"
    topic_tickets_dlq: str = "tickets.dlq"
    topic_partitions: int = Field(default=4, ge=1, le=1000)
    topic_replication_factor: int = Field(default=1, ge=1, le=10)

    # --- Kafka client (used when KAFKA_BOOTSTRAP_SERVERS is set) ---
    kafka_tail: bool = Field(
        default=True, description="wait for new records at the end; false stops at the end"
    )
    kafka_starting_offset: Literal["beginning", "end"] = "beginning"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Optional[str] = None
    kafka_sasl_username: Optional[str] = None
    kafka_sasl_password: Optional[SecretStr] = None
    kafka_config: dict[str, str] = Field(
        default_factory=dict, description="extra librdkafka properties for every client (JSON)"
    )
    kafka_delivery_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    kafka_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="bound of admin calls and metadata lookups"
    )

    # --- embedded input and output ---
    input_file: Optional[Path] = None
    output_dir: Optional[Path] = None
    surge_seed: int = 7
    surge_steady_events: int = Field(default=2000, ge=0, le=50_000_000)
    surge_burst_factor: int = Field(default=10, ge=1, le=100)
    surge_rate: float = Field(default=0.0, ge=0.0, description="events/s wall pacing; 0 = unpaced")
    batch_size: int = Field(default=500, ge=1, le=100_000)
    max_record_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_json_depth: int = Field(default=32, ge=2, le=512)
    event_time_min: AwareDatetime = Field(
        default=datetime(2000, 1, 1, tzinfo=UTC),
        description="earliest timestamp an input record may carry; earlier ones are dead letters",
    )
    event_time_max: AwareDatetime = Field(
        default=datetime(2100, 1, 1, tzinfo=UTC),
        description="latest timestamp an input record may carry (ETAs and SLAs included)",
    )
    max_future_skew_hours: float = Field(
        default=24.0, gt=0, le=24 * 365 * 100,
        description="how far ahead of the wall clock a record's own event time may be",
    )  # fmt: skip
    dead_letter_raw: Optional[Literal["bounded", "hash", "none"]] = Field(
        default=None,
        description="raw input a dead letter keeps: the first 4 KiB, its sha256 and length, or "
        "its length only; unset = the flow's default (shipments bounded, tickets hash)",
    )

    # --- shipments decisions ---
    window_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    allowed_lateness_minutes: int = Field(default=15, ge=0, le=24 * 60)
    catch_up_lag_records: int = Field(
        default=1000, ge=0,
        description="an input partition this many records behind its end is catching up: "
        "windows then close on event time only (no wall-time advance); 0 = never",
    )  # fmt: skip
    stuck_after_hours: float = Field(default=6.0, gt=0, le=24 * 30)
    repeated_delay_count: int = Field(default=2, ge=1, le=100)
    sla_warning_hours: float = Field(default=4.0, ge=0, le=24 * 365)

    # --- tickets ---
    session_max_messages: int = Field(default=10, ge=1, le=1000)
    session_ttl_minutes: float = Field(default=30.0, gt=0, le=365 * 24 * 60)
    router_confidence_threshold: float = Field(default=0.35, ge=0.0, le=1.0)
    router_conflict_ratio: float = Field(
        default=0.5, gt=0.0, le=1.0,
        description="an LLM route whose embedding weight is below this times the best route's "
        "is flagged route_conflict",
    )  # fmt: skip

    # --- reply policy (drafted replies and messages) ---
    reply_link_domains: Optional[list[LinkDomain]] = Field(
        default=None,
        max_length=1000,
        description="domains (with their subdomains) a drafted reply or message may link to, "
        "as JSON; unset = the list in data/reply_policy.json",
    )

    # --- LLM ---
    llm_model_classify: str = "gpt-4o-mini"
    llm_model_route: str = "gpt-4o-mini"
    llm_model_reply: str = "gpt-4o-mini"
    llm_model_embeddings: str = "text-embedding-3-small"
    llm_timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_max_concurrency: int = Field(default=16, ge=1, le=1024)
    llm_max_tokens: int = Field(default=300, ge=16, le=16_384)
    llm_prices: dict[str, tuple[Price, Price]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per 1M tokens (input, output) by model; each >= 0",
    )
    llm_model_fallback: Optional[str] = Field(
        default="gpt-4.1-nano",
        description="cheaper chat model used when the budget cannot pay the configured one; "
        "empty = go straight to the rules engine",
    )
    llm_min_concurrency: int = Field(default=1, ge=1, le=1024)
    llm_max_pending: int = Field(
        default=512, ge=1, le=1_000_000,
        description="calls queued or in flight per worker before the worker waits for one to "
        "end; keep below concurrency x max limiter wait / mean latency, or queued calls outwait "
        "the limiter wait and go to the rules engine",
    )  # fmt: skip
    llm_lanes: int = Field(
        default=64, ge=1, le=65_536, description="keyed lanes of each async agent step"
    )
    llm_poll_seconds: float = Field(
        default=0.02, gt=0, le=5, description="how often finished calls are emitted without input"
    )
    llm_retry_initial_seconds: float = Field(default=0.5, ge=0, le=60)
    llm_retry_max_seconds: float = Field(default=8.0, ge=0, le=600)
    llm_requests_per_minute: int = Field(
        default=0, ge=0, description="per model, shared by every process through Redis; 0 = none"
    )
    llm_tokens_per_minute: int = Field(
        default=0, ge=0, description="per model, prompt + max_tokens reserved; 0 = none"
    )
    llm_rate_burst_seconds: float = Field(
        default=1.0, gt=0, le=60, description="requests/tokens per minute admitted in one burst"
    )
    llm_max_limiter_wait_seconds: float = Field(
        default=30.0, ge=0, le=600, description="longest wait for the rate limits before fallback"
    )
    llm_breaker_failures: int = Field(
        default=5, ge=1, le=10_000, description="consecutive failed calls that open the breaker"
    )
    llm_breaker_reset_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="time open before one probe call is let through"
    )
    llm_budget_tokens_per_minute: int = Field(
        default=0, ge=0, description="per flow, reserved before each call; 0 = none"
    )
    llm_budget_usd_per_minute: float = Field(
        default=0.0, ge=0, description="per flow, reserved before each call; 0 = none"
    )
    llm_max_input_tokens: int = Field(
        default=1000, ge=16, le=100_000, description="bound on user text in one prompt"
    )
    embed_batch_size: int = Field(default=256, ge=1, le=2048)
    embed_batch_wait_seconds: float = Field(default=0.01, ge=0, le=5)

    # --- cache ---
    cache_max_entries: int = Field(default=50_000, ge=0)
    cache_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    cache_front_entries: int = Field(
        default=10_000, ge=0, description="in-process LRU entries in front of Redis; 0 = none"
    )
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    redis_retry_seconds: float = Field(
        default=5.0, gt=0, le=600, description="pause before Redis is tried again after a failure"
    )

    # --- recovery (mirrors `python -m bytewax.run -r/-s/-b`; all three or none) ---
    recovery_directory: Optional[Path] = Field(
        default=None,
        validation_alias=_env("BYTEWAX_RECOVERY_DIRECTORY"),
        description="directory of the recovery partitions (`python -m bytewax.recovery DIR N`)",
    )
    snapshot_interval_seconds: Optional[int] = Field(
        default=None,
        gt=0,
        validation_alias=_env("BYTEWAX_SNAPSHOT_INTERVAL"),
        description="whole seconds between snapshots (Bytewax parses an integer)",
    )
    recovery_backup_interval_seconds: Optional[int] = Field(
        default=None,
        ge=0,
        validation_alias=_env("BYTEWAX_RECOVERY_BACKUP_INTERVAL"),
        description="whole seconds old snapshots are kept for backups of the partitions",
    )

    shutdown_grace_seconds: float = Field(
        default=20.0,
        ge=0,
        le=3600,
        description="on SIGTERM/SIGINT, how long in-flight LLM calls may finish before the rest "
        "is kept in the final snapshot; the process ends at most 5 s later (keep the sum below "
        "Kubernetes' terminationGracePeriodSeconds, 30 by default)",
    )

    @model_validator(mode="after")
    def _event_time_range(self) -> Settings:
        """Refuse an empty range, or one so near the ends of the calendar that adding a window,
        a timer or an SLA to an accepted timestamp could overflow."""
        if not EVENT_TIME_FLOOR <= self.event_time_min < self.event_time_max <= EVENT_TIME_CEILING:
            raise ValueError(
                "SURGEFLOW_EVENT_TIME_MIN must be before SURGEFLOW_EVENT_TIME_MAX, both within "
                f"{EVENT_TIME_FLOOR.date()} .. {EVENT_TIME_CEILING.date()}"
            )
        return self

    @model_validator(mode="after")
    def _recovery_all_or_none(self) -> Settings:
        """Refuse a half-configured recovery: Bytewax needs the directory and both intervals."""
        given = {
            "BYTEWAX_RECOVERY_DIRECTORY (-r)": self.recovery_directory,
            "BYTEWAX_SNAPSHOT_INTERVAL (-s)": self.snapshot_interval_seconds,
            "BYTEWAX_RECOVERY_BACKUP_INTERVAL (-b)": self.recovery_backup_interval_seconds,
        }
        missing = [name for name, value in given.items() if value is None]
        if missing and len(missing) < len(given):
            raise ValueError(
                "recovery needs all three of BYTEWAX_RECOVERY_DIRECTORY (-r), "
                "BYTEWAX_SNAPSHOT_INTERVAL (-s) and BYTEWAX_RECOVERY_BACKUP_INTERVAL (-b), or "
                f"none of them; missing: {', '.join(missing)}"
            )
        return self

    # --- observability ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    def __repr_args__(self) -> Iterator[tuple[Optional[str], Any]]:
        """Fields as pydantic shows them, with credentials of URLs and secret Kafka keys masked."""
        for name, value in super().__repr_args__():
            if name == "openai_base_url" and value is not None:
                yield name, redacted_url(value)
            elif name == "kafka_config":
                yield name, {k: MASK if is_secret_name(k) else v for k, v in value.items()}
            else:
                yield name, value

    @property
    def llm_enabled(self) -> bool:
        """An OpenAI-compatible endpoint is configured (base URL or API key)."""
        return bool(self.openai_base_url or self.openai_api_key)

    @property
    def kafka_enabled(self) -> bool:
        return bool(self.kafka_bootstrap_servers)

    @property
    def redis_enabled(self) -> bool:
        return bool(self.redis_url)
