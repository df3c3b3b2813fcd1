"""`agent_step`: an async agent (LLM-backed) step whose failed items become dead letters.

It composes `map_async` (the calls, many at once per worker, never blocking it) with a branch
that turns every `AsyncFailure` into a `processing_error` dead letter, so a flow wires one
operator per agent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Optional, TypeVar, Union

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from operators.runtime.async_step import AsyncFailure, StepParams, map_async
from operators.runtime.dead_letter import dead_letter_for
from operators.runtime.shutdown import StopSignal
from schemas.dead_letter import DeadLetter, FlowName, SourceRef

X = TypeVar("X")
Y = TypeVar("Y")


@dataclass(frozen=True)
class AgentOut(Generic[Y]):
    """The two outputs of `agent_step`."""

    results: Stream[Y]
    dead_letters: Stream[DeadLetter]


@operator
def agent_step(
    step_id: str,
    up: Stream[X],
    agent: Callable[[X], Awaitable[Y]],
    *,
    params: StepParams,
    flow: FlowName,
    key: Callable[[Any], Optional[str]],
    source: Callable[[Any], SourceRef],
    ready: Optional[Callable[[X], Optional[Y]]] = None,
    stop: Optional[StopSignal] = None,
) -> AgentOut[Y]:
    """Run the async `agent` on every item; what it fails on is dead-lettered, never dropped.

    Consumes: items `X`. Emits: `agent(item)` on `results` as each call finishes, in completion
    order across keys but in input order per `key(item)` (items whose key is None share one
    order); for an item whose call raised or outran its bound, a `processing_error` `DeadLetter`
    on `dead_letters` with the item re-serialised, `key(item)` and `source(item)`.
    Keeps: the items still in flight, per lane (see `map_async` for lanes, bounds and recovery).
    `ready(item)` answers on the worker thread the items that need no call (the rules path).
    `stop` makes an EOF it calls a stop a graceful one: calls finish or are kept (`map_async`).
    """
    outcomes = map_async(
        "call", up, agent, key=lambda item: key(item) or "", params=params, ready=ready,
        stop=stop, flow=flow,
    )  # fmt: skip

    # Split a batch at a time (`op.branch` calls a predicate per item).
    def results_of(batch: list[Union[Y, AsyncFailure[X]]]) -> list[Y]:
        return [item for item in batch if not isinstance(item, AsyncFailure)]

    def failures_of(batch: list[Union[Y, AsyncFailure[X]]]) -> list[AsyncFailure[X]]:
        return [item for item in batch if isinstance(item, AsyncFailure)]

    results = op.flat_map_batch("results", outcomes, results_of)
    failures = op.flat_map_batch("failures", outcomes, failures_of)

    def to_dead_letter(failure: AsyncFailure[X]) -> DeadLetter:
        return dead_letter_for(
            failure.item,
            flow=flow,
            step=step_id,
            error_type="processing_error",
            error=f"{failure.error_type}: {failure.error}",
            source=source(failure.item),
            key=key(failure.item),
        )

    dead = op.map("dead_letter", failures, to_dead_letter)
    return AgentOut(results=results, dead_letters=dead)
