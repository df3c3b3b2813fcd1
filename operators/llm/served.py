"""What the chat and embedding paths hand back to the service, and their tolerant cache access.

A `Served` is a value with how it was obtained: by a provider call (`success`, or `fallback`
when the budget moved it to the fallback model), from the cache (`cache_hit`) or by joining an
identical call in flight (`merged`); with the tokens and cost it used and the cost it saved.
It gives the output's `Enrichment` and the ledger's `CallRecord`; `failure_record` is the
ledger's record of a call that raised.

`TolerantCache` wraps a `PromptCache` so that a failing cache only costs its hits (a failed
lookup is a miss, a failed write leaves the answer uncached; each logged as a WARNING), and so
that the lookups of concurrent calls share round trips.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from operators.llm.accounting import CallRecord, Operation
from operators.llm.batching import MicroBatcher
from operators.llm.cache import PromptCache
from operators.llm.types import LLMError, LLMUnavailable
from operators.runtime.per_loop import PerLoop
from schemas.enrichment import Enrichment, EnrichmentSource, FallbackReason

log = logging.getLogger(__name__)

V = TypeVar("V")

ServedOutcome = Literal["success", "cache_hit", "merged", "fallback"]
"""How a value was served: the outcomes of the ledger (`accounting.Outcome`) but `failure`, which
serves nothing; each is also an outcome of the output's enrichment (`CallOutcome`)."""

COALESCE_KEYS = 500
"""Most keys of one coalesced cache lookup or write (one Redis MGET chunk)."""


@dataclass(frozen=True)
class Served(Generic[V]):
    """A value and its provenance: model, outcome, tokens, cost, cost saved, fallback reason."""

    value: V
    model: str
    outcome: ServedOutcome
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    cost_saved_usd: float = 0.0
    fallback_reason: FallbackReason | None = None

    def joined(self) -> Served[V]:
        """This value as served to a caller that joined its call in flight: no new cost."""
        return Served(
            self.value,
            self.model,
            "merged",
            cost_saved_usd=self.cost_usd,
            fallback_reason=self.fallback_reason,
        )

    @property
    def source(self) -> EnrichmentSource:
        """`llm` when a provider call was made for it, else `cache`."""
        return "llm" if self.outcome in ("success", "fallback") else "cache"

    def enrichment(self, prompt_version: str, latency_seconds: float) -> Enrichment:
        """The output's description of this value."""
        return Enrichment(
            source=self.source,
            model=self.model[:100],
            prompt_version=prompt_version,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost_usd=self.cost_usd,
            latency_ms=latency_seconds * 1000.0,
            outcome=self.outcome,
            fallback_reason=self.fallback_reason,
        )

    def record(
        self, flow: str, operation: Operation, key: str | None, latency_seconds: float
    ) -> CallRecord:
        """The ledger's record of the call that served this value."""
        return CallRecord(
            flow,
            operation,
            self.model,
            self.outcome,
            self.tokens_in,
            self.tokens_out,
            self.cost_usd,
            self.cost_saved_usd,
            latency_seconds,
            key,
            self.fallback_reason,
        )


def failure_record(
    flow: str,
    operation: Operation,
    model: str,
    exc: LLMError,
    *,
    key: str | None,
    latency_seconds: float,
    joined: bool,
) -> CallRecord:
    """The ledger's record of a call that failed with `exc` (what it spent, unless it joined)."""
    spent = None if joined else exc.spent
    return CallRecord(
        flow,
        operation,
        spent.model if spent and spent.model else model,
        "fallback" if isinstance(exc, LLMUnavailable) else "failure",
        spent.tokens_in if spent else 0,
        spent.tokens_out if spent else 0,
        spent.cost_usd if spent else 0.0,
        latency_seconds=latency_seconds,
        key=key,
        fallback_reason=exc.reason,
    )


class TolerantCache:
    """A `PromptCache` whose failures are logged and absorbed, with concurrent use coalesced.

    The lookups (and the writes) that calls on one event loop make in the same loop iteration
    go to the backend as one `get_many` (one `set_many`) of up to `COALESCE_KEYS` keys: a surge
    of calls costs a few Redis round trips and connections, not one each.
    """

    def __init__(self, cache: PromptCache, ttl_seconds: int) -> None:
        self.inner = cache
        self._ttl = ttl_seconds
        self._lookups: PerLoop[MicroBatcher[str, bytes | None]] = PerLoop(
            lambda: MicroBatcher(self._get_batch, max_size=COALESCE_KEYS, max_wait=0.0),
            close=lambda batcher: batcher.aclose(),
        )
        self._writes: PerLoop[MicroBatcher[tuple[str, bytes], None]] = PerLoop(
            lambda: MicroBatcher(self._set_batch, max_size=COALESCE_KEYS, max_wait=0.0),
            close=lambda batcher: batcher.aclose(),
        )

    async def get(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The cached values of `keys` ({} when the cache fails)."""
        wanted = list(dict.fromkeys(keys))
        batcher = self._lookups.get()
        values = await asyncio.gather(*(batcher.submit(key) for key in wanted))
        return {key: value for key, value in zip(wanted, values, strict=True) if value is not None}

    async def set(self, items: Mapping[str, bytes]) -> None:
        """Store `items` with the cache TTL (nothing happens when the cache fails)."""
        batcher = self._writes.get()
        await asyncio.gather(*(batcher.submit((key, bytes(v))) for key, v in items.items()))

    async def _get_batch(self, keys: list[str]) -> list[bytes | None]:
        try:
            found = await self.inner.get_many(keys)
        except Exception:
            log.warning("cache lookup failed; calling the provider", exc_info=True)
            found = {}
        return [found.get(key) for key in keys]

    async def _set_batch(self, items: list[tuple[str, bytes]]) -> list[None]:
        try:
            await self.inner.set_many(dict(items), self._ttl)
        except Exception:
            log.warning("cache write failed; the answer is used uncached", exc_info=True)
        return [None] * len(items)
