"""The enrichment block every output carries: who produced the text and what it cost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Optional

from pydantic import Field

from schemas.common import NonNegativeFloat, NonNegativeInt, Record

EnrichmentSource = Literal["llm", "cache", "rules"]


class Enrichment(Record):
    """Provenance and cost of the LLM-enriched part of an output.

    `source` says where the text came from: `llm` (a provider call made for this record),
    `cache` (an earlier identical call; no new cost) or `rules` (the rules engine: no endpoint
    configured, or the LLM path degraded).
    """

    source: EnrichmentSource
    model: Optional[str] = Field(default=None, max_length=100)
    prompt_version: str = Field(min_length=1, max_length=40)
    tokens_in: NonNegativeInt = 0
    tokens_out: NonNegativeInt = 0
    cost_usd: NonNegativeFloat = 0.0
    latency_ms: NonNegativeFloat = 0.0


def combine_enrichments(parts: Sequence[Enrichment]) -> Optional[Enrichment]:
    """One block for several calls made for one output: tokens, cost and latency add up.

    The source is `llm` when any call reached the provider, else `cache`; model and prompt
    version are those of the last call (the one that decided). None when there were no calls.
    """
    if not parts:
        return None
    last = parts[-1]
    return Enrichment(
        source="llm" if any(p.source == "llm" for p in parts) else last.source,
        model=last.model,
        prompt_version=last.prompt_version,
        tokens_in=sum(p.tokens_in for p in parts),
        tokens_out=sum(p.tokens_out for p in parts),
        cost_usd=sum(p.cost_usd for p in parts),
        latency_ms=sum(p.latency_ms for p in parts),
    )
