"""Accounting of LLM calls: tokens, cost, latency and outcome per call; totals per flow and key.

A `Ledger` takes one `CallRecord` per logical call (a chat answer or one `embed` request) and
keeps running totals per flow and per key (the shipment or session the call was for), plus the
most recent records. Cost is what the price table in the settings says; `cost_saved_usd` is what
an answer served by the cache or by a merged call in flight had cost when it was first made (the
cache entry keeps its usage). A failed call records what it still spent: an answer the provider
was paid for but that could not be used (it did not validate after its repair, was cut at
`max_tokens`, or was refused) counts its `usage` and cost, with outcome `failure`; the output
the rules then make carries the same tokens (`operators.llm.agent`). Per-key totals are bounded:
an LRU of `KEY_TOTALS_ENTRIES` keys, so a stream of distinct shipments cannot grow memory.

Every record also goes to Prometheus' default registry (served by Bytewax's `/metrics`):
`surgeflow_llm_calls_total{flow,operation,outcome}`, `surgeflow_llm_cost_usd_total`,
`surgeflow_llm_cost_saved_usd_total` and `surgeflow_llm_fallbacks_total`. Each provider attempt
is observed by `observe_attempt` (`gen_ai_client_operation_duration_seconds`, with `error_type`
on failures) and `observe_tokens` (`gen_ai_client_token_usage` by input/output).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

from cachetools import LRUCache

from operators.llm.metrics import (
    CALLS,
    COST,
    COST_SAVED,
    FALLBACKS,
    OPERATION_DURATION,
    PROVIDER,
    TOKEN_USAGE,
)
from operators.runtime.metrics import Children

Outcome = Literal["success", "cache_hit", "merged", "fallback", "failure"]
Operation = Literal["chat", "embeddings"]

KEY_TOTALS_ENTRIES = 10_000
"""Keys whose totals a ledger keeps (least recently used keys are dropped beyond it)."""

RECENT_RECORDS = 1_000
"""Most recent call records a ledger keeps for inspection."""


@dataclass(frozen=True)
class CallRecord:
    """One logical call: what it asked, what it used and cost, how long it took, how it ended."""

    flow: str
    operation: Operation
    model: str
    outcome: Outcome
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    cost_saved_usd: float = 0.0
    latency_seconds: float = 0.0
    key: str | None = None
    fallback_reason: str | None = None


@dataclass
class Totals:
    """Sums over call records."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    cost_saved_usd: float = 0.0
    latency_seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.tokens_in += record.tokens_in
        self.tokens_out += record.tokens_out
        self.cost_usd += record.cost_usd
        self.cost_saved_usd += record.cost_saved_usd
        self.latency_seconds += record.latency_seconds
        self.outcomes[record.outcome] += 1

    def copy(self) -> Totals:
        return Totals(
            self.calls,
            self.tokens_in,
            self.tokens_out,
            self.cost_usd,
            self.cost_saved_usd,
            self.latency_seconds,
            Counter(self.outcomes),
        )


class Ledger:
    """Running totals of call records (thread-safe: worker loops of a process share one)."""

    def __init__(self, *, max_keys: int = KEY_TOTALS_ENTRIES, recent: int = RECENT_RECORDS) -> None:
        self._lock = threading.Lock()
        self._flows: dict[str, Totals] = {}
        self._keys: LRUCache[str, Totals] = LRUCache(maxsize=max(max_keys, 1))
        self._recent: deque[CallRecord] = deque(maxlen=max(recent, 1))

    def record(self, record: CallRecord) -> None:
        """Add `record` to the totals of its flow and key, and to the metrics."""
        with self._lock:
            self._flows.setdefault(record.flow, Totals()).add(record)
            if record.key is not None:
                totals = self._keys.get(record.key)
                if totals is None:
                    totals = self._keys[record.key] = Totals()
                totals.add(record)
            self._recent.append(record)
        _export(record)

    def totals(self, flow: str | None = None) -> Totals:
        """The totals of `flow`, or of every flow."""
        with self._lock:
            if flow is not None:
                return self._flows.get(flow, Totals()).copy()
            overall = Totals()
            for totals in self._flows.values():
                _merge(overall, totals)
            return overall

    def totals_for(self, key: str) -> Totals | None:
        """The totals of the calls made for `key`; None when unknown (or evicted)."""
        with self._lock:
            totals = self._keys.get(key)
            return totals.copy() if totals is not None else None

    def records(self) -> list[CallRecord]:
        """The most recent call records, oldest first."""
        with self._lock:
            return list(self._recent)


def _merge(into: Totals, other: Totals) -> None:
    into.calls += other.calls
    into.tokens_in += other.tokens_in
    into.tokens_out += other.tokens_out
    into.cost_usd += other.cost_usd
    into.cost_saved_usd += other.cost_saved_usd
    into.latency_seconds += other.latency_seconds
    into.outcomes.update(other.outcomes)


# Every call counts in these: their children are resolved once per label set, not per call.
_CALLS = Children(CALLS)
_COST = Children(COST)
_COST_SAVED = Children(COST_SAVED)
_FALLBACKS = Children(FALLBACKS)
_DURATION = Children(OPERATION_DURATION)
_TOKENS = Children(TOKEN_USAGE)


def _export(record: CallRecord) -> None:
    _CALLS(record.flow, record.operation, record.outcome).inc()
    if record.cost_usd > 0:
        _COST(record.flow, record.model).inc(record.cost_usd)
    if record.cost_saved_usd > 0:
        _COST_SAVED(record.flow, record.model).inc(record.cost_saved_usd)


def record_fallback(flow: str, reason: str, target: Literal["fallback_model", "rules"]) -> None:
    """Count a call sent away from its configured model (`surgeflow_llm_fallbacks_total`)."""
    _FALLBACKS(flow, reason, target).inc()


def observe_attempt(
    flow: str, operation: Operation, model: str, seconds: float, error_type: str | None = None
) -> None:
    """One provider attempt's duration for `flow`; `error_type` names the failure (empty on
    success)."""
    _DURATION(flow, operation, PROVIDER, model, error_type or "").observe(max(seconds, 0.0))


def observe_tokens(
    flow: str, operation: Operation, model: str, tokens_in: int, tokens_out: int
) -> None:
    """One provider answer's token usage for `flow` (output only for chat)."""
    _TOKENS(flow, operation, PROVIDER, model, "input").observe(tokens_in)
    if operation == "chat":
        _TOKENS(flow, operation, PROVIDER, model, "output").observe(tokens_out)
