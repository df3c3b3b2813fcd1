"""Admission: the prompt estimate, budget reservations with a fallback model, limit waits."""

from __future__ import annotations

import asyncio

import pytest

from operators.config.settings import Settings
from operators.llm.admission import Admission, estimate_prompt_tokens, unused
from operators.llm.limits import LocalRateLimiter, Rate
from operators.llm.pricing import PriceTable
from operators.llm.types import BudgetExhausted, RateLimitWait
from tests.operators.llm.service_calls import FakeClock

PRICES = PriceTable({"big": (1000.0, 1000.0), "small": (1.0, 1.0)})


def admission(clock: FakeClock, slept: list[float] | None = None, **settings: object) -> Admission:
    async def sleep(seconds: float) -> None:
        (slept if slept is not None else []).append(seconds)
        clock.advance(seconds)

    return Admission(
        Settings(**settings).llm,
        flow="admission-test",
        limiter=LocalRateLimiter(clock=clock),
        prices=PRICES,
        sleep=sleep,
        clock=clock,
    )


def test_prompt_estimate_counts_content_overhead_and_schema() -> None:
    one = [{"role": "user", "content": "abc" * 10}]
    assert estimate_prompt_tokens(one) == 3 + 4 + 10
    assert estimate_prompt_tokens(one, extra="x" * 30) == 3 + 4 + 10 + 10
    assert estimate_prompt_tokens(one * 2) == 3 + 2 * (4 + 10)


def test_unused_is_per_rate_and_never_negative() -> None:
    a, b = Rate("a", 100), Rate("b", 100)
    assert unused([(a, 10.0), (b, 5.0)], [(a, 4.0)]) == [(a, 6.0), (b, 5.0)]
    assert unused([(a, 10.0)], [(a, 12.0)]) == []


def test_budget_pays_the_first_model_it_can_then_refuses() -> None:
    clock = FakeClock()
    gate = admission(clock, llm_budget_usd_per_minute=0.05)
    hold = asyncio.run(gate.budget(["big", "small"], 100, 300))
    assert hold.model == "small", "big's worst case costs 0.4 USD"
    with pytest.raises(BudgetExhausted) as raised:
        asyncio.run(gate.budget(["big"], 100, 300))
    assert raised.value.reason == "budget"


def test_budget_given_back_makes_room_again() -> None:
    clock = FakeClock()
    gate = admission(clock, llm_budget_tokens_per_minute=1000)
    hold = asyncio.run(gate.budget(["small"], 400, 400))
    with pytest.raises(BudgetExhausted):
        asyncio.run(gate.budget(["small"], 400, 400))
    asyncio.run(gate.settle(hold.costs, gate.spend("small", 100, 50)))
    assert asyncio.run(gate.budget(["small"], 400, 400)).model == "small"


def test_provider_limits_wait_within_the_bound_or_refuse() -> None:
    clock, slept = FakeClock(), []
    gate = admission(
        clock,
        slept,
        llm_tokens_per_minute=1200,
        llm_rate_burst_seconds=60,
        llm_max_limiter_wait_seconds=10,
    )
    asyncio.run(gate.provider("small", 1200))
    asyncio.run(gate.provider("small", 100))
    assert slept == [pytest.approx(5.0)], "100 tokens at 20 per second"
    with pytest.raises(RateLimitWait):
        asyncio.run(gate.provider("small", 1200))
