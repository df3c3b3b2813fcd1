"""The enrichment block every output carries: who produced the text and what it cost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, Literal, Optional, TypeVar, get_args

import orjson
from pydantic import Field

from schemas.common import NonNegativeFloat, NonNegativeInt, Record

EnrichmentSource = Literal["llm", "cache", "rules"]

CallOutcome = Literal["success", "cache_hit", "merged", "fallback", "policy_blocked"]
"""How the text was obtained: a provider call for this record (`success`), a cached answer
(`cache_hit`), an identical call already in flight (`merged`), a degraded path (`fallback`:
a cheaper model or the rules engine; `fallback_reason` says why), or the model's answer broke the
reply policy and the rules engine's text replaced it (`policy_blocked`; `policy_violations` says
which rules)."""

PolicyRule = Literal[
    "link_domain",
    "monetary_commitment",
    "refund_promise",
    "credential_request",
    "system_prompt",
    "category_unsupported",
]
"""A rule of the reply policy (`operators.llm.reply_policy`) a drafted text broke: a link to a
domain not allow-listed, an amount / compensation / approved refund, a refund where the rules path
offers none, a request for card numbers, passwords or codes, text of the system prompt, or (for
shipments) an exception category the notes do not support."""

FallbackReason = Literal[
    "disabled",
    "budget",
    "breaker_open",
    "rate_limit_wait",
    "invalid_output",
    "call_error",
    "timeout",
]
"""Why the configured model did not answer: no endpoint configured, the flow's budget was spent,
the circuit breaker was open, the rate limits would have waited too long, the answer did not
validate (after one repair attempt), the provider call failed (after its retries), or the
provider did not answer in time (an attempt timed out and no later one answered)."""


class Enrichment(Record):
    """Provenance and cost of the LLM-enriched part of an output.

    `source` says where the text came from: `llm` (a provider call made for this record),
    `cache` (an earlier identical call or one in flight; no new cost) or `rules` (the rules
    engine: no endpoint configured, or the LLM path degraded). `model` is the model that
    answered: the fallback model when the budget could not pay the configured one. `outcome`
    and `fallback_reason` (optional; absent in records written before they existed) say how and,
    for a degraded answer, why. An answer that broke the reply policy is replaced by the rules
    engine's text: `source` `rules`, `outcome` `policy_blocked`, `policy_violations` the rules,
    and model, tokens and cost those of the call that was paid for.
    """

    source: EnrichmentSource
    model: Optional[str] = Field(default=None, max_length=100)
    prompt_version: str = Field(min_length=1, max_length=40)
    tokens_in: NonNegativeInt = 0
    tokens_out: NonNegativeInt = 0
    cost_usd: NonNegativeFloat = 0.0
    latency_ms: NonNegativeFloat = 0.0
    outcome: Optional[CallOutcome] = None
    fallback_reason: Optional[FallbackReason] = None
    policy_violations: tuple[PolicyRule, ...] = Field(
        default=(),
        max_length=len(get_args(PolicyRule)),
        description="The reply-policy rules the model's answer broke (outcome policy_blocked): "
        "the text is then the rules engine's (source rules), while model, tokens and cost are "
        "those of the blocked call. Empty otherwise.",
    )


def combine_enrichments(parts: Sequence[Enrichment]) -> Optional[Enrichment]:
    """One block for several calls made for one output: tokens, cost and latency add up.

    The source is `llm` when any call reached the provider, else `cache`; model, prompt version
    and outcome are those of the last call (the one that decided); the fallback reason is the
    last one any call gave. None when there were no calls.
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
        outcome=last.outcome,
        fallback_reason=next(
            (p.fallback_reason for p in reversed(parts) if p.fallback_reason), None
        ),
    )


E = TypeVar("E", bound=Enrichment)


class EnrichmentJson(Generic[E]):
    """The JSON of enrichments of class `cls` as pydantic encodes them, kept for the last ones
    encoded (the rules path shares a few enrichments among many outputs: each is encoded once).

    Held by `id`, each entry with its enrichment, so an id cannot be reused while it is there;
    emptied when it holds `limit`. Calling it gives None for anything but a `cls` whose values
    are laid out as validation lays them out, with numbers of their fields' types, that orjson
    encodes: the caller's output then goes through pydantic."""

    def __init__(self, cls: type[E], limit: int = 256) -> None:
        self.cls = cls
        self.limit = limit
        self.held: dict[int, tuple[E, orjson.Fragment]] = {}
        self._fields = tuple(cls.model_fields)

    def __call__(self, enrichment: Any) -> Optional[orjson.Fragment]:
        found = self.held.get(id(enrichment))
        if found is not None and found[0] is enrichment:
            return found[1]
        if type(enrichment) is not self.cls:
            return None
        values = enrichment.__dict__
        if not (
            tuple(values) == self._fields
            and enrichment.__pydantic_extra__ is None
            and type(values["tokens_in"]) is int
            and type(values["tokens_out"]) is int
            and type(values["cost_usd"]) is float
            and type(values["latency_ms"]) is float
        ):
            return None
        try:
            fragment = orjson.Fragment(orjson.dumps(values, option=orjson.OPT_UTC_Z))
        except TypeError:  # a value orjson does not encode
            return None
        if len(self.held) >= self.limit:
            self.held.clear()
        self.held[id(enrichment)] = (enrichment, fragment)
        return fragment
