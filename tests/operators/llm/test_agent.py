"""`AgentRunner`: the paths every agent shares, on a small agent whose calls answer themselves."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import pytest

from operators.llm.agent import Agent, AgentRunner, Consultation
from operators.llm.service import DisabledService
from operators.llm.types import LLMCallError, LLMError, LLMInvalidOutput, LLMService, Tab
from schemas.enrichment import Enrichment, FallbackReason, PolicyRule


def paid(tag: str) -> Enrichment:
    return Enrichment(source="llm", model="m", prompt_version=tag, tokens_in=3, cost_usd=0.01)


@dataclass(frozen=True)
class Answered:
    value: str
    enrichment: Optional[Enrichment]


@dataclass
class Scripted:
    """A call whose result is `value` (or `error`), held in the process when `held_now`."""

    value: str
    held_now: bool = True
    error: Optional[LLMError] = None
    asked: list[str] = field(default_factory=list)

    async def ask(self, llm: LLMService) -> Answered:
        self.asked.append(self.value)
        if self.error is not None:
            raise self.error
        return Answered(self.value, paid(self.value))

    def held(self, llm: LLMService, tab: Tab) -> Optional[Answered]:
        if not self.held_now:
            return None
        tab.records.append(self.value)
        return Answered(self.value, paid(self.value))


@dataclass(frozen=True)
class Out:
    text: str
    spent: tuple[str, ...] = ()
    reason: Optional[str] = None
    violations: tuple[PolicyRule, ...] = ()


class TwoCallAgent(Agent[str, Out]):
    """Two calls per item; "skip" needs none; "secret" breaks the policy; "" is unusable."""

    name: ClassVar[str] = "test"

    def __init__(self, first: Scripted, second: Scripted) -> None:
        self.calls = (first, second)
        self.closed = False

    def needs_call(self, item: str) -> bool:
        return item != "skip"

    def rules(
        self, item: str, reason: Optional[FallbackReason], spent: Sequence[Enrichment]
    ) -> Out:
        return Out("rules", tuple(e.prompt_version for e in spent), reason)

    def consult(self, item: str, spent: Sequence[Enrichment]) -> Consultation[Out]:
        try:
            a: Answered = yield self.calls[0]
            b: Answered = yield self.calls[1]
        finally:
            self.closed = True
        if not item:
            raise LLMInvalidOutput("nothing to answer")
        return Out(f"{item}:{a.value}+{b.value}", tuple(e.prompt_version for e in spent))

    def violations(self, item: str, output: Out) -> tuple[PolicyRule, ...]:
        return ("system_prompt",) if item == "secret" else ()

    def blocked(self, item: str, output: Out, violations: tuple[PolicyRule, ...]) -> Out:
        return Out("rules", output.spent, None, violations)


class Enabled(DisabledService):
    """An enabled service whose calls are never reached (the test's calls answer themselves)."""

    def __init__(self) -> None:
        self.settled: list[list[Any]] = []

    @property
    def enabled(self) -> bool:
        return True

    def settle(self, tab: Tab) -> None:
        self.settled.append(list(tab.records))


def answer(runner: AgentRunner[str, Out], item: str) -> Out:
    return asyncio.run(runner.answer(item))


def test_the_rules_answer_what_needs_no_call_and_everything_without_an_endpoint() -> None:
    first, second = Scripted("a"), Scripted("b")
    enabled = AgentRunner(TwoCallAgent(first, second), Enabled())
    assert answer(enabled, "skip") == enabled.answer_now("skip") == Out("rules")
    disabled = AgentRunner(TwoCallAgent(first, second), DisabledService())
    assert answer(disabled, "x") == disabled.answer_now("x") == Out("rules", reason="disabled")
    assert first.asked == []


def test_calls_in_order_their_cost_carried_and_the_output_checked() -> None:
    runner = AgentRunner(TwoCallAgent(Scripted("a"), Scripted("b")), Enabled())
    assert answer(runner, "x") == Out("x:a+b", ("a", "b"))
    assert answer(runner, "secret") == Out("rules", ("a", "b"), None, ("system_prompt",))


@pytest.mark.parametrize(
    ("item", "second", "expected"),
    [
        ("x", Scripted("b", error=LLMCallError("503")), Out("rules", ("a",), "call_error")),
        ("", Scripted("b"), Out("rules", ("a", "b"), "invalid_output")),
    ],
)
def test_an_llm_error_on_the_way_sends_the_item_to_the_rules_with_its_reason(
    item: str, second: Scripted, expected: Out
) -> None:
    agent = TwoCallAgent(Scripted("a"), second)
    assert answer(AgentRunner(agent, Enabled()), item) == expected
    assert agent.closed


def test_answer_now_serves_what_is_held_and_accounts_it_once_complete() -> None:
    service = Enabled()
    held = AgentRunner(TwoCallAgent(Scripted("a"), Scripted("b")), service)
    assert held.answer_now("x") == Out("x:a+b", ("a", "b"))
    assert service.settled == [["a", "b"]]

    half = TwoCallAgent(Scripted("a"), Scripted("b", held_now=False))
    assert AgentRunner(half, service).answer_now("x") is None
    assert half.closed and service.settled == [["a", "b"]]

    assert held.answer_now("secret") == Out("rules", ("a", "b"), None, ("system_prompt",))
    assert held.answer_now("") == Out("rules", ("a", "b"), "invalid_output")
    assert len(service.settled) == 3
