"""Retries of provider attempts: which failures are retried, after which pause, how often.

The `openai` client is built with `max_retries=0` and every retry happens here, so that each
attempt passes the circuit breaker, the request/token limits and the concurrency slot again, and
a call makes at most `llm_max_retries + 1` attempts (never the product of two retry loops).

Retried: 429 (`rate_limited`), timeouts and 408 (`timeout`), 409 and >= 500 (`server_error`) and
connection failures (`connection`); a provider's `x-should-retry` header overrides. Never
retried: a status whose text says the request itself is unsupported (`unsupported_request`:
a response format or parameter this server does not take), whatever the status. The pause
before retry n (1, 2, ...) is `Retry-After` when the provider sent one (`retry-after-ms`, else
`Retry-After` in seconds or as an HTTP date), else full jitter: uniform in
[0, min(llm_retry_max_seconds, llm_retry_initial_seconds * 2**(n-1))]. A provider asking for a
longer pause than `llm_retry_max_seconds` is not retried: the caller falls back instead of
waiting. A caller may ask for timeouts not to be retried (`retry_timeouts=False`): an embedding
batch that timed out is split rather than sent again at the same size. `tenacity` runs the
loop; the sleep and the random source are injected.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import openai
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt

from operators.config.llm import LLMSettings

R = TypeVar("R")

RetryReason = Literal["rate_limited", "timeout", "server_error", "connection"]

DROP_REASONS: frozenset[str] = frozenset({"rate_limited", "timeout", "server_error"})
"""Failures that tell the adaptive concurrency limit to shrink (the provider is overloaded)."""


UNSUPPORTED_STATUSES: frozenset[int] = frozenset({400, 415, 422, 500, 501})
UNSUPPORTED_WORDS = re.compile(
    r"response_format|json_schema|json_object|not supported|unsupported|not implemented|"
    r"input should be|unrecognized request argument|extra inputs are not permitted",
    re.IGNORECASE,
)
MAX_SERVER_TEXT = 300


def unsupported_request(exc: BaseException) -> str | None:
    """The server's text when `exc` says the request itself is not supported (a parameter or
    dialect this server does not take, e.g. llama.cpp's 500 "Input should be 'text' or
    'json_object'" for a `json_schema` response format), else None. Such a failure is not
    retried: every attempt and every later call would fail the same way."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in UNSUPPORTED_STATUSES:
        return None
    text = f"{exc.message} {exc.body if exc.body is not None else ''}"
    if UNSUPPORTED_WORDS.search(text) is None:
        return None
    return " ".join(text.split())[:MAX_SERVER_TEXT]


def retry_reason(exc: BaseException) -> RetryReason | None:
    """Why `exc` is worth another attempt, or None when it is not (4xx, a request the server
    does not support, invalid output, ...)."""
    if isinstance(exc, (openai.APITimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if not isinstance(exc, openai.APIStatusError):
        return None
    if unsupported_request(exc) is not None:
        return None
    should = exc.response.headers.get("x-should-retry")
    if should == "false":
        return None
    status = exc.status_code
    if status == 429:
        return "rate_limited"
    if status == 408:
        return "timeout"
    if status == 409 or status >= 500 or should == "true":
        return "server_error"
    return None


def retry_after_seconds(
    headers: Mapping[str, str] | None, *, now: Callable[[], float] = time.time
) -> float | None:
    """The pause a provider asked for: `retry-after-ms`, else `Retry-After` (seconds or date)."""
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(float(value) / divisor, 0.0)
        except ValueError:
            pass
    stamp = headers.get("retry-after")
    if stamp:
        try:
            return max(email.utils.parsedate_to_datetime(stamp).timestamp() - now(), 0.0)
        except (TypeError, ValueError):
            return None
    return None


def exception_retry_after(exc: BaseException) -> float | None:
    """The `Retry-After` of a status error, else None."""
    response = getattr(exc, "response", None)
    return retry_after_seconds(getattr(response, "headers", None))


class RetryPolicy:
    """At most `max_retries` retries, paused by `Retry-After` or by capped full-jitter backoff.

    `on_retry(reason, pause)` is told of every retry before its pause (metrics).
    """

    def __init__(
        self,
        *,
        max_retries: int,
        initial_seconds: float,
        max_seconds: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.max_retries = max(max_retries, 0)
        self.initial_seconds = initial_seconds
        self.max_seconds = max_seconds
        self._sleep = sleep
        self._uniform = uniform

    @classmethod
    def from_settings(cls, llm: LLMSettings, **dependencies: Any) -> RetryPolicy:
        return cls(
            max_retries=llm.max_retries,
            initial_seconds=llm.retry_initial_seconds,
            max_seconds=llm.retry_max_seconds,
            **dependencies,
        )

    def backoff(self, retry_number: int) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2**(retry_number - 1))]."""
        ceiling = min(self.max_seconds, self.initial_seconds * 2 ** max(retry_number - 1, 0))
        return self._uniform(0.0, ceiling)

    def pause(
        self, exc: BaseException, retry_number: int, *, retry_timeouts: bool = True
    ) -> float | None:
        """Seconds to wait before retry `retry_number` after `exc`; None = do not retry (also
        for a timeout when `retry_timeouts` is False)."""
        reason = retry_reason(exc)
        if retry_number > self.max_retries or reason is None:
            return None
        if reason == "timeout" and not retry_timeouts:
            return None
        asked = exception_retry_after(exc)
        if asked is None:
            return self.backoff(retry_number)
        return asked if asked <= self.max_seconds else None

    async def run(
        self,
        attempt: Callable[[int], Awaitable[R]],
        *,
        on_retry: Callable[[RetryReason, float], None] | None = None,
        retry_timeouts: bool = True,
    ) -> R:
        """`attempt(n)` for n = 0, 1, ... until it succeeds or may not be retried (re-raised).

        With `retry_timeouts` False a timed-out attempt ends the run: the caller does something
        else than sending the same request again (an embedding batch is split)."""
        pauses: dict[int, float] = {}

        def should_retry(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if exc is None:
                return False
            pause = self.pause(exc, state.attempt_number, retry_timeouts=retry_timeouts)
            if pause is None:
                return False
            pauses[state.attempt_number] = pause
            reason = retry_reason(exc)
            if on_retry is not None and reason is not None:
                on_retry(reason, pause)
            return True

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            retry=should_retry,
            wait=lambda state: pauses.get(state.attempt_number, 0.0),
            sleep=self._sleep,
            reraise=True,
        )
        async for trial in retrying:
            with trial:
                return await attempt(trial.retry_state.attempt_number - 1)
        raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover
