"""Reading a provider's answers for `operators.llm.service.OpenAIService`.

Decoding chat completions and embedding lists into plain values, validating a structured answer
against its response model, packing an answer into its cache entry and unpacking it again, and
turning a client failure into an `LLMError`. An unusable answer raises `LLMInvalidOutput`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Generic

import openai
from pydantic import ValidationError

from operators.llm.types import LLMCallError, LLMError, LLMInvalidOutput, T

log = logging.getLogger(__name__)

_INVALID_OUTPUT_ERRORS = (
    openai.APIResponseValidationError,
    openai.LengthFinishReasonError,
    openai.ContentFilterFinishReasonError,
)


def llm_error(exc: BaseException) -> LLMError:
    """The LLM-layer error of a client failure (after the retries)."""
    if isinstance(exc, openai.APITimeoutError):
        return LLMCallError("request timed out after the allowed retries")
    if isinstance(exc, openai.APIConnectionError):
        return LLMCallError(f"connection failed: {exc}")
    if isinstance(exc, openai.APIStatusError):
        return LLMCallError(f"status {exc.status_code}: {exc.message}")
    if isinstance(exc, openai.OpenAIError) and not isinstance(exc, _INVALID_OUTPUT_ERRORS):
        return LLMCallError(f"{type(exc).__name__}: {exc}")
    return LLMInvalidOutput(f"unreadable response: {exc}")  # includes an unparseable body


def chat_answer(completion: Any, requested_model: str) -> tuple[str, str, int, int]:
    """(content, model, tokens_in, tokens_out) of a completion, or `LLMInvalidOutput`."""
    try:
        choice = completion.choices[0]
        content = choice.message.content
        refusal = getattr(choice.message, "refusal", None)
    except (AttributeError, IndexError, TypeError) as exc:
        raise LLMInvalidOutput(f"response is not a chat completion: {exc}") from exc
    if refusal:
        raise LLMInvalidOutput(f"model refused: {str(refusal)[:200]}")
    if not isinstance(content, str) or not content.strip():
        raise LLMInvalidOutput("response has no content")
    answered_by = getattr(completion, "model", None) or requested_model
    return (
        content,
        str(answered_by),
        usage_tokens(completion, "prompt_tokens"),
        usage_tokens(completion, "completion_tokens"),
    )


def usage_tokens(response: Any, field: str) -> int:
    """The positive integer `usage.<field>` of a response, else 0."""
    value = getattr(getattr(response, "usage", None), field, None)
    return value if isinstance(value, int) and value > 0 else 0


def embedding_vectors(response: Any, expected: int) -> list[list[float]]:
    """The `expected` vectors of an embeddings response, in input order, or `LLMInvalidOutput`."""
    try:
        data = sorted(response.data, key=lambda item: item.index)
        vectors = [[float(x) for x in item.embedding] for item in data]
    except (AttributeError, TypeError, ValueError) as exc:
        raise LLMInvalidOutput(f"response is not an embeddings list: {exc}") from exc
    if len(vectors) != expected:
        raise LLMInvalidOutput(f"expected {expected} embeddings, got {len(vectors)}")
    return vectors


def validate_answer(response_model: type[T], content: str) -> T:
    """`content` parsed as `response_model`, or `LLMInvalidOutput`."""
    try:
        return response_model.model_validate_json(content)
    except ValidationError as exc:
        raise LLMInvalidOutput(f"answer does not match {response_model.__name__}: {exc}") from exc


def pack_answer(content: str, model: str, usage: dict[str, Any]) -> bytes:
    """The cache entry of a chat answer: its content, the model that gave it and its usage."""
    entry = {"content": content, "model": model, **usage}
    return json.dumps(entry).encode("utf-8")


@dataclass(frozen=True)
class CachedAnswer(Generic[T]):
    """A cached chat answer: the value, the model that gave it and what it cost then."""

    value: T
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


def unpack_answer(raw: bytes | None, response_model: type[T]) -> CachedAnswer[T] | None:
    """The cached answer with its model and usage; None when absent or no longer valid."""
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
        value = response_model.model_validate_json(entry["content"])
        return CachedAnswer(
            value,
            str(entry["model"]),
            _count(entry.get("tokens_in")),
            _count(entry.get("tokens_out")),
            max(float(entry.get("cost_usd") or 0.0), 0.0),
        )
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring an unreadable cache entry for %s", response_model.__name__)
        return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0
