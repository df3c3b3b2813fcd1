"""Helpers of the service tests: running calls on a fresh loop, a fake clock, metric samples."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from prometheus_client import REGISTRY
from pydantic import BaseModel, Field

from operators.llm.service import OpenAIService
from operators.llm.types import ChatResult

R = TypeVar("R")
MODEL = "gpt-4o-mini"


class Verdict(BaseModel):
    category: Literal["none", "damaged", "weather"]
    message_draft: str = Field(max_length=200)


def messages(note: str = "The box arrived crushed.") -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Classify the note."},
        {"role": "user", "content": note},
    ]


def run(service: OpenAIService, work: Callable[[], Coroutine[Any, Any, R]]) -> R:
    """Run `work()` on a fresh loop and close that loop's client afterwards."""

    async def main() -> R:
        try:
            return await work()
        finally:
            await service.aclose()

    return asyncio.run(main())


def classify(
    service: OpenAIService, note: str = "The box arrived crushed.", *, key: str | None = None
) -> Coroutine[Any, Any, ChatResult[Verdict]]:
    return service.chat_structured(
        messages=messages(note),
        response_model=Verdict,
        model=MODEL,
        prompt_version="test-v1",
        key=key,
    )


async def gather_outcomes(*calls: Coroutine[Any, Any, R]) -> list[R | BaseException]:
    """Every call's result or exception, concurrently."""
    return list(await asyncio.gather(*calls, return_exceptions=True))


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """`asyncio.sleep` that notes every pause it is asked for (a retry policy's `sleep`)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        await asyncio.sleep(seconds)


class StandingClock(FakeClock):
    """A `FakeClock` that notes the wall time (`time.time()`, the clock of the test server's
    arrival times) of every reading. A limiter on it decides by the order of its reservations
    alone, and a test measures a request's wait from the moment the limiter planned it: a wait
    the code sleeps through, which a loaded machine can only lengthen."""

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__(start)
        self.read_at: list[float] = []

    def __call__(self) -> float:
        self.read_at.append(time.time())
        return self.now


def sample(name: str, **labels: str) -> float:
    """The current value of one sample of prometheus_client's default registry (0 if absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
