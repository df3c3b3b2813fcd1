"""Prometheus metrics of the flows (prometheus-client's default registry).

Bytewax's dataflow API (`BYTEWAX_DATAFLOW_API_ENABLED`, port 3030) serves `/metrics` with its own
series followed by this registry, so no second HTTP server is needed.
"""

from __future__ import annotations

from prometheus_client import Counter

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
