"""Admission of LLM calls: the flow's budget and the provider's limits, reserved before a call.

Before a logical call, `Admission.budget` reserves its worst case against the flow's per-minute
budgets (`llm_budget_tokens_per_minute`, `llm_budget_usd_per_minute`): prompt tokens plus
`max_tokens`, priced at the model's output price for the latter. It does not wait (now or
never): a denied model makes way for the next one the caller offers (the fallback model), and
when none can be paid the call raises `BudgetExhausted`. Because the reservation is atomic and
made before the call, concurrent calls cannot overshoot the budget together.

Before each attempt, `Admission.provider` reserves one request and the same tokens against the
model's `llm_requests_per_minute` / `llm_tokens_per_minute`, waiting what the limiter says up
to `llm_max_limiter_wait_seconds` (`surgeflow_llm_limiter_wait_seconds`); a longer wait raises
`RateLimitWait`. Both are shared by every process through Redis when it is configured and kept
per process otherwise (`operators.llm.limits`).

After the call, `settle` gives back what was reserved and not used (`usage` of the answer).

Prompt tokens are estimated, as no tokenizer can be downloaded: `estimate_tokens` of every
message's content (`operators.llm.prompt_text`, which stays above GPT-4-family tokenizers for
ordinary text) plus `MESSAGE_OVERHEAD` per message and `REPLY_PRIMING`, plus the response schema.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from operators.config.llm import LLMSettings
from operators.llm.limits import Cost, RateLimiter, budget_costs, provider_costs
from operators.llm.metrics import LIMITER_WAIT
from operators.llm.pricing import PriceTable
from operators.llm.prompt_text import estimate_tokens
from operators.llm.types import BudgetExhausted, RateLimitWait
from operators.runtime.per_loop import PerLoop

MESSAGE_OVERHEAD = 4
"""Tokens a chat message costs beyond its content (role and separators)."""

REPLY_PRIMING = 3
"""Tokens every chat prompt costs for the start of the reply."""

LIMITER_ROUND_TRIPS = 32
"""Limiter calls (Redis scripts) in flight per event loop at most: a surge of calls queues here
instead of exhausting the Redis client's connection pool (100 connections)."""


def estimate_prompt_tokens(messages: Iterable[Mapping[str, str]], extra: str = "") -> int:
    """A conservative prompt size: each message's content, its overhead, and `extra` text."""
    total = REPLY_PRIMING + estimate_tokens(extra)
    for message in messages:
        total += MESSAGE_OVERHEAD + estimate_tokens(str(message.get("content", "")))
    return total


def unused(reserved: Sequence[Cost], used: Sequence[Cost]) -> list[Cost]:
    """What of `reserved` is not in `used`, per rate (nothing negative)."""
    spent: dict[object, float] = {}
    for rate, amount in used:
        spent[rate] = spent.get(rate, 0.0) + amount
    left = [(rate, amount - spent.get(rate, 0.0)) for rate, amount in reserved]
    return [(rate, amount) for rate, amount in left if amount > 0]


@dataclass(frozen=True)
class BudgetHold:
    """A budget reservation: the model it pays for and what it reserved."""

    model: str
    costs: list[Cost]


class Admission:
    """Reserves budgets and limits for one flow's calls; gives back what calls did not use."""

    def __init__(
        self,
        llm: LLMSettings,
        *,
        flow: str,
        limiter: RateLimiter,
        prices: PriceTable,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._llm = llm
        self._flow = flow
        self._waited = LIMITER_WAIT.labels(flow)
        self._limiter = limiter
        self._prices = prices
        self._sleep = sleep
        self._clock = clock
        self._round_trips = PerLoop(lambda: asyncio.Semaphore(LIMITER_ROUND_TRIPS))

    @property
    def flow(self) -> str:
        """The flow whose budgets this admission keeps."""
        return self._flow

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    def cost(
        self, model: str, tokens_in: int, tokens_out: int, endpoint: str | None = None
    ) -> float:
        """USD of a call of `model` at `endpoint` (a base URL; None = the shared one) that used
        these tokens (the settings' price tables, `operators.llm.pricing`)."""
        return self._prices.at(endpoint).cost(model, tokens_in, tokens_out)

    def spend(
        self, model: str, tokens_in: int, tokens_out: int, endpoint: str | None = None
    ) -> list[Cost]:
        """The budget costs of a call of `model` at `endpoint` that used these tokens."""
        cost = self.cost(model, tokens_in, tokens_out, endpoint)
        return budget_costs(self._llm, self._flow, tokens_in + tokens_out, cost)

    async def budget(
        self, models: Sequence[str], tokens_in: int, tokens_out: int, endpoint: str | None = None
    ) -> BudgetHold:
        """Reserve the budget of the first of `models` it can pay, else `BudgetExhausted`."""
        for model in dict.fromkeys(models):
            costs = self.spend(model, tokens_in, tokens_out, endpoint)
            if await self._reserve(costs, 0.0) is not None:
                return BudgetHold(model, costs)
        raise BudgetExhausted(f"flow {self._flow}: per-minute budget spent for {list(models)}")

    async def provider(self, model: str, tokens: int) -> list[Cost]:
        """Reserve one request and `tokens` of `model`; wait the limiter's delay first."""
        costs = provider_costs(self._llm, model, tokens)
        if not costs:
            return costs
        started = self._clock()
        limit = self._llm.max_limiter_wait_seconds
        delay = await self._reserve(costs, limit)
        if delay is None:
            raise RateLimitWait(f"limits of {model} would need a wait over {limit:g} s")
        if delay > 0:
            await self._sleep(delay)
        self._waited.observe(max(self._clock() - started, 0.0))
        return costs

    async def settle(self, reserved: Sequence[Cost], used: Sequence[Cost]) -> None:
        """Give back what of `reserved` was not `used`."""
        refund = unused(reserved, used)
        if refund:
            async with self._round_trips.get():
                await self._limiter.refund(refund)

    async def _reserve(self, costs: Sequence[Cost], max_wait: float) -> float | None:
        if not costs:
            return 0.0
        async with self._round_trips.get():
            return await self._limiter.reserve(costs, max_wait=max_wait)

    def provider_used(self, model: str, tokens: int) -> list[Cost]:
        """The provider costs of an attempt that used `tokens` (0 = rejected before use)."""
        return provider_costs(self._llm, model, tokens)
