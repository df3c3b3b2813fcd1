"""`agent_step`: results as calls finish, failures as `processing_error` dead letters."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, replace
from typing import Any, Optional

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from operators.config.settings import Settings
from operators.runtime.agents import agent_step
from operators.runtime.async_step import StepParams
from schemas.dead_letter import DeadLetter, SourceRef

pytestmark = pytest.mark.dataflow

SETTINGS = Settings(
    llm_timeout_seconds=1.0, llm_max_retries=0, llm_max_limiter_wait_seconds=0.0, llm_lanes=8
)
SOURCE = SourceRef(topic="tickets.messages", partition=0, offset=7)


@dataclass(frozen=True)
class Message:
    session: Optional[str]
    n: int


def run(
    items: list[Message], agent: Any, ready: Any = None, *, rules_only: bool = False
) -> tuple[list[Any], list[DeadLetter]]:
    results: list[Any] = []
    dead: list[DeadLetter] = []
    flow = Dataflow("agent_step_test")
    up = op.input("in", flow, TestingSource(items, batch_size=len(items)))
    params = replace(StepParams.from_settings(SETTINGS.llm), rules_only=rules_only)
    out = agent_step(
        "draft_reply", up, agent, params=params, flow="tickets", key=lambda m: m.session,
        source=lambda _: SOURCE, ready=ready,
    )  # fmt: skip
    op.output("results", out.results, TestingSink(results))
    op.output("dead", out.dead_letters, TestingSink(dead))
    run_main(flow)
    return results, dead


def test_a_raising_call_becomes_a_processing_error_dead_letter() -> None:
    async def reply(message: Message) -> str:
        if message.n == 2:
            raise RuntimeError("provider exploded")
        return f"{message.session}:{message.n}"

    items = [Message("s1", 1), Message("s1", 2), Message("s1", 3), Message("s2", 4)]
    results, dead = run(items, reply)
    assert sorted(results) == ["s1:1", "s1:3", "s2:4"]
    assert results.index("s1:1") < results.index("s1:3")
    [letter] = dead
    assert letter.flow == "tickets" and letter.step.endswith("draft_reply")
    assert letter.error_type == "processing_error"
    assert letter.error == "RuntimeError: provider exploded"
    assert letter.key == "s1" and letter.source == SOURCE
    assert json.loads(base64.b64decode(letter.raw_base64)) == {"session": "s1", "n": 2}


def test_items_without_a_key_share_one_order() -> None:
    async def reply(message: Message) -> int:
        await asyncio.sleep(0.01 * (5 - message.n))
        return message.n

    results, dead = run([Message(None, n) for n in range(5)], reply)
    assert results == [0, 1, 2, 3, 4] and dead == []


def test_rules_only_results_leave_in_order_and_what_the_rules_raise_is_dead_lettered() -> None:
    async def never(message: Message) -> str:
        raise AssertionError("no call in a rules-only step")

    def rules(message: Message) -> str:
        if message.n == 2:
            raise RuntimeError("no rule")
        return f"{message.session}:{message.n}"

    items = [Message("s1", 1), Message("s1", 2), Message("s2", 3), Message("s1", 4)]
    results, dead = run(items, never, rules, rules_only=True)
    assert results == ["s1:1", "s2:3", "s1:4"]
    [letter] = dead
    assert letter.error_type == "processing_error" and letter.error == "RuntimeError: no rule"
    assert letter.key == "s1" and letter.source == SOURCE
    assert json.loads(base64.b64decode(letter.raw_base64)) == {"session": "s1", "n": 2}
