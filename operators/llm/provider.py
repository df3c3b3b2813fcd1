"""One logical provider call: breaker, budget, then attempts under limits, slot, timeout, retries.

`ProviderCaller.call(request)` is the only way a request reaches the provider:

1. the model's circuit breaker admits the call (`BreakerOpen` otherwise);
2. the flow's budget is reserved for the model, else for the request's fallback models in order
   (`BudgetExhausted` when none can be paid; the breaker of the model finally used admits it);
3. up to `llm_max_retries + 1` attempts (`operators.llm.retry`), each of which checks the breaker
   again, takes a slot of the loop's `AdaptiveConcurrency` (waiting up to
   `llm_max_limiter_wait_seconds`; a 429, timeout or 5xx cuts it and honours `Retry-After`),
   then reserves the provider's request/token limits (waiting up to the same bound), and runs
   for at most `llm_timeout_seconds`. Taking the slot first makes a request leave right after
   its limiter delay, and keeps the limiter's round trips to Redis within the concurrency
   limit. The whole sequence is bounded by `call_bound_seconds`;
4. the budget and the token limit get back what the answer's `usage` did not use, and the
   breaker hears how the call ended: an answer closes it, a provider failure after the retries
   counts towards opening it, a call stopped by a limit or the budget says nothing.

Every attempt is observed (`gen_ai_client_operation_duration_seconds`, with `error_type` on
failures; `gen_ai_client_token_usage`); every retry counts in `surgeflow_llm_retries_total`.
Provider failures become `LLMCallError`, unreadable bodies `LLMInvalidOutput`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai

from flows.settings import Settings
from operators.llm.accounting import Operation, observe_attempt, observe_tokens
from operators.llm.adaptive import AdaptiveConcurrency
from operators.llm.admission import Admission, BudgetHold
from operators.llm.breaker import Breakers, Permit
from operators.llm.metrics import IN_FLIGHT, RETRIES
from operators.llm.per_loop import PerLoop
from operators.llm.responses import llm_error
from operators.llm.retry import DROP_REASONS, RetryPolicy, exception_retry_after, retry_reason
from operators.llm.runner import call_bound_seconds
from operators.llm.types import LLMCallError, LLMError, LLMUnavailable, RateLimitWait

Send = Callable[[str, int], Awaitable[Any]]
"""Sends one attempt: (model, attempt number from 0) -> the client's response."""


@dataclass(frozen=True)
class ProviderRequest:
    """What to send and what it may use: the model (then fallbacks) and the tokens to reserve."""

    operation: Operation
    model: str
    tokens_in: int
    tokens_out: int
    send: Send
    usage: Callable[[Any], tuple[int, int]]
    fallback_models: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProviderReply:
    """The response, the model that answered it, and what it used and cost."""

    response: Any
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float


class ProviderCaller:
    """Runs `ProviderRequest`s with every guard of the LLM layer; shared by the worker loops."""

    def __init__(
        self,
        settings: Settings,
        *,
        admission: Admission,
        breakers: Breakers,
        policy: RetryPolicy,
        concurrency: Callable[[], AdaptiveConcurrency],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._settings = settings
        self._admission = admission
        self._breakers = breakers
        self._policy = policy
        self._concurrency = PerLoop(concurrency)
        self._clock = clock
        self._bound = call_bound_seconds(settings)

    def concurrency(self) -> AdaptiveConcurrency:
        """The running loop's adaptive concurrency limit."""
        return self._concurrency.get()

    async def call(self, request: ProviderRequest) -> ProviderReply:
        """The reply of the first model the budget pays for, or an `LLMError`."""
        permit, hold = await self._admit(request)
        used = hold.costs  # a failed call keeps its budget: the provider may have billed it
        try:
            reply = await self._guarded(request, permit)
            used = self._admission.spend(reply.model, reply.tokens_in, reply.tokens_out)
            return reply
        except LLMUnavailable:
            used = []  # stopped before the provider saw it
            raise
        finally:
            await self._admission.settle(hold.costs, used)

    async def _admit(self, request: ProviderRequest) -> tuple[Permit, BudgetHold]:
        """The breaker's permit and the budget's hold, for the model or a fallback model."""
        permit = self._breakers[request.model].admit()
        try:
            models = (request.model, *request.fallback_models)
            hold = await self._admission.budget(models, request.tokens_in, request.tokens_out)
        except BaseException:
            self._breakers[request.model].released(permit)
            raise
        if hold.model == request.model:
            return permit, hold
        self._breakers[request.model].released(permit)
        try:
            return self._breakers[hold.model].admit(), hold
        except BaseException:
            await self._admission.settle(hold.costs, [])
            raise

    async def _guarded(self, request: ProviderRequest, permit: Permit) -> ProviderReply:
        """The attempts within the call bound; the breaker hears the verdict."""
        breaker = self._breakers[permit.model]
        scope = asyncio.timeout(self._bound)
        try:
            async with scope:
                reply = await self._policy.run(
                    lambda attempt: self._attempt(request, permit, attempt),
                    on_retry=lambda reason, _: _count_retry(request.operation, reason),
                )
        except BaseException as exc:
            error = self._error(exc, scope.expired())
            if isinstance(error, LLMCallError):
                breaker.failed(permit)
            else:
                breaker.released(permit)
            if error is exc:
                raise
            raise error from exc
        breaker.succeeded(permit)
        return reply

    def _error(self, exc: BaseException, expired: bool) -> BaseException:
        """The `LLMError` a failed call raises; other exceptions (cancellation) stay as they are."""
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, TimeoutError):
            if expired:
                return LLMCallError(f"call exceeded its bound of {self._bound:.1f} s")
            return LLMCallError("request timed out after the allowed retries")
        if isinstance(exc, (openai.OpenAIError, ValueError)):
            return llm_error(exc)
        return exc

    async def _attempt(
        self, request: ProviderRequest, permit: Permit, attempt: int
    ) -> ProviderReply:
        """One attempt: breaker, then a concurrency slot, then the limits, then the request."""
        model = permit.model
        self._breakers[model].check(permit)
        limiter = self.concurrency()
        wait = self._settings.llm_max_limiter_wait_seconds
        acquired = False
        try:
            async with limiter.slot(timeout=wait):
                acquired = True
                return await self._limited(request, model, attempt, limiter)
        except TimeoutError as exc:
            if acquired:
                raise
            raise RateLimitWait(f"no concurrency slot within {wait:g} s") from exc

    async def _limited(
        self, request: ProviderRequest, model: str, attempt: int, limiter: AdaptiveConcurrency
    ) -> ProviderReply:
        """The request once the limits allow it; the token limit gets back what it did not use."""
        reserved = await self._admission.provider(model, request.tokens_in + request.tokens_out)
        used: list[Any] = reserved
        try:
            reply = await self._timed(request, model, attempt, limiter)
            used = self._admission.provider_used(model, reply.tokens_in + reply.tokens_out)
            return reply
        except Exception as exc:
            if retry_reason(exc) in ("rate_limited", "server_error", "connection"):
                used = self._admission.provider_used(model, 0)  # rejected: no tokens used
            raise
        finally:
            await self._admission.settle(reserved, used)

    async def _timed(
        self, request: ProviderRequest, model: str, attempt: int, limiter: AdaptiveConcurrency
    ) -> ProviderReply:
        """The request within `llm_timeout_seconds`, observed; `limiter` hears how it went."""
        started = self._clock()
        IN_FLIGHT.inc()
        try:
            async with asyncio.timeout(self._settings.llm_timeout_seconds):
                response = await request.send(model, attempt)
        except Exception as exc:
            observe_attempt(request.operation, model, self._clock() - started, _error_type(exc))
            if retry_reason(exc) in DROP_REASONS:
                limiter.on_drop(exception_retry_after(exc))
            raise
        finally:
            IN_FLIGHT.dec()
        observe_attempt(request.operation, model, self._clock() - started)
        limiter.on_success()
        tokens_in, tokens_out = request.usage(response)
        observe_tokens(request.operation, model, tokens_in, tokens_out)
        cost = self._admission.cost(model, tokens_in, tokens_out)
        return ProviderReply(response, model, tokens_in, tokens_out, cost)


def _count_retry(operation: Operation, reason: str) -> None:
    RETRIES.labels(operation=operation, reason=reason).inc()


def _error_type(exc: BaseException) -> str:
    """The `error_type` label of a failed attempt: the status code, or the exception's class."""
    if isinstance(exc, openai.APIStatusError):
        return str(exc.status_code)
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__
