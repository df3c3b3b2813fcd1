"""The retry policy: what is retried, the pauses (Retry-After or capped full jitter), the count."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import httpx2
import openai
import pytest

from operators.llm.retry import RetryPolicy, retry_after_seconds, retry_reason
from operators.llm.types import BreakerOpen, LLMInvalidOutput

REQUEST = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")


def status_error(status: int, **headers: str) -> openai.APIStatusError:
    response = httpx2.Response(status, headers=headers, request=REQUEST)
    kinds = {429: openai.RateLimitError, 500: openai.InternalServerError}
    kind = kinds.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return kind(f"status {status}", response=response, body=None)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (status_error(429), "rate_limited"),
        (status_error(500), "server_error"),
        (status_error(503), "server_error"),
        (status_error(409), "server_error"),
        (status_error(408), "timeout"),
        (openai.APITimeoutError(request=REQUEST), "timeout"),
        (TimeoutError(), "timeout"),
        (openai.APIConnectionError(request=REQUEST), "connection"),
        (status_error(400), None),
        (status_error(401), None),
        (status_error(500, **{"x-should-retry": "false"}), None),
        (status_error(400, **{"x-should-retry": "true"}), "server_error"),
        (LLMInvalidOutput("bad"), None),
        (BreakerOpen("open"), None),
    ],
)
def test_retry_reason(exc: BaseException, reason: str | None) -> None:
    assert retry_reason(exc) == reason


def test_retry_after_headers() -> None:
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": formatdate(1_000_030.0)}, now=lambda: 1_000_000.0)
    assert retry_after_seconds(
        {"retry-after": formatdate(1_000_030.0)}, now=lambda: 1_000_000.0
    ) == pytest.approx(30.0)
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def policy(**overrides: float) -> tuple[RetryPolicy, list[float]]:
    """A policy whose jitter is the upper bound and whose sleeps are recorded, not slept."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    values = {"max_retries": 3, "initial_seconds": 0.5, "max_seconds": 3.0, **overrides}
    return (
        RetryPolicy(
            max_retries=int(values["max_retries"]),
            initial_seconds=values["initial_seconds"],
            max_seconds=values["max_seconds"],
            sleep=sleep,
            uniform=lambda low, high: high,
        ),
        slept,
    )


def test_backoff_doubles_to_the_cap_and_retry_after_wins() -> None:
    retry, _ = policy()
    assert [retry.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert retry.pause(status_error(500), 1) == 0.5
    assert retry.pause(status_error(429, **{"retry-after": "1.5"}), 1) == 1.5
    assert retry.pause(status_error(429, **{"retry-after": "30"}), 1) is None, "over the cap"
    assert retry.pause(status_error(500), 4) is None, "retries used up"
    assert retry.pause(status_error(400), 1) is None


def test_full_jitter_draws_below_the_ceiling() -> None:
    draws: list[tuple[float, float]] = []
    retry = RetryPolicy(
        max_retries=2,
        initial_seconds=0.5,
        max_seconds=8,
        uniform=lambda low, high: draws.append((low, high)) or 0.1,
    )
    assert retry.backoff(3) == 0.1 and draws == [(0.0, 2.0)]


def test_run_makes_at_most_retries_plus_one_attempts_and_sleeps_between() -> None:
    retry, slept = policy()
    attempts: list[int] = []

    async def attempt(n: int) -> str:
        attempts.append(n)
        raise status_error(503)

    with pytest.raises(openai.InternalServerError):
        asyncio.run(retry.run(attempt))
    assert attempts == [0, 1, 2, 3]
    assert slept == [0.5, 1.0, 2.0]


def test_run_returns_the_first_success_and_reports_each_retry() -> None:
    retry, slept = policy()
    seen: list[tuple[str, float]] = []

    async def attempt(n: int) -> str:
        if n == 0:
            raise status_error(429, **{"retry-after-ms": "100"})
        if n == 1:
            raise openai.APITimeoutError(request=REQUEST)
        return "answer"

    assert asyncio.run(retry.run(attempt, on_retry=lambda r, p: seen.append((r, p)))) == "answer"
    assert seen == [("rate_limited", 0.1), ("timeout", 1.0)] and slept == [0.1, 1.0]


def test_run_does_not_retry_what_may_not_be_retried() -> None:
    retry, slept = policy()
    attempts: list[int] = []

    async def attempt(n: int) -> str:
        attempts.append(n)
        raise BreakerOpen("open")

    with pytest.raises(BreakerOpen):
        asyncio.run(retry.run(attempt))
    assert attempts == [0] and slept == []


def test_a_run_may_leave_timeouts_to_its_caller_and_still_retry_the_rest() -> None:
    retry, slept = policy()
    attempts: list[int] = []

    async def attempt(n: int) -> str:
        attempts.append(n)
        if n == 0:
            raise status_error(503)
        raise openai.APITimeoutError(request=REQUEST)

    with pytest.raises(openai.APITimeoutError):
        asyncio.run(retry.run(attempt, retry_timeouts=False))
    assert attempts == [0, 1], "the 503 is retried, the timeout ends the run"
    assert slept == [0.5]
