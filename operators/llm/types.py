"""The interface every LLM-using step codes against (no Bytewax, no network here).

`LLMService` is implemented by `operators.llm.service.OpenAIService` (an OpenAI-compatible
endpoint through `openai.AsyncOpenAI`, with the cache in front) and by `DisabledService` (no
endpoint configured: every call raises `LLMUnavailable`, and the caller uses its rules engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel

from schemas.enrichment import Enrichment

T = TypeVar("T", bound=BaseModel)


class LLMError(Exception):
    """Base of every LLM-layer failure; callers catch it and fall back to their rules engine."""


class LLMUnavailable(LLMError):
    """No endpoint is configured, or the layer decided not to call it."""


class LLMCallError(LLMError):
    """The provider call failed after the allowed retries (status, timeout, connection)."""


class LLMInvalidOutput(LLMError):
    """The provider answered, but not with output that validates against the requested model."""


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


class LLMService(Protocol):
    """What steps may ask of the LLM layer."""

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
    ) -> ChatResult[T]:
        """One chat completion whose JSON answer is validated into `response_model`."""
        ...

    async def embed(self, texts: Sequence[str], *, model: str) -> EmbedResult:
        """Embeddings for `texts` (cached per text and model)."""
        ...
