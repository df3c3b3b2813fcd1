"""Prometheus metrics of the flows (prometheus-client's default registry).

Bytewax's dataflow API (`BYTEWAX_DATAFLOW_API_ENABLED`, port 3030) serves `/metrics` with its own
series followed by this registry, so no second HTTP server is needed.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RECORDS_IN = Counter("surgeflow_records_in", "Input records read, before validation.", ["flow"])
RECORDS_OUT = Counter(
    "surgeflow_records_out", "Output records written, by topic.", ["flow", "topic"]
)
DEAD_LETTERS = Counter(
    "surgeflow_dead_letters",
    "Records sent to the dead-letter topic, by reason.",
    ["flow", "reason"],
)
ENRICHMENTS = Counter(
    "surgeflow_enrichments",
    "Outputs enriched, by where the enrichment came from (llm, cache, rules).",
    ["flow", "source"],
)
KAFKA_DELIVERED = Counter(
    "surgeflow_kafka_delivered",
    "Records the Kafka broker acknowledged, by topic.",
    ["topic"],
)
KAFKA_DELIVERY_FAILURES = Counter(
    "surgeflow_kafka_delivery_failures",
    "Records the Kafka producer could not deliver, by topic and error (the flow then stops).",
    ["topic", "error"],
)
CACHE_LOOKUPS = Counter(
    "surgeflow_cache_lookups",
    "LLM cache lookups, per key, by backend (memory, redis) and result (hit, miss).",
    ["backend", "result"],
)
CACHE_ERRORS = Counter(
    "surgeflow_cache_errors",
    "Failed round trips to the Redis cache, by operation (get, set).",
    ["operation"],
)
CACHE_BACKEND_UP = Gauge(
    "surgeflow_cache_backend_up",
    "1 while the Redis cache answers, 0 while it is marked down (the in-process front serves).",
)
KAFKA_CONSUMER_ERRORS = Counter(
    "surgeflow_kafka_consumer_errors",
    "Kafka consumer errors that belong to no record (the consumer retries), by topic and error.",
    ["topic", "error"],
)
