"""The interface every LLM-using step codes against (no Bytewax, no network here).

`LLMService` is implemented by `operators.llm.service.OpenAIService` (an OpenAI-compatible
endpoint through `openai.AsyncOpenAI`, with the cache in front) and by `DisabledService` (no
endpoint configured: every call raises `LLMUnavailable`, and the caller uses its rules engine).

Every failure is an `LLMError` whose `reason` names why the caller has to use its rules engine
(the `fallback_reason` of `schemas.enrichment.Enrichment`):

    LLMError
    ├── LLMUnavailable          disabled         no endpoint configured
    │   ├── BreakerOpen         breaker_open     the model's circuit breaker is open
    │   ├── BudgetExhausted     budget           the flow's token/USD budget cannot pay any model
    │   └── RateLimitWait       rate_limit_wait  the limits would make the call wait too long
    ├── LLMCallError            call_error       the provider failed after the allowed retries
    │   └── LLMTimeout          timeout          an attempt timed out and no later one answered
    └── LLMInvalidOutput        invalid_output   the answer (and its repair) did not validate
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel

from operators.config.llm import EmbeddingRole, Task
from operators.errors import SurgeflowError
from schemas.enrichment import Enrichment, FallbackReason

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Spent:
    """What a failed call still used: an answer that did not validate was paid for."""

    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


class LLMError(SurgeflowError):
    """Base of every LLM-layer failure; callers catch it and fall back to their rules engine.

    `reason` is the `fallback_reason` a rules enrichment made because of it should carry;
    `spent` is what the failed call still used (None when nothing); `paid` is that spending as
    the caller's output describes it (source `llm`, outcome `fallback`, the reason), set by the
    service for the one caller that made the call (None for callers that joined it).
    """

    reason: ClassVar[FallbackReason] = "call_error"
    spent: Spent | None = None
    paid: Enrichment | None = None


class LLMUnavailable(LLMError):
    """No endpoint is configured, or the layer decided not to call it."""

    reason: ClassVar[FallbackReason] = "disabled"


class BreakerOpen(LLMUnavailable):
    """The model's circuit breaker is open (or half-open with its probe in flight)."""

    reason: ClassVar[FallbackReason] = "breaker_open"


class BudgetExhausted(LLMUnavailable):
    """The flow's per-minute budget cannot pay the model nor the fallback model."""

    reason: ClassVar[FallbackReason] = "budget"


class RateLimitWait(LLMUnavailable):
    """The request/token limits or the concurrency limit would exceed the allowed wait."""

    reason: ClassVar[FallbackReason] = "rate_limit_wait"


class LLMCallError(LLMError):
    """The provider call failed after the allowed retries (status, timeout, connection)."""

    reason: ClassVar[FallbackReason] = "call_error"


class LLMTimeout(LLMCallError):
    """The provider did not answer in time: an attempt timed out (or the call's bound expired),
    and no later attempt answered."""

    reason: ClassVar[FallbackReason] = "timeout"


class LLMInvalidOutput(LLMError):
    """The provider answered, but not with output that validates against the requested model."""

    reason: ClassVar[FallbackReason] = "invalid_output"


@dataclass(frozen=True)
class ChatResult(Generic[T]):
    """A validated structured answer and its provenance and cost (source llm or cache)."""

    value: T
    enrichment: Enrichment


@dataclass(frozen=True)
class EmbedResult:
    """One vector per input text, in input order, and the provenance/cost of the batch."""

    vectors: list[list[float]]
    enrichment: Enrichment


@dataclass
class Tab:
    """The accounting of answers served from the process, held back until `settle`: a caller
    that needs several answers records them only once it has them all."""

    records: list[Any] = field(default_factory=list)


class LLMService(Protocol):
    """What steps may ask of the LLM layer.

    `key` (optional) names what the call is for (a shipment id, a ticket session); the service's
    accounting keeps totals per key. `task` (optional) picks the endpoint of a chat call
    (`classify`, `route`, `reply`; None = the shared one); embeddings go to the `embeddings`
    endpoint.
    """

    @property
    def enabled(self) -> bool: ...

    async def chat_structured(
        self,
        *,
        messages: list[dict[str, str]],
        response_model: type[T],
        model: str,
        prompt_version: str,
        max_tokens: int | None = None,
        key: str | None = None,
        task: Task | None = None,
    ) -> ChatResult[T]:
        """One chat completion whose JSON answer is validated into `response_model`."""
        ...

    def chat_cached_now(
        self,
        *,
        messages: list[dict[str, str]],
        response_model: type[T],
        model: str,
        prompt_version: str,
        max_tokens: int | None = None,
        key: str | None = None,
        tab: Tab | None = None,
        task: Task | None = None,
    ) -> ChatResult[T] | None:
        """`chat_structured`'s answer if this process already holds it (no event loop, no
        network), else None. With a `tab` its accounting waits there for `settle`."""
        ...

    async def embed(
        self,
        texts: Sequence[str],
        *,
        model: str,
        key: str | None = None,
        role: EmbeddingRole = "query",
    ) -> EmbedResult:
        """Embeddings for `texts` as `role` (cached per text, model and role)."""
        ...

    def embed_cached_now(
        self,
        texts: Sequence[str],
        *,
        model: str,
        key: str | None = None,
        tab: Tab | None = None,
        role: EmbeddingRole = "query",
    ) -> EmbedResult | None:
        """`embed`'s result if this process already holds every text's vector, else None (like
        `chat_cached_now`)."""
        ...

    def settle(self, tab: Tab) -> None:
        """Record the accounting held on `tab`."""
        ...
