"""`map_async` in real Bytewax dataflows: completion order, per-key order, idle input, recovery."""

from __future__ import annotations

import asyncio
import gc
import pickle
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Optional, Union

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from operators.config.settings import Settings
from operators.runtime.async_step import AsyncFailure, StepParams, map_async, worker_runner
from operators.runtime.runner import AsyncRunner

pytestmark = pytest.mark.dataflow

SETTINGS = Settings(
    llm_timeout_seconds=1.0,
    llm_max_retries=0,
    llm_max_limiter_wait_seconds=0.0,
    llm_poll_seconds=0.005,
    llm_lanes=4,
)  # item bound: 2 × 1 s + 0.01 s + 1 s
STEP = replace(StepParams.from_settings(SETTINGS.llm), rules_only=False)
"""A step that can call (the settings name no endpoint, so `from_settings` says rules only)."""
RULES_ONLY = StepParams.from_settings(SETTINGS.llm)

Item = tuple[str, int]


def key_of(item: Item) -> str:
    return item[0]


def build(
    source: Any,
    fn: Any,
    out: list[Any],
    seen: Optional[list[Any]] = None,
    ready: Any = None,
    params: StepParams = STEP,
) -> Dataflow:
    flow = Dataflow("map_async_test")
    up = op.input("in", flow, source)
    if seen is not None:
        up = op.map("seen", up, lambda item: seen.append(item) or item)
    results = map_async("llm", up, fn, key=key_of, params=params, ready=ready, flow="test")
    op.output("out", results, TestingSink(out))
    return flow


def name(item: Item) -> str:
    return f"{item[0]}{item[1]}"


async def echo(item: Item) -> str:
    return name(item)


Step = Union[list[Item], Callable[[], bool]]
"""A scripted source step: a batch to emit, or a condition to wait for (without emitting)."""


class _ScriptPartition(StatefulSourcePartition[Item, None]):
    def __init__(self, steps: Iterable[Step], patience: float, waited: list[bool]) -> None:
        self._steps = list(steps)
        self._patience = patience
        self._waited = waited
        self._since: Optional[float] = None

    def next_batch(self) -> list[Item]:
        if not self._steps:
            raise StopIteration()
        step = self._steps[0]
        if isinstance(step, list):
            self._steps.pop(0)
            return step
        self._since = self._since or time.monotonic()
        met = step()
        if met or time.monotonic() - self._since > self._patience:
            self._waited.append(met)
            self._steps.pop(0)
            self._since = None
        return []

    def next_awake(self) -> Optional[datetime]:
        return datetime.now(UTC) + timedelta(milliseconds=5)

    def snapshot(self) -> None:
        return None


class ScriptSource(FixedPartitionedSource[Item, None]):
    """Emits batches and, between them, stays idle until a condition holds (or `patience` s).

    `waited` records, per condition, whether it held before the patience ran out.
    """

    def __init__(self, *steps: Step, patience: float = 5.0) -> None:
        self.steps = steps
        self.patience = patience
        self.waited: list[bool] = []

    def list_parts(self) -> list[str]:
        return ["script"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ScriptPartition:
        return _ScriptPartition(self.steps, self.patience, self.waited)


def test_every_item_comes_out_exactly_once_in_per_key_order() -> None:
    items = [(f"k{i % 3}", i) for i in range(30)]

    async def jittered(item: Item) -> str:
        await asyncio.sleep(0.001 * ((7 * item[1]) % 11))
        return name(item)

    out: list[Any] = []
    pending_before = REGISTRY.get_sample_value("surgeflow_llm_pending", {"flow": "test"}) or 0.0
    run_main(build(TestingSource(items, batch_size=7), jittered, out))
    assert sorted(out) == sorted(name(item) for item in items)
    assert REGISTRY.get_sample_value("surgeflow_llm_pending", {"flow": "test"}) == pending_before
    for key in ("k0", "k1", "k2"):
        assert [o for o in out if o.startswith(key)] == [name(i) for i in items if i[0] == key]


def test_items_stay_in_flight_across_activations_of_bytewax_worker_threads() -> None:
    async def nap(item: Item) -> str:
        await asyncio.sleep(0.02 * (item[1] % 4))
        return name(item)

    out: list[Any] = []
    items = [(f"k{i % 5}", i) for i in range(40)]
    cluster_main(
        build(TestingSource(items, batch_size=4), nap, out), [], 0, worker_count_per_proc=2
    )
    assert sorted(out) == sorted(name(item) for item in items), "none cancelled or lost"


def test_a_raising_item_becomes_an_async_failure_and_the_rest_continue() -> None:
    async def picky(item: Item) -> str:
        if item[1] == 3:
            raise ValueError("three is not allowed")
        return name(item)

    out: list[Any] = []
    items = [("s", i) for i in range(6)]
    run_main(build(TestingSource(items, batch_size=6), picky, out))
    failure = AsyncFailure(("s", 3), "ValueError", "three is not allowed")
    assert out == ["s0", "s1", "s2", failure, "s4", "s5"]
    assert pickle.loads(pickle.dumps(failure)) == failure


def test_a_slow_item_holds_back_only_its_own_key() -> None:
    gate = threading.Event()

    async def gated(item: Item) -> str:
        while item == ("a", 1) and not gate.is_set():
            await asyncio.sleep(0.005)
        return name(item)

    out: list[Any] = []

    def others_out() -> bool:
        if {"b1", "c1"} <= set(out):
            gate.set()
        return gate.is_set()

    source = ScriptSource(
        [("a", 1), ("b", 1), ("c", 1), ("a", 2)], others_out, lambda: len(out) == 4
    )
    run_main(build(source, gated, out))
    assert source.waited == [True, True], "b1 and c1 left while a1 was still running"
    assert set(out[:2]) == {"b1", "c1"} and out[2:] == ["a1", "a2"], "a2 waited for a1"


def test_ready_answers_skip_the_loop_but_wait_for_their_keys_earlier_items() -> None:
    gate = threading.Event()
    called: list[Item] = []

    async def gated(item: Item) -> str:
        called.append(item)
        while item == ("a", 1) and not gate.is_set():
            await asyncio.sleep(0.005)
        return name(item)

    def ready(item: Item) -> Optional[str]:
        """Even numbers need no call; 99 breaks the rules path."""
        if item[1] == 99:
            raise ValueError("no rule for 99")
        return f"{name(item)}!" if item[1] % 2 == 0 else None

    out: list[Any] = []
    failure = AsyncFailure(("b", 99), "ValueError", "no rule for 99")

    def b_out() -> bool:
        if "b2!" in out and failure in out:
            gate.set()
        return gate.is_set()

    source = ScriptSource([("a", 1), ("a", 2), ("b", 2), ("b", 99)], b_out, lambda: len(out) == 4)
    run_main(build(source, gated, out, ready=ready))
    assert source.waited == [True, True], "b's answers left while a1 was still running"
    assert set(out[:2]) == {"b2!", failure} and out[2:] == ["a1", "a2!"], "a2 waited for a1"
    assert called == [("a", 1)], "items answered by `ready` never reach the async function"


def test_results_leave_while_the_source_is_idle() -> None:
    async def nap(item: Item) -> str:
        await asyncio.sleep(0.05)
        return name(item)

    out: list[Any] = []
    items = [(f"k{i}", i) for i in range(10)]
    source = ScriptSource(items, lambda: len(out) == len(items))
    run_main(build(source, nap, out))
    assert source.waited == [True], "every result was out before the source reached EOF"
    assert sorted(out) == sorted(name(i) for i in items)


def test_an_item_that_outruns_its_bound_fails_with_timeout_error() -> None:
    settings = SETTINGS.replaced(llm_timeout_seconds=0.05)  # item bound ≈ 1.1 s

    async def hang(item: Item) -> str:
        if item == ("a", 1):
            await asyncio.sleep(60)
        return name(item)

    out: list[Any] = []
    flow = Dataflow("map_async_timeout")
    up = op.input("in", flow, TestingSource([("a", 1), ("a", 2), ("b", 1)], batch_size=3))
    op.output(
        "out",
        map_async(
            "llm",
            up,
            hang,
            key=key_of,
            flow="test",
            params=replace(StepParams.from_settings(settings.llm), rules_only=False),
        ),
        TestingSink(out),
    )
    run_main(flow)
    assert out[0] == "b1"
    assert isinstance(out[1], AsyncFailure) and out[1].error_type == "TimeoutError"
    assert out[2] == "a2"


def test_an_item_in_flight_at_an_abort_is_emitted_after_resume(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(tmp_path)
    gate = threading.Event()

    async def gated(item: Item) -> str:
        while item == ("a", 1) and not gate.is_set():
            await asyncio.sleep(0.005)
        return name(item)

    pause = TestingSource.PAUSE(timedelta(milliseconds=100))
    items: list[Any] = [("a", 1), pause, ("b", 1), pause, ("c", 1), pause]
    items += [TestingSource.ABORT(), ("d", 1)]
    out: list[Any] = []
    seen: list[Any] = []
    flow = build(TestingSource(items), gated, out, seen)

    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    assert "a1" not in out and {"b1", "c1"} <= set(out)
    first_out, first_seen = len(out), len(seen)
    gate.set()
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    assert ("a", 1) not in seen[first_seen:], "the source did not replay a1"
    assert out[first_out:].count("a1") == 1, "a1 came back from the lane's snapshot"
    assert "d1" in out[first_out:]


def test_the_runner_is_per_worker_thread() -> None:
    here = worker_runner(STEP.item_bound_seconds)
    assert worker_runner(STEP.item_bound_seconds) is here
    other: list[AsyncRunner] = []
    thread = threading.Thread(target=lambda: other.append(worker_runner(STEP.item_bound_seconds)))
    thread.start()
    thread.join()
    assert other[0] is not here
    deadline = time.monotonic() + 2.0
    while not other[0].closed and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert other[0].closed, "a finished worker thread's runner is closed"


# --- rules only (`StepParams.rules_only`): `ready` answers every item, a batch at a time ------


def test_from_settings_says_rules_only_exactly_when_no_endpoint_is_configured() -> None:
    assert StepParams.from_settings(SETTINGS.llm).rules_only
    with_endpoint = SETTINGS.replaced(openai_base_url="http://127.0.0.1:9/v1")
    assert not StepParams.from_settings(with_endpoint.llm).rules_only


def rules(item: Item) -> Optional[str]:
    """A rules path: 7 breaks it; the rest are answered."""
    if item[1] == 7:
        raise ValueError("no rule for 7")
    return f"{name(item)}!"


async def never(item: Item) -> str:
    raise AssertionError(f"{item} reached the async function")


@examples(max_examples=25, deadline=None)
@given(
    items=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 9)), max_size=30),
    batch_size=st.integers(1, 8),
)
def test_rules_only_gives_what_the_lanes_give_in_input_order(
    items: list[Item], batch_size: int
) -> None:
    """Same outcomes as the lanes, per key in the same order; across keys in input order."""
    at_once: list[Any] = []
    run_main(
        build(TestingSource(items, batch_size), never, at_once, ready=rules, params=RULES_ONLY)
    )
    in_lanes: list[Any] = []
    run_main(build(TestingSource(items, batch_size), never, in_lanes, ready=rules))
    expected = [
        AsyncFailure(item, "ValueError", "no rule for 7") if item[1] == 7 else rules(item)
        for item in items
    ]
    assert at_once == expected

    def key_of_outcome(outcome: Any) -> str:
        return str(outcome.item[0] if isinstance(outcome, AsyncFailure) else outcome[0])

    for key in "abc":
        assert [o for o in in_lanes if key_of_outcome(o) == key] == [
            o for o in expected if key_of_outcome(o) == key
        ]


def test_rules_only_makes_the_call_when_ready_leaves_an_item_to_it() -> None:
    called: list[Item] = []

    async def call(item: Item) -> str:
        called.append(item)
        if item[1] == 3:
            raise RuntimeError("provider exploded")
        await asyncio.sleep(0.01)
        return name(item)

    def odd_needs_a_call(item: Item) -> Optional[str]:
        return None if item[1] % 2 else f"{name(item)}!"

    out: list[Any] = []
    items = [("a", 0), ("a", 1), ("b", 2), ("b", 3), ("a", 4)]
    flow = build(TestingSource(items, 5), call, out, ready=odd_needs_a_call, params=RULES_ONLY)
    run_main(flow)
    assert out == [
        "a0!",
        "a1",
        "b2!",
        AsyncFailure(("b", 3), "RuntimeError", "provider exploded"),
        "a4!",
    ]
    assert called == [("a", 1), ("b", 3)]


def test_rules_only_bounds_a_call_it_waits_for() -> None:
    quick = replace(RULES_ONLY, item_bound_seconds=0.05)

    async def hang(item: Item) -> str:
        await asyncio.sleep(60)
        return name(item)

    out: list[Any] = []
    run_main(build(TestingSource([("a", 1)]), hang, out, ready=lambda _: None, params=quick))
    [failure] = out
    assert isinstance(failure, AsyncFailure) and failure.error_type == "TimeoutError"


def test_a_rules_only_run_emits_the_items_a_snapshot_with_calls_kept(tmp_path: Path) -> None:
    """Resumed without an endpoint, the items a run that could call kept are not lost."""
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(tmp_path)

    async def stuck(item: Item) -> str:
        while item == ("a", 1):
            await asyncio.sleep(0.005)
        return name(item)

    pause = TestingSource.PAUSE(timedelta(milliseconds=100))
    items: list[Any] = [("a", 1), pause, ("b", 1), pause, ("c", 1), pause]
    items += [TestingSource.ABORT(), ("d", 1)]
    out: list[Any] = []
    run_main(build(TestingSource(items), stuck, out), epoch_interval=timedelta(0),
             recovery_config=recovery)  # fmt: skip
    assert "a1" not in out and {"b1", "c1"} <= set(out)
    first_out = len(out)
    resumed = build(TestingSource(items), never, out, ready=rules, params=RULES_ONLY)
    run_main(resumed, epoch_interval=timedelta(0), recovery_config=recovery)
    assert out[first_out:].count("a1!") == 1, "a1 came back from the lane's snapshot"
    assert "d1!" in out[first_out:]
