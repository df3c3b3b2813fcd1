"""One logical provider call: breaker, budget, then attempts under limits, slot, timeout, retries.

`ProviderCaller.call(request)` is the only way a request reaches the provider:

1. the model's circuit breaker admits the call (`BreakerOpen` otherwise);
2. the flow's budget is reserved for the model, else for the request's fallback models in order
   (`BudgetExhausted` when none can be paid; the breaker of the model finally used admits it);
3. up to `llm_max_retries + 1` attempts (`operators.llm.retry`), each of which checks the breaker
   again, takes a slot of the loop's `AdaptiveConcurrency` (waiting up to
   `llm_max_limiter_wait_seconds`; a 429, timeout or 5xx cuts it and honours `Retry-After`),
   then reserves the provider's request/token limits (waiting up to the same bound), and runs
   for at most `llm_timeout_seconds` (or the request's own timeout: an embedding batch's grows
   with its size; such a request may also ask for timeouts not to be retried). Taking the slot
   first makes a request leave right after its limiter delay, and keeps the limiter's round
   trips to Redis within the concurrency limit. A call waiting for a slot gives up as soon as
   the breaker opens. The whole sequence is bounded by `call_bound_seconds` (at the request's
   timeout);
4. the budget and the token limit get back what the answer's `usage` did not use, and the
   breaker hears how the call ended: an answer closes it, a provider failure after the retries
   counts towards opening it, a call stopped by a limit or the budget says nothing. Two
   failures are heard at once, attempt by attempt: a timed-out attempt counts as a failed call
   (so a hung endpoint opens the breaker one timeout after it stalls, instead of holding every
   retry for a full timeout first), and a status no retry can cure (401, 403, 404, 405, 407,
   410: a wrong base URL, path, key or model, or not an OpenAI-compatible server) opens it at
   once, with one ERROR naming the status and the base URL (without credentials); so does a
   status whose text says the request is unsupported (a response-format dialect this server
   does not speak), with the server's text.

A call that reached the provider and failed (other than with a 429) ends with that failure
even when a later attempt is stopped by a limit or the opened breaker: `LLMTimeout`
(`timeout`) when an attempt timed out, else `LLMCallError` (`call_error`), not
`rate_limit_wait`.

Every attempt is observed (`gen_ai_client_operation_duration_seconds`, with `error_type` on
failures; `gen_ai_client_token_usage`); every retry counts in `surgeflow_llm_retries_total`.
Provider failures become `LLMCallError` (timeouts `LLMTimeout`), unreadable bodies
`LLMInvalidOutput`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from operators.config.llm import LLMSettings
from operators.config.redact import redacted_text
from operators.llm.accounting import Operation, observe_attempt, observe_tokens
from operators.llm.adaptive import AdaptiveConcurrency
from operators.llm.admission import Admission, BudgetHold
from operators.llm.breaker import Breakers, Permit
from operators.llm.metrics import IN_FLIGHT, RETRIES
from operators.llm.responses import llm_error
from operators.llm.retry import (
    DROP_REASONS,
    RetryPolicy,
    exception_retry_after,
    retry_reason,
    unsupported_request,
)
from operators.llm.types import (
    LLMCallError,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    RateLimitWait,
)
from operators.runtime.metrics import Children
from operators.runtime.per_loop import PerLoop
from operators.runtime.runner import call_bound_seconds

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
    endpoint: str | None = None
    """The base URL it goes to, for logs and prices (None: the shared `OPENAI_BASE_URL`)."""
    timeout_seconds: float | None = None
    """Each attempt's timeout (None: `llm_timeout_seconds`); the call's bound follows it."""
    retry_timeouts: bool = True
    """False: a timed-out attempt ends the call (`LLMTimeout`) instead of being retried."""

    def timeout(self, llm: LLMSettings) -> float:
        """The timeout of each attempt."""
        return llm.timeout_seconds if self.timeout_seconds is None else self.timeout_seconds


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
        llm: LLMSettings,
        *,
        admission: Admission,
        breakers: Breakers,
        policy: RetryPolicy,
        concurrency: Callable[[], AdaptiveConcurrency],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._llm = llm
        self._admission = admission
        self._breakers = breakers
        self._policy = policy
        self._concurrency = PerLoop(concurrency)
        self._clock = clock
        self._bound = call_bound_seconds(llm)
        self._endpoint = endpoint_for_log(llm.base_url)
        self._flow = admission.flow
        self._in_flight = IN_FLIGHT.labels(self._flow)
        self._retries = Children(RETRIES, self._flow)

    def concurrency(self) -> AdaptiveConcurrency:
        """The running loop's adaptive concurrency limit."""
        return self._concurrency.get()

    async def call(self, request: ProviderRequest) -> ProviderReply:
        """The reply of the first model the budget pays for, or an `LLMError`."""
        permit, hold = await self._admit(request)
        used = hold.costs  # a failed call keeps its budget: the provider may have billed it
        try:
            reply = await self._guarded(request, permit)
            used = self._admission.spend(
                reply.model, reply.tokens_in, reply.tokens_out, request.endpoint
            )
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
            hold = await self._admission.budget(
                models, request.tokens_in, request.tokens_out, request.endpoint
            )
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
        met = _Met()
        bound = self._bound
        if request.timeout_seconds is not None:
            bound = call_bound_seconds(self._llm, request.timeout_seconds)
        scope = asyncio.timeout(bound)
        try:
            async with scope:
                reply = await self._policy.run(
                    lambda attempt: self._attempt(request, permit, attempt, met),
                    on_retry=lambda reason, _: self._retries(request.operation, reason).inc(),
                    retry_timeouts=request.retry_timeouts,
                )
        except BaseException as exc:
            error = self._error(exc, scope.expired(), met, request, bound)
            if isinstance(error, LLMCallError):
                if met.uncounted or met.failure is None:
                    breaker.failed(permit, f"{error} ({self._endpoint})")
            else:
                breaker.released(permit)
            if error is exc:
                raise
            raise error from exc
        breaker.succeeded(permit)
        return reply

    def _error(
        self,
        exc: BaseException,
        expired: bool,
        met: _Met,
        request: ProviderRequest,
        bound: float,
    ) -> BaseException:
        """The `LLMError` a failed call raises; other exceptions (cancellation) stay as they are.

        A call stopped by a limit or the breaker after one of its attempts reached the provider
        and failed ends with that failure: its items were not sent away by a limit."""
        if isinstance(exc, LLMUnavailable) and met.failure is not None:
            return self._error(met.failure, False, _Met(), request, bound)
        if isinstance(exc, LLMError):
            return exc
        if expired:
            return LLMTimeout(f"call exceeded its bound of {bound:.1f} s")
        if _timed_out(exc):
            return LLMTimeout(
                f"no answer within {request.timeout(self._llm):g} s after the allowed retries"
            )
        if isinstance(exc, (openai.OpenAIError, ValueError)):
            return llm_error(exc)
        return exc

    async def _attempt(
        self, request: ProviderRequest, permit: Permit, attempt: int, met: _Met
    ) -> ProviderReply:
        """One attempt: breaker, then a concurrency slot, then the limits, then the request."""
        model = permit.model
        breaker = self._breakers[model]
        breaker.check(permit)
        limiter = self.concurrency()
        wait = self._llm.max_limiter_wait_seconds
        acquired = False
        try:
            async with limiter.slot(timeout=wait, stop=lambda: breaker.check(permit)):
                acquired = True
                breaker.check(permit)  # it may have opened while this call waited
                return await self._limited(request, permit, attempt, limiter, met)
        except TimeoutError as exc:
            if acquired:
                raise
            raise RateLimitWait(f"no concurrency slot within {wait:g} s") from exc

    async def _limited(
        self,
        request: ProviderRequest,
        permit: Permit,
        attempt: int,
        limiter: AdaptiveConcurrency,
        met: _Met,
    ) -> ProviderReply:
        """The request once the limits allow it; the token limit gets back what it did not use."""
        model = permit.model
        reserved = await self._admission.provider(model, request.tokens_in + request.tokens_out)
        used: list[Any] = reserved
        try:
            reply = await self._timed(request, permit, attempt, limiter, met)
            used = self._admission.provider_used(model, reply.tokens_in + reply.tokens_out)
            return reply
        except Exception as exc:
            if retry_reason(exc) in ("rate_limited", "server_error", "connection"):
                used = self._admission.provider_used(model, 0)  # rejected: no tokens used
            raise
        finally:
            await self._admission.settle(reserved, used)

    async def _timed(
        self,
        request: ProviderRequest,
        permit: Permit,
        attempt: int,
        limiter: AdaptiveConcurrency,
        met: _Met,
    ) -> ProviderReply:
        """The request within `llm_timeout_seconds`, observed; `limiter` and, for a timeout or a
        status no retry cures, the breaker hear how it went at once."""
        model = permit.model
        started = self._clock()
        self._in_flight.inc()
        try:
            async with asyncio.timeout(request.timeout(self._llm)):
                response = await request.send(model, attempt)
        except Exception as exc:
            seconds = self._clock() - started
            observe_attempt(self._flow, request.operation, model, seconds, _error_type(exc))
            if retry_reason(exc) in DROP_REASONS:
                limiter.on_drop(exception_retry_after(exc))
            self._heard(permit, exc, met, request)
            raise
        finally:
            self._in_flight.dec()
        observe_attempt(self._flow, request.operation, model, self._clock() - started)
        limiter.on_success()
        tokens_in, tokens_out = request.usage(response)
        observe_tokens(self._flow, request.operation, model, tokens_in, tokens_out)
        cost = self._admission.cost(model, tokens_in, tokens_out, request.endpoint)
        return ProviderReply(response, model, tokens_in, tokens_out, cost)

    def _heard(self, permit: Permit, exc: Exception, met: _Met, request: ProviderRequest) -> None:
        """Remember a failed attempt; a timeout counts toward the breaker now (a hung endpoint
        would otherwise hold every retry for a full timeout first), and a status that marks the
        endpoint or credentials as wrong trips it."""
        if not (_timed_out(exc) or isinstance(exc, _PROVIDER_FAILURES)):
            return  # not the provider's answer (an unreadable body is judged by the caller)
        if retry_reason(exc) == "rate_limited":
            return  # a 429 is a limit: a call it sends on to wait too long is `rate_limit_wait`
        met.failure, met.uncounted = exc, True
        endpoint = endpoint_for_log(request.endpoint) if request.endpoint else self._endpoint
        breaker = self._breakers[permit.model]
        status = getattr(exc, "status_code", None)
        if _timed_out(exc):
            met.uncounted = False
            breaker.failed(permit, f"no answer within {request.timeout(self._llm):g} s")
        elif status in ENDPOINT_STATUSES:
            met.uncounted = False
            breaker.trip(
                permit,
                f"status {status} from {endpoint} (not retried; check OPENAI_BASE_URL, "
                f"OPENAI_API_KEY and the model name)",
            )
        elif (text := unsupported_request(exc)) is not None:
            met.uncounted = False
            breaker.trip(
                permit,
                f"status {status} from {endpoint}: the server does not support the "
                f"request (not retried; check SURGEFLOW_LLM_STRUCTURED_OUTPUT for its dialect): "
                f"{redacted_text(text)}",
            )


_PROVIDER_FAILURES = (openai.APIStatusError, openai.APIConnectionError)

ENDPOINT_STATUSES: frozenset[int] = frozenset({401, 403, 404, 405, 407, 410})
"""Statuses no retry or later call can cure (wrong base URL, path, API key or model; not an
OpenAI-compatible server): the first one opens the breaker."""


@dataclass
class _Met:
    """What the attempts of one call met at the provider: the last failure, and whether the
    breaker has yet to hear of it."""

    failure: BaseException | None = None
    uncounted: bool = False


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, openai.APITimeoutError))


def endpoint_for_log(url: str | None) -> str:
    """The base URL without credentials, query or fragment, for logs."""
    parts = urlsplit(url or "https://api.openai.com/v1")
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _error_type(exc: BaseException) -> str:
    """The `error_type` label of a failed attempt: the status code, or the exception's class."""
    if isinstance(exc, openai.APIStatusError):
        return str(exc.status_code)
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__
