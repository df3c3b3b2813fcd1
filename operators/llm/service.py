"""`LLMService` over an OpenAI-compatible endpoint, with the prompt cache in front.

`OpenAIService` keeps one `openai.AsyncOpenAI` per event loop (in a flow: one per worker's
`AsyncRunner`), created lazily on the loop that first uses it, because an async HTTP connection
pool belongs to the loop it was opened on. Retries with backoff and `Retry-After` are the client's;
every call is also bounded by `call_bound_seconds`. An answer is written to the cache before it is
returned, so a replay is served from the cache at no new cost. Provider failures become
`LLMCallError`, unusable answers `LLMInvalidOutput`; a failing cache only costs its hits. Answers
are decoded, validated and packed for the cache by `operators.llm.responses`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import openai

from flows.settings import Settings
from operators.llm.cache import (
    PromptCache,
    chat_key,
    embedding_key,
    pack_vector,
    unpack_vector,
)
from operators.llm.per_loop import PerLoop
from operators.llm.pricing import PriceTable
from operators.llm.redis_cache import build_cache
from operators.llm.responses import (
    chat_answer,
    embedding_vectors,
    llm_error,
    pack_answer,
    unpack_answer,
    usage_tokens,
    validate_answer,
)
from operators.llm.runner import call_bound_seconds
from operators.llm.types import (
    ChatResult,
    EmbedResult,
    LLMCallError,
    LLMService,
    LLMUnavailable,
    T,
)
from schemas.enrichment import Enrichment

log = logging.getLogger(__name__)

EMBED_PROMPT_VERSION = "embeddings-v1"
"""`prompt_version` of embedding results (embeddings have no prompt)."""

DEFAULT_API_KEY = "not-needed"
"""API key sent when only a base URL is configured (local OpenAI-compatible servers)."""

ClientFactory = Callable[[], openai.AsyncOpenAI]


def default_client_factory(settings: Settings) -> ClientFactory:
    """Builds `AsyncOpenAI` from settings: base URL, key, timeout and retries."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else DEFAULT_API_KEY

    def factory() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=settings.openai_base_url,
            api_key=key,
            timeout=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
        )

    return factory


class OpenAIService:
    """Structured chat completions and embeddings, cached, cost-accounted, bounded in time."""

    def __init__(
        self,
        settings: Settings,
        *,
        cache: PromptCache | None = None,
        prices: PriceTable | None = None,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._settings = settings
        self._cache = cache if cache is not None else build_cache(settings)
        self._prices = prices or PriceTable.from_settings(settings)
        self._factory = client_factory or default_client_factory(settings)
        self._clock = clock
        self._bound = call_bound_seconds(settings)
        self._clients = PerLoop(self._factory, close=lambda client: client.close())

    @property
    def enabled(self) -> bool:
        return True

    @property
    def cache(self) -> PromptCache:
        return self._cache

    def client(self) -> openai.AsyncOpenAI:
        """The client of the running event loop, created on first use."""
        return self._clients.get()

    async def aclose(self) -> None:
        """Close the running loop's client (its connection pool)."""
        await self._clients.aclose()

    async def chat_structured(
        self,
        *,
        messages: list[dict[str, str]],
        response_model: type[T],
        model: str,
        prompt_version: str,
        max_tokens: int | None = None,
    ) -> ChatResult[T]:
        started = self._clock()
        params: dict[str, Any] = {
            "max_tokens": max_tokens or self._settings.llm_max_tokens,
            "temperature": 0,
            "response_format": _response_format(response_model),
        }
        key = chat_key(
            model=model, messages=messages, parameters=params, prompt_version=prompt_version
        )
        hit = unpack_answer((await self._cache_get([key])).get(key), response_model)
        if hit is not None:
            value, answered_by = hit
            return ChatResult(
                value, self._enrichment("cache", answered_by, prompt_version, started)
            )
        request = self.client().chat.completions.create(model=model, messages=messages, **params)
        content, answered_by, tokens_in, tokens_out = chat_answer(await self._call(request), model)
        value = validate_answer(response_model, content)
        cost = self._prices.cost(model, tokens_in, tokens_out)
        usage = {"tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": cost}
        await self._cache_set({key: pack_answer(content, answered_by, usage)})
        enrichment = self._enrichment("llm", answered_by, prompt_version, started, usage)
        return ChatResult(value, enrichment)

    async def embed(self, texts: Sequence[str], *, model: str) -> EmbedResult:
        started = self._clock()
        keys = [embedding_key(model=model, text=text) for text in texts]
        cached = await self._cache_get(list(dict.fromkeys(keys)))
        found = {k: unpack_vector(v) for k, v in cached.items()}
        misses = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        usage = {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
        if misses:
            request = self.client().embeddings.create(input=misses, model=model)
            response = await self._call(request)
            fresh = dict(zip(misses, embedding_vectors(response, len(misses)), strict=True))
            stored = {embedding_key(model=model, text=t): v for t, v in fresh.items()}
            await self._cache_set({k: pack_vector(v) for k, v in stored.items()})
            found.update(stored)
            tokens = usage_tokens(response, "prompt_tokens")
            usage.update(tokens_in=tokens, cost_usd=self._prices.cost(model, tokens))
        source = "llm" if misses else "cache"
        enrichment = self._enrichment(source, model, EMBED_PROMPT_VERSION, started, usage)
        return EmbedResult([found[k] for k in keys], enrichment)

    async def _call(self, request: Awaitable[Any]) -> Any:
        """Await a client request within the call bound; failures become `LLMError`s."""
        try:
            async with asyncio.timeout(self._bound):
                return await request
        except TimeoutError as exc:
            raise LLMCallError(f"call exceeded its bound of {self._bound:.1f} s") from exc
        except (openai.OpenAIError, ValueError) as exc:
            raise llm_error(exc) from exc

    async def _cache_get(self, keys: list[str]) -> dict[str, bytes]:
        try:
            return await self._cache.get_many(keys)
        except Exception:
            log.warning("cache lookup failed; calling the provider", exc_info=True)
            return {}

    async def _cache_set(self, items: dict[str, bytes]) -> None:
        try:
            await self._cache.set_many(items, self._settings.cache_ttl_seconds)
        except Exception:
            log.warning("cache write failed; the answer is used uncached", exc_info=True)

    def _enrichment(
        self,
        source: str,
        model: str,
        prompt_version: str,
        started: float,
        usage: dict[str, Any] | None = None,
    ) -> Enrichment:
        latency_ms = max(self._clock() - started, 0.0) * 1000.0
        return Enrichment(
            source=source,
            model=model[:100],
            prompt_version=prompt_version,
            latency_ms=latency_ms,
            **(usage or {}),
        )


DISABLED_REASON = "no OpenAI-compatible endpoint is configured"


class DisabledService:
    """The service when no endpoint is configured: every call raises `LLMUnavailable`."""

    @property
    def enabled(self) -> bool:
        return False

    async def chat_structured(
        self,
        *,
        messages: list[dict[str, str]],
        response_model: type[T],
        model: str,
        prompt_version: str,
        max_tokens: int | None = None,
    ) -> ChatResult[T]:
        raise LLMUnavailable(DISABLED_REASON)

    async def embed(self, texts: Sequence[str], *, model: str) -> EmbedResult:
        raise LLMUnavailable(DISABLED_REASON)


def build_service(settings: Settings, cache: PromptCache | None = None) -> LLMService:
    """`OpenAIService` when an endpoint is configured (`settings.llm_enabled`), else disabled."""
    if settings.llm_enabled:
        return OpenAIService(settings, cache=cache)
    return DisabledService()


def _response_format(response_model: type[Any]) -> dict[str, Any]:
    schema = response_model.model_json_schema()
    return {
        "type": "json_schema",
        "json_schema": {"name": response_model.__name__, "schema": schema, "strict": False},
    }
