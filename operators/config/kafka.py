"""Kafka settings: the client (`KafkaSettings`) and the topics of both flows (`TopicSettings`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, Optional

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from operators.config.group import SettingsGroup, conventional
from operators.config.redact import MASK, is_secret_name


class KafkaSettings(SettingsGroup):
    """The Kafka client (used when `KAFKA_BOOTSTRAP_SERVERS` is set): `SURGEFLOW_KAFKA_*`."""

    model_config = SettingsConfigDict(env_prefix="SURGEFLOW_KAFKA_")

    bootstrap_servers: Optional[str] = Field(
        default=None, validation_alias=conventional("KAFKA_BOOTSTRAP_SERVERS")
    )
    tail: bool = Field(
        default=True, description="wait for new records at the end; false stops at the end"
    )
    starting_offset: Literal["beginning", "end"] = "beginning"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Optional[str] = None
    sasl_username: Optional[str] = None
    sasl_password: Optional[SecretStr] = None
    config: dict[str, str] = Field(
        default_factory=dict, description="extra librdkafka properties for every client (JSON)"
    )
    delivery_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="bound of admin calls and metadata lookups"
    )

    @property
    def enabled(self) -> bool:
        return bool(self.bootstrap_servers)

    def __repr_args__(self) -> Iterator[tuple[Optional[str], Any]]:
        """Fields as pydantic shows them, with secret librdkafka properties masked."""
        for name, value in super().__repr_args__():
            if name == "config":
                yield name, {k: MASK if is_secret_name(k) else v for k, v in value.items()}
            else:
                yield name, value


class TopicSettings(SettingsGroup):
    """Topic names of both flows and how topics are created: `SURGEFLOW_TOPIC_*`."""

    model_config = SettingsConfigDict(env_prefix="SURGEFLOW_TOPIC_")

    shipments_events: str = "shipments.events"
    shipments_decisions: str = "shipments.decisions"
    shipments_dlq: str = "shipments.dlq"
    tickets_messages: str = "tickets.messages"
    tickets_responses: str = "tickets.responses"
    tickets_dlq: str = "tickets.dlq"
    partitions: int = Field(default=4, ge=1, le=1000)
    replication_factor: int = Field(default=1, ge=1, le=10)
