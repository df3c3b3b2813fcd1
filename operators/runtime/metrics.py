"""Prometheus metrics of the flows (prometheus-client's default registry).

Bytewax's dataflow API (`BYTEWAX_DATAFLOW_API_ENABLED`, port 3030) serves `/metrics` with its own
series followed by this registry, so no second HTTP server is needed.

Every Surgeflow series carries `flow`: the name of the flow whose objects counted it, handed down
from its spec by whoever builds them (the skeleton, the flow file, the LLM service). Nothing here
names a flow. A path that counts per record resolves its labelled child once (`Children`), not
with `.labels(...)` per record.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge
from prometheus_client.metrics import MetricWrapperBase

W = TypeVar("W", bound=MetricWrapperBase)
M = TypeVar("M")


class Children(Generic[W]):
    """The labelled children of `metric` with its leading labels fixed to `fixed`, each resolved
    once: `children(*rest)` is `metric.labels(*fixed, *rest)`, remembered per `rest`.

    prometheus-client's `labels()` validates and locks on every call; a per-record path asks
    this instead (a dictionary lookup). Thread-safe: two threads resolving the same child at once
    both get the one child prometheus-client keeps.
    """

    __slots__ = ("_children", "_fixed", "_metric")

    def __init__(self, metric: W, *fixed: str) -> None:
        self._metric, self._fixed = metric, fixed
        self._children: dict[tuple[str, ...], W] = {}

    def __call__(self, *rest: str) -> W:
        child = self._children.get(rest)
        if child is None:
            child = self._children[rest] = self._metric.labels(*self._fixed, *rest)
        return child


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
POLICY_BLOCKED = Counter(
    "surgeflow_reply_policy_blocked",
    "Outputs whose drafted text broke the reply policy and was replaced, by rule broken.",
    ["flow", "rule"],
)
KAFKA_DELIVERED = Counter(
    "surgeflow_kafka_delivered",
    "Records the Kafka broker acknowledged, by topic.",
    ["flow", "topic"],
)
KAFKA_DELIVERY_FAILURES = Counter(
    "surgeflow_kafka_delivery_failures",
    "Records the Kafka producer could not deliver, by topic and error (the flow then stops).",
    ["flow", "topic", "error"],
)
CACHE_LOOKUPS = Counter(
    "surgeflow_cache_lookups",
    "LLM cache lookups, per key, by backend (memory, redis) and result (hit, miss).",
    ["flow", "backend", "result"],
)
CACHE_ERRORS = Counter(
    "surgeflow_cache_errors",
    "Failed round trips to the Redis cache, by operation (get, set).",
    ["flow", "operation"],
)
CACHE_BACKEND_UP = Gauge(
    "surgeflow_cache_backend_up",
    "1 while the Redis cache answers, 0 while it is marked down (the in-process front serves).",
    ["flow"],
)
KAFKA_CONSUMER_ERRORS = Counter(
    "surgeflow_kafka_consumer_errors",
    "Kafka consumer errors that belong to no record (the consumer retries), by topic and error.",
    ["flow", "topic", "error"],
)
LIVE_STATE_KEYS = Gauge(
    "surgeflow_live_state_keys",
    "Keys holding state in a stateful step of this process (decision windows, ticket sessions).",
    ["flow", "step"],
)


class LiveKeys:
    """How many keys of one stateful step hold state in this process, read by the gauge.

    A step's logic calls `opened()` when Bytewax builds it (a new key, or a key restored from a
    snapshot) and `closed()` when it returns `DISCARD`, so the count is the number of logic
    instances alive now. It goes back towards 0 as windows close and sessions expire; a count
    that only grows is state that is never dropped.

    The count is the length of a deque (one `None` per live key, 8 bytes each): an append or a
    pop is atomic, so workers of one process share it without a lock, and the gauge reads it
    when it is scraped (`Gauge.set_function`; the project does not use prometheus-client's
    multiprocess mode) rather than being set on every open and close.
    """

    def __init__(self, flow: str, step: str) -> None:
        self.flow, self.step = flow, step
        self._live: deque[None] = deque()
        LIVE_STATE_KEYS.labels(flow, step).set_function(self._live.__len__)

    def opened(self) -> None:
        self._live.append(None)

    def closed(self) -> None:
        """One key fewer; a close with no key open is ignored (the count never goes below 0)."""
        try:  # noqa: SIM105 (a `suppress` context costs more than the pop)
            self._live.pop()
        except IndexError:
            pass

    @property
    def count(self) -> int:
        """Keys of this step holding state in this process now."""
        return len(self._live)


_live: dict[tuple[str, str], LiveKeys] = {}
_live_lock = threading.Lock()


def live_keys(flow: str, step: str) -> LiveKeys:
    """The process-wide `LiveKeys` of `step` in `flow` (one per pair, created on first use)."""
    with _live_lock:
        tracker = _live.get((flow, step))
        if tracker is None:
            tracker = _live[(flow, step)] = LiveKeys(flow, step)
        return tracker


def live_state_keys(flow: str, step: str) -> int:
    """Keys of `step` in `flow` holding state in this process now (0 for an unknown step)."""
    with _live_lock:
        tracker = _live.get((flow, step))
    return 0 if tracker is None else tracker.count


PENDING = Gauge(
    "surgeflow_llm_pending",
    "Items handed to async agent steps and not yet emitted, in this process.",
    ["flow"],
)


@dataclass(frozen=True)
class OutputCount(Generic[M]):
    """How a flow counts its output records by one field of theirs: the hook through which a
    flow's spec gives `surgeflow_decisions_total{action}` or `surgeflow_responses_total{route}`
    while the runtime that counts (`operators.runtime.io.publish`) names neither.

    `counter` has the labels (`flow`, `label`); `label_of` reads the value from an output
    model. Make one with `output_count`.
    """

    counter: Counter
    label: str
    label_of: Callable[[M], str]
    _children: dict[str, Children[Counter]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def children(self, flow: str) -> Children[Counter]:
        """The counter's children of `flow`, by label value (resolved once each)."""
        found = self._children.get(flow)
        if found is None:
            found = self._children[flow] = Children(self.counter, flow)
        return found

    def count(self, flow: str, model: M) -> None:
        """Count one output `model` of `flow`."""
        self.children(flow)(self.label_of(model)).inc()


def output_count(
    name: str, documentation: str, label: str, label_of: Callable[[M], str]
) -> OutputCount[M]:
    """A counter `<name>_total{flow, <label>}` of a flow's outputs, `label_of(model)` being the
    value of `label`. Called once per counter (the flow registry), as prometheus-client
    registers a name once per process."""
    return OutputCount(Counter(name, documentation, ["flow", label]), label, label_of)
