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

Each task (`classify`, `route`, `reply`, `embeddings`) goes to its endpoint
(`settings.llm.endpoint(task)`: its own base URL, key and structured-output dialect, each falling
back to the shared `OPENAI_*` endpoint); a call of a task without an endpoint raises
`LLMUnavailable`. The `openai` client is built with `max_retries=0`: retries are the layer's own,
so every attempt passes the guards and a call makes at most `llm_max_retries + 1` requests. One
client per endpoint and event loop (in a flow: per worker), created lazily. Every dependency
can be injected (clients, cache, limiter, breakers, ledger, retry policy with its sleep and
random source, concurrency, clock); by default they are built from the settings. Failures are
`LLMError`s whose `reason` tells the caller why it has to use its rules engine
(`operators.llm.types`).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import openai

from operators.config.llm import TASKS, EmbeddingRole, Endpoint, Task
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


def endpoint_client_factory(endpoint: Endpoint, timeout_seconds: float) -> ClientFactory:
    """Builds `AsyncOpenAI` for `endpoint`: base URL, key, attempt timeout, no client retries."""
    key = endpoint.api_key.get_secret_value() if endpoint.api_key else DEFAULT_API_KEY

    def factory() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=endpoint.base_url, api_key=key, timeout=timeout_seconds, max_retries=0
        )

    return factory


def default_client_factory(settings: Settings) -> ClientFactory:
    """Builds `AsyncOpenAI` for the shared endpoint (`OPENAI_BASE_URL`, `OPENAI_API_KEY`)."""
    shared = Endpoint(settings.llm.base_url, settings.llm.api_key, settings.llm.structured_output)
    return endpoint_client_factory(shared, settings.llm.timeout_seconds)


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
        self._client_factory = client_factory
        self._shared = Endpoint(
            settings.llm.base_url, settings.llm.api_key, settings.llm.structured_output
        )
        self._endpoints: dict[Task | None, Endpoint | None] = {
            task: settings.llm.endpoint(task) for task in TASKS
        }
        self._endpoints[None] = self._shared if settings.llm.enabled else None
        self._clients: dict[Endpoint, PerLoop[openai.AsyncOpenAI]] = {}
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
        self._tolerant = TolerantCache(self._cache, settings.cache.ttl_seconds)
        self._chats: dict[Task | None, StructuredChat] = {}
        embeddings_url = (settings.llm.endpoint("embeddings") or self._shared).base_url
        self._embeddings = Embeddings(
            settings.llm,
            client=lambda: self.client("embeddings"),
            endpoint=embeddings_url,
            caller=self.caller,
            cache=self._tolerant,
            prices=self._prices.at(embeddings_url),
        )
        self._flights: PerLoop[SingleFlight[str, Served[Any]]] = PerLoop(SingleFlight)

    @property
    def enabled(self) -> bool:
        return True

    @property
    def cache(self) -> PromptCache:
        return self._cache

    def endpoint(self, task: Task | None = None) -> Endpoint:
        """Where `task`'s calls go (None: the shared endpoint); `LLMUnavailable` when nowhere."""
        endpoint = self._endpoints[task]
        if endpoint is None:
            raise LLMUnavailable(f"no OpenAI-compatible endpoint is configured for {task}")
        return endpoint

    def client(self, task: Task | None = None) -> openai.AsyncOpenAI:
        """The client of `task`'s endpoint on the running event loop, created on first use."""
        endpoint = self.endpoint(task)
        clients = self._clients.get(endpoint)
        if clients is None:
            factory = self._client_factory or endpoint_client_factory(
                endpoint, self._settings.llm.timeout_seconds
            )
            clients = self._clients[endpoint] = PerLoop(factory, close=lambda c: c.close())
        return clients.get()

    async def aclose(self) -> None:
        """Close the running loop's clients (their connection pools)."""
        for clients in list(self._clients.values()):
            await clients.aclose()

    def _chat(self, task: Task | None) -> StructuredChat:
        chat = self._chats.get(task)
        if chat is None:
            self.endpoint(task)  # LLMUnavailable before anything is built for nowhere
            chat = self._chats[task] = StructuredChat(
                client=lambda: self.client(task),
                caller=self.caller,
                cache=self._tolerant,
                fallback_model=self._settings.llm.model_fallback or None,
                endpoint=self.endpoint(task).base_url,
            )
        return chat

    def _spec(
        self,
        task: Task | None,
        messages: list[dict[str, str]],
        response_model: type[T],
        model: str,
        prompt_version: str,
        max_tokens: int | None,
    ) -> ChatSpec[T]:
        limit = max_tokens or self._settings.llm.max_tokens
        dialect = self.endpoint(task).structured_output
        return ChatSpec(messages, response_model, model, prompt_version, limit, dialect)

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
        started = self._clock()
        spec = self._spec(task, messages, response_model, model, prompt_version, max_tokens)
        chat = self._chat(task)
        try:
            served = await chat.lookup(spec) or await self._produce(chat, spec, key, started)
        except LLMError as exc:
            raise self._charged(exc, prompt_version, started) from exc
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
        task: Task | None = None,
    ) -> ChatResult[T] | None:
        """The answer already in this process's cache, found on the calling thread without the
        event loop, accounted like any hit (on `tab` when given); None when it is not there
        (`chat_structured` then asks Redis, an identical call in flight, or the provider)."""
        if self._front is None or self._endpoints[task] is None:
            return None
        started = self._clock()
        spec = self._spec(task, messages, response_model, model, prompt_version, max_tokens)
        served = self._chat(task).lookup_now(self._front, spec)
        if served is None:
            return None
        enrichment = self._finish("chat", served, prompt_version, key, started, tab)
        return ChatResult(served.value, enrichment)

    def _with_role(self, texts: Sequence[str], role: EmbeddingRole) -> list[str]:
        """`texts` as sent: with the role's prefix (`SURGEFLOW_LLM_EMBEDDINGS_*_PREFIX`), so the
        cache keeps a vector per text, model and role."""
        llm = self._settings.llm
        prefix = llm.embeddings_query_prefix if role == "query" else llm.embeddings_passage_prefix
        return [prefix + text for text in texts] if prefix else list(texts)

    async def embed(
        self,
        texts: Sequence[str],
        *,
        model: str,
        key: str | None = None,
        role: EmbeddingRole = "query",
    ) -> EmbedResult:
        started = self._clock()
        try:
            self.endpoint("embeddings")
            served = await self._embeddings.embed(self._with_role(texts, role), model)
        except LLMError as exc:
            self._failed("embeddings", model, exc, key, started, joined=False)
            raise
        enrichment = self._finish("embeddings", served, EMBED_PROMPT_VERSION, key, started)
        return EmbedResult(served.value, enrichment)

    def embed_cached_now(
        self,
        texts: Sequence[str],
        *,
        model: str,
        key: str | None = None,
        tab: Tab | None = None,
        role: EmbeddingRole = "query",
    ) -> EmbedResult | None:
        """Every text's vector from this process's cache, like `chat_cached_now`; None when one
        is not there."""
        if self._front is None or self._endpoints["embeddings"] is None:
            return None
        started = self._clock()
        served = self._embeddings.lookup_now(self._front, self._with_role(texts, role), model)
        if served is None:
            return None
        enrichment = self._finish("embeddings", served, EMBED_PROMPT_VERSION, key, started, tab)
        return EmbedResult(served.value, enrichment)

    def settle(self, tab: Tab) -> None:
        """Record the calls accounted on `tab`."""
        for record in tab.records:
            self.ledger.record(record)
        tab.records.clear()

    async def _produce(
        self, chat: StructuredChat, spec: ChatSpec[T], key: str | None, started: float
    ) -> Served[T]:
        """The provider's answer, or that of the identical call already in flight (merged)."""
        flight = self._flights.get()
        request_key = spec.key()
        joined = request_key in flight
        try:
            served, _ = await flight.run(request_key, lambda: chat.produce(spec))
        except LLMError as exc:
            self._failed("chat", spec.model, exc, key, started, joined)
            if joined and exc.spent is not None:
                unpaid = copy.copy(exc)  # the caller that made the call paid for it, not this one
                unpaid.spent = None
                raise unpaid from exc
            raise
        return served.joined() if joined else served

    def _charged(self, exc: LLMError, prompt_version: str, started: float) -> LLMError:
        """`exc` for this caller: with `paid` when its call was answered and paid for (an answer
        that did not validate, a truncated or refused one), so the output can carry those
        tokens (a caller that joined the call gets no `spent`, see `_produce`)."""
        spent, charged = exc.spent, copy.copy(exc)
        charged.paid = None
        if spent is not None and (spent.tokens_in or spent.tokens_out or spent.cost_usd):
            charged.paid = Enrichment(
                source="llm",
                model=spent.model[:100] or None,
                prompt_version=prompt_version,
                tokens_in=spent.tokens_in,
                tokens_out=spent.tokens_out,
                cost_usd=spent.cost_usd,
                latency_ms=max(self._clock() - started, 0.0) * 1000.0,
                outcome="fallback",
                fallback_reason=exc.reason,
            )
        return charged

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
        task: Task | None = None,
    ) -> ChatResult[T]:
        raise LLMUnavailable(DISABLED_REASON)

    def chat_cached_now(self, **request: Any) -> None:
        return None

    def embed_cached_now(self, texts: Sequence[str], **request: Any) -> None:
        return None

    def settle(self, tab: Tab) -> None:
        return None

    async def embed(
        self,
        texts: Sequence[str],
        *,
        model: str,
        key: str | None = None,
        role: EmbeddingRole = "query",
    ) -> EmbedResult:
        raise LLMUnavailable(DISABLED_REASON)


def build_service(
    settings: Settings, cache: PromptCache | None = None, *, flow: str = DEFAULT_FLOW
) -> LLMService:
    """`OpenAIService` of `flow` when an endpoint is configured (`settings.llm.enabled`)."""
    if settings.llm.enabled:
        return OpenAIService(settings, flow=flow, cache=cache)
    return DisabledService()
