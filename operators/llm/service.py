"""`LLMService` over an OpenAI-compatible endpoint: cached, merged, guarded, accounted.

`OpenAIService` composes the layer's parts (each in its own module):

- `structured.StructuredChat` and `embeddings.Embeddings`: the cache in front (canonical keys),
  structured outputs validated into pydantic models with one repair attempt, micro-batched
  embeddings;
- `singleflight.SingleFlight`: identical chat requests in flight on a loop make one provider
  call; the callers that joined it get `source="cache"`, `outcome="merged"` and no new cost;
- `provider.ProviderCaller`: the circuit breaker per model (`breaker`), the flow's budget with the
  fallback model and the provider's request/token limits (`admission`, over `limits`), the
  adaptive concurrency limit (`adaptive`), per-attempt timeouts and retries (`retry`);
- `accounting.Ledger`: tokens, cost, latency and outcome of every call, totals per flow and key.

The `openai` client is built with `max_retries=0`: retries are the layer's own, so every attempt
passes the guards and a call makes at most `llm_max_retries + 1` requests. One client per event
loop (in a flow: one per worker), created lazily. Every dependency can be injected (clients,
cache, limiter, breakers, ledger, retry policy with its sleep and random source, concurrency,
clock); by default they are built from the settings. Failures are `LLMError`s whose `reason`
tells the caller why it has to use its rules engine (`operators.llm.types`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import openai

from operators.config.settings import Settings
from operators.llm.accounting import Ledger, Operation, record_fallback
from operators.llm.adaptive import AdaptiveConcurrency
from operators.llm.admission import Admission
from operators.llm.breaker import Breakers
from operators.llm.cache import PromptCache
from operators.llm.embeddings import Embeddings
from operators.llm.limits import RateLimiter, build_limiter
from operators.llm.pricing import PriceTable
from operators.llm.provider import ProviderCaller
from operators.llm.redis_cache import build_cache, front_of
from operators.llm.retry import RetryPolicy
from operators.llm.served import Served, TolerantCache, failure_record
from operators.llm.singleflight import SingleFlight
from operators.llm.structured import ChatSpec, StructuredChat
from operators.llm.types import (
    ChatResult,
    EmbedResult,
    LLMError,
    LLMService,
    LLMUnavailable,
    T,
    Tab,
)
from operators.runtime.per_loop import PerLoop
from schemas.enrichment import Enrichment

log = logging.getLogger(__name__)

DEFAULT_FLOW = "default"
"""Flow name of a service built without one (budgets and accounting are per flow)."""

EMBED_PROMPT_VERSION = "embeddings-v1"
"""`prompt_version` of embedding results (embeddings have no prompt)."""

DEFAULT_API_KEY = "not-needed"
"""API key sent when only a base URL is configured (local OpenAI-compatible servers)."""

ClientFactory = Callable[[], openai.AsyncOpenAI]


def default_client_factory(settings: Settings) -> ClientFactory:
    """Builds `AsyncOpenAI` from settings: base URL, key, attempt timeout, no client retries."""
    key = settings.llm.api_key.get_secret_value() if settings.llm.api_key else DEFAULT_API_KEY

    def factory() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=settings.llm.base_url,
            api_key=key,
            timeout=settings.llm.timeout_seconds,
            max_retries=0,
        )

    return factory


def pressure_scope(settings: Settings) -> str:
    """The scope processes share concurrency cuts in: the provider endpoint (host and port)."""
    parts = urlsplit(settings.llm.base_url or "https://api.openai.com/v1")
    return parts.netloc.rsplit("@", 1)[-1] or "openai"


class OpenAIService:
    """Structured chat completions and embeddings of one flow, through every guard of the layer."""

    def __init__(
        self,
        settings: Settings,
        *,
        flow: str = DEFAULT_FLOW,
        cache: PromptCache | None = None,
        prices: PriceTable | None = None,
        client_factory: ClientFactory | None = None,
        limiter: RateLimiter | None = None,
        breakers: Breakers | None = None,
        ledger: Ledger | None = None,
        retry: RetryPolicy | None = None,
        concurrency: Callable[[], AdaptiveConcurrency] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._settings = settings
        self.flow = flow
        self._cache = cache if cache is not None else build_cache(settings, flow=flow)
        self._front = front_of(self._cache)
        self._prices = prices or PriceTable.from_settings(settings.llm)
        self.limiter = limiter if limiter is not None else build_limiter(settings, flow=flow)
        self.breakers = breakers or Breakers.from_settings(settings.llm, flow=flow)
        self.ledger = ledger or Ledger()
        self._clock = clock
        factory = client_factory or default_client_factory(settings)
        self._clients = PerLoop(factory, close=lambda client: client.close())
        scope = pressure_scope(settings)
        self.caller = ProviderCaller(
            settings.llm,
            admission=Admission(settings.llm, flow=flow, limiter=self.limiter, prices=self._prices),
            breakers=self.breakers,
            policy=retry or RetryPolicy.from_settings(settings.llm),
            concurrency=concurrency
            or (lambda: AdaptiveConcurrency.from_settings(settings, scope=scope, flow=flow)),
            clock=clock,
        )
        tolerant = TolerantCache(self._cache, settings.cache.ttl_seconds)
        self._chat = StructuredChat(
            client=self.client,
            caller=self.caller,
            cache=tolerant,
            fallback_model=settings.llm.model_fallback or None,
        )
        self._embeddings = Embeddings(
            settings.llm,
            client=self.client,
            caller=self.caller,
            cache=tolerant,
            prices=self._prices,
        )
        self._flights: PerLoop[SingleFlight[str, Served[Any]]] = PerLoop(SingleFlight)

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
        key: str | None = None,
    ) -> ChatResult[T]:
        started = self._clock()
        limit = max_tokens or self._settings.llm.max_tokens
        spec = ChatSpec(messages, response_model, model, prompt_version, limit)
        served = await self._chat.lookup(spec) or await self._produce(spec, key, started)
        enrichment = self._finish("chat", served, prompt_version, key, started)
        return ChatResult(served.value, enrichment)

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
    ) -> ChatResult[T] | None:
        """The answer already in this process's cache, found on the calling thread without the
        event loop, accounted like any hit (on `tab` when given); None when it is not there
        (`chat_structured` then asks Redis, an identical call in flight, or the provider)."""
        if self._front is None:
            return None
        started = self._clock()
        limit = max_tokens or self._settings.llm.max_tokens
        spec = ChatSpec(messages, response_model, model, prompt_version, limit)
        served = self._chat.lookup_now(self._front, spec)
        if served is None:
            return None
        enrichment = self._finish("chat", served, prompt_version, key, started, tab)
        return ChatResult(served.value, enrichment)

    async def embed(
        self, texts: Sequence[str], *, model: str, key: str | None = None
    ) -> EmbedResult:
        started = self._clock()
        try:
            served = await self._embeddings.embed(texts, model)
        except LLMError as exc:
            self._failed("embeddings", model, exc, key, started, joined=False)
            raise
        enrichment = self._finish("embeddings", served, EMBED_PROMPT_VERSION, key, started)
        return EmbedResult(served.value, enrichment)

    def embed_cached_now(
        self, texts: Sequence[str], *, model: str, key: str | None = None, tab: Tab | None = None
    ) -> EmbedResult | None:
        """Every text's vector from this process's cache, like `chat_cached_now`; None when one
        is not there."""
        if self._front is None:
            return None
        started = self._clock()
        served = self._embeddings.lookup_now(self._front, texts, model)
        if served is None:
            return None
        enrichment = self._finish("embeddings", served, EMBED_PROMPT_VERSION, key, started, tab)
        return EmbedResult(served.value, enrichment)

    def settle(self, tab: Tab) -> None:
        """Record the calls accounted on `tab`."""
        for record in tab.records:
            self.ledger.record(record)
        tab.records.clear()

    async def _produce(self, spec: ChatSpec[T], key: str | None, started: float) -> Served[T]:
        """The provider's answer, or that of the identical call already in flight (merged)."""
        flight = self._flights.get()
        request_key = spec.key()
        joined = request_key in flight
        try:
            served, _ = await flight.run(request_key, lambda: self._chat.produce(spec))
        except LLMError as exc:
            self._failed("chat", spec.model, exc, key, started, joined)
            raise
        return served.joined() if joined else served

    def _finish(
        self,
        operation: Operation,
        served: Served[Any],
        prompt_version: str,
        key: str | None,
        started: float,
        tab: Tab | None = None,
    ) -> Enrichment:
        """Account a served call (on `tab` when given) and describe it for the output."""
        latency = max(self._clock() - started, 0.0)
        record = served.record(self.flow, operation, key, latency)
        if tab is None:
            self.ledger.record(record)
        else:
            tab.records.append(record)
        if served.outcome == "fallback":
            record_fallback(self.flow, served.fallback_reason or "budget", "fallback_model")
        return served.enrichment(prompt_version, latency)

    def _failed(
        self,
        operation: Operation,
        model: str,
        exc: LLMError,
        key: str | None,
        started: float,
        joined: bool,
    ) -> None:
        """Account a call that sends its caller to the rules engine."""
        latency = max(self._clock() - started, 0.0)
        record = failure_record(
            self.flow, operation, model, exc, key=key, latency_seconds=latency, joined=joined
        )
        self.ledger.record(record)
        record_fallback(self.flow, exc.reason, "rules")
        log.debug("%s call of %s failed (%s): %s", operation, model, exc.reason, exc)


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
        key: str | None = None,
    ) -> ChatResult[T]:
        raise LLMUnavailable(DISABLED_REASON)

    def chat_cached_now(self, **request: Any) -> None:
        return None

    def embed_cached_now(self, texts: Sequence[str], **request: Any) -> None:
        return None

    def settle(self, tab: Tab) -> None:
        return None

    async def embed(
        self, texts: Sequence[str], *, model: str, key: str | None = None
    ) -> EmbedResult:
        raise LLMUnavailable(DISABLED_REASON)


def build_service(
    settings: Settings, cache: PromptCache | None = None, *, flow: str = DEFAULT_FLOW
) -> LLMService:
    """`OpenAIService` of `flow` when an endpoint is configured (`settings.llm.enabled`)."""
    if settings.llm.enabled:
        return OpenAIService(settings, flow=flow, cache=cache)
    return DisabledService()
