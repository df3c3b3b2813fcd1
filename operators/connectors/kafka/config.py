"""librdkafka configuration of every Kafka client, built from the settings.

One place decides the connection (bootstrap servers, security protocol, SASL credentials, extra
properties from `SURGEFLOW_KAFKA_CONFIG`) and the producer's delivery guarantees, so the source,
the sink, the topic helper and the loader cannot disagree.
"""

from __future__ import annotations

import logging
from typing import Any

from operators.config.kafka import KafkaSettings
from operators.errors import SurgeflowError
from operators.runtime.logs import RateLimitedLog

CLIENT_LOG = RateLimitedLog(
    logging.getLogger("operators.connectors.kafka.librdkafka"), interval=10.0
)
"""librdkafka's log lines of every client of this process, through Python logging: one line per
level and facility (`FAIL`, `REQTMOUT`...) every 10 s, with the count of those held back, instead
of one line per connection attempt on stderr."""


class KafkaNotConfigured(SurgeflowError, RuntimeError):
    """A Kafka client was asked for while `KAFKA_BOOTSTRAP_SERVERS` is unset."""


def bootstrap_servers(kafka: KafkaSettings) -> list[str]:
    """The `host:port` list of `KAFKA_BOOTSTRAP_SERVERS`."""
    if not kafka.bootstrap_servers:
        raise KafkaNotConfigured("KAFKA_BOOTSTRAP_SERVERS is not set")
    return [s.strip() for s in kafka.bootstrap_servers.split(",") if s.strip()]


def connection_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Security and extra properties shared by every client (no bootstrap servers)."""
    config: dict[str, Any] = {"security.protocol": kafka.security_protocol}
    if kafka.sasl_mechanism:
        config["sasl.mechanism"] = kafka.sasl_mechanism
    if kafka.sasl_username:
        config["sasl.username"] = kafka.sasl_username
    if kafka.sasl_password is not None:
        config["sasl.password"] = kafka.sasl_password.get_secret_value()
    config.update(kafka.config)
    return config


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection properties including `bootstrap.servers` (admin clients, consumers), with
    librdkafka's log routed through `CLIENT_LOG` (served by the clients' poll and flush)."""
    servers = ",".join(bootstrap_servers(kafka))
    return {"bootstrap.servers": servers, "logger": CLIENT_LOG, **connection_config(kafka)}


def producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """An idempotent producer that waits for every in-sync replica, keyed like Java clients.

    Tuning (`linger.ms`, compression, request timeout) may be changed in `SURGEFLOW_KAFKA_CONFIG`;
    idempotence, acks, the partitioner and the delivery bound may not.

    `partitioner=murmur2_random` places a key on the same partition as the Java producer (and
    Kafka Streams, Flink, Quix) would, so a flow key stays on one partition whichever client
    wrote it. Delivery is bounded by `SURGEFLOW_KAFKA_DELIVERY_TIMEOUT_SECONDS`.
    """
    timeout_ms = int(kafka.delivery_timeout_seconds * 1000)
    tuning = {"linger.ms": 5, "compression.type": "lz4", "request.timeout.ms": 30_000}
    return {
        **tuning,
        **client_config(kafka),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "delivery.timeout.ms": timeout_ms,
    }
