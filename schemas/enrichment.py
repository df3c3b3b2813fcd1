"""The enrichment block every output carries: who produced the text and what it cost."""

from __future__ import annotations

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
