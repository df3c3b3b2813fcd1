"""Helpers of the service tests: running calls on a fresh loop, a fake clock, metric samples."""

from __future__ import annotations

import asyncio
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


def sample(name: str, **labels: str) -> float:
    """The current value of one sample of prometheus_client's default registry (0 if absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
