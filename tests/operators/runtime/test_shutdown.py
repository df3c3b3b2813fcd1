"""The graceful stop in real Bytewax dataflows (in process): a requested `StopSignal` ends the
input where it is, in-flight async items finish or are kept, decision windows stay open, and the
next run on the same recovery store goes on from there, losing and repeating nothing."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, Source, StatelessSourcePartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from operators.config.settings import Settings
from operators.runtime.async_step import AsyncFailure, StepParams, map_async
from operators.runtime.clock import StreamClock
from operators.runtime.shutdown import HARD_STOP_EXIT_CODE, StopSignal, _Handlers, until_stopped
from operators.shipments.decision_state import WindowParams
from operators.shipments.windows import decision_window
from schemas import ShipmentDecision
from tests.operators.shipments.test_windows import SCENARIO

pytestmark = pytest.mark.dataflow

SETTINGS = Settings(llm_timeout_seconds=1.0, llm_max_retries=0, llm_poll_seconds=0.005)
STEP = StepParams.from_settings(SETTINGS.llm)
WINDOWS = WindowParams.from_settings(Settings().shipments)


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_grace_counts_down_from_the_first_request() -> None:
    clock = Ticks()
    stop = StopSignal(grace_seconds=20, clock=clock)
    assert not stop.requested and stop.remaining() == 20
    clock.now += 50
    assert stop.request("SIGTERM") is True
    clock.now += 15
    assert stop.request("SIGINT") is False, "a second request changes nothing"
    assert stop.reason == "SIGTERM" and stop.remaining() == 5 and stop.elapsed() == 15
    clock.now += 10
    assert stop.remaining() == 0
    stop.settled(finished=3, kept=1)
    assert "stopped on SIGTERM in 25.0 s" in stop.summary() and "3 in-flight" in stop.summary()


class Exits:
    def __init__(self) -> None:
        self.codes: list[int] = []

    def __call__(self, code: int) -> None:
        self.codes.append(code)


def test_a_second_signal_ends_the_process_at_once(caplog: pytest.LogCaptureFixture) -> None:
    exits = Exits()
    handlers = _Handlers(StopSignal(grace_seconds=60), exits)
    handlers.on_signal(signal.SIGTERM, None)
    assert handlers.stop.requested and exits.codes == []
    handlers.on_signal(signal.SIGINT, None)
    assert exits.codes == [HARD_STOP_EXIT_CODE]
    assert "second SIGINT while stopping" in caplog.text


def test_a_stop_that_outlasts_its_bound_ends_the_process(caplog: pytest.LogCaptureFixture) -> None:
    exits = Exits()
    handlers = _Handlers(StopSignal(grace_seconds=0), exits)
    handlers._watch("SIGTERM", 0.0)
    assert exits.codes == [HARD_STOP_EXIT_CODE]
    assert "did not finish in 0 s" in caplog.text


def test_the_stop_line_is_logged_once_at_exit_and_not_after_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    handlers = _Handlers(StopSignal(grace_seconds=5), Exits())
    handlers.at_exit()
    assert "stopped on" not in caplog.text, "no stop, no line"
    handlers.stop.request("SIGTERM")
    handlers.at_exit()
    assert caplog.text.count("stopped on SIGTERM") == 1
    caplog.clear()
    handlers.failed = True
    handlers.at_exit()
    assert "stopped on" not in caplog.text, "a run that failed did not stop gracefully"


def recovery_of(path: Path) -> RecoveryConfig:
    path.mkdir(parents=True, exist_ok=True)
    init_db_dir(path, 1)
    return RecoveryConfig(path)


def run(flow: Dataflow, recovery: RecoveryConfig) -> None:
    run_main(flow, epoch_interval=timedelta(milliseconds=20), recovery_config=recovery)


def stop_at(stop: StopSignal, wanted: Callable[[Any], bool]) -> Callable[[str, Any], None]:
    """An `op.inspect` function that requests `stop` when it sees a wanted item."""

    def inspect(_step: str, item: Any) -> None:
        if wanted(item):
            stop.request("test")

    return inspect


def counting_flow(source: Source[int], stop: StopSignal, out: list[int]) -> Dataflow:
    flow = Dataflow("stop_input")
    items = op.input("in", flow, until_stopped(source, stop))
    op.inspect("stop_at_10", items, stop_at(stop, lambda n: n == 10))
    op.output("out", items, TestingSink(out))
    return flow


def test_a_stopped_input_resumes_right_after_its_last_record(tmp_path: Path) -> None:
    recovery = recovery_of(tmp_path)
    first: list[int] = []
    run(counting_flow(TestingSource(range(30)), StopSignal(grace_seconds=1), first), recovery)
    assert 10 in first and len(first) < 30, "the input ended soon after the stop"
    second: list[int] = []
    run(counting_flow(TestingSource(range(30)), StopSignal(grace_seconds=1), second), recovery)
    assert first + second == list(range(30)), "nothing lost, nothing read twice"


def async_flow(
    source: Source[tuple[str, int]], fn: Any, stop: StopSignal, out: list[Any]
) -> Dataflow:
    flow = Dataflow("stop_async")
    items = op.input("in", flow, until_stopped(source, stop))
    op.inspect("stop_at_3", items, stop_at(stop, lambda item: item[1] == 3))
    done = map_async(
        "llm", items, fn, key=lambda item: item[0], params=STEP, stop=stop, flow="test"
    )
    op.output("out", done, TestingSink(out))
    return flow


ITEMS = [(f"k{n % 4}", n) for n in range(12)]


def test_calls_in_flight_at_a_stop_finish_and_are_not_made_again(tmp_path: Path) -> None:
    recovery = recovery_of(tmp_path)
    calls: list[tuple[str, int]] = []

    async def slow(item: tuple[str, int]) -> int:
        calls.append(item)
        await asyncio.sleep(0.2)
        return item[1]

    stop = StopSignal(grace_seconds=10)
    first: list[Any] = []
    run(async_flow(TestingSource(ITEMS), slow, stop, first), recovery)
    assert stop.requested and stop.finished > 0 and stop.kept == 0
    assert not any(isinstance(x, AsyncFailure) for x in first), first
    assert sorted(first) == sorted(n for _, n in calls), "every call made was emitted"
    made = len(calls)
    second: list[Any] = []
    run(async_flow(TestingSource(ITEMS), slow, StopSignal(grace_seconds=10), second), recovery)
    assert sorted(first + second) == list(range(12)), "nothing lost, nothing emitted twice"
    assert len(calls) - made == len(second), "the second run called only for new items"


def test_a_call_outlasting_the_grace_is_kept_for_the_next_run(tmp_path: Path) -> None:
    recovery = recovery_of(tmp_path)
    gate = threading.Event()
    calls: list[tuple[str, int]] = []

    async def gated(item: tuple[str, int]) -> int:
        calls.append(item)
        while item[1] == 0 and not gate.is_set():
            await asyncio.sleep(0.005)
        return item[1]

    stop = StopSignal(grace_seconds=0.2)
    first: list[Any] = []
    run(async_flow(TestingSource(ITEMS), gated, stop, first), recovery)
    assert 0 not in first and stop.kept >= 1, (first, stop.kept)
    assert not any(isinstance(x, AsyncFailure) for x in first), "kept, not failed"
    gate.set()
    second: list[Any] = []
    run(async_flow(TestingSource(ITEMS), gated, StopSignal(grace_seconds=1), second), recovery)
    assert sorted(first + second) == list(range(12))
    assert second.count(0) == 1, "the kept item came back from the snapshot once"


def window_flow(
    source: Source[Any], stop: StopSignal, out: list[Any], *, stop_event: str = "B2"
) -> Dataflow:
    flow = Dataflow("stop_windows")
    events = op.input("in", flow, until_stopped(source, stop))
    op.inspect("stop_at", events, stop_at(stop, lambda e: e.event.event_id == stop_event))
    keyed = op.key_on("key", events, lambda enriched: enriched.event.shipment_id)
    windows = decision_window(
        "decide", keyed, params=WINDOWS, topic="shipments.events", clock=StreamClock(), stop=stop
    )
    op.output("decisions", windows.decisions, TestingSink(out))
    return flow


def decided(out: list[Any]) -> set[tuple[Any, ...]]:
    rows = set()
    for _, d in out:
        assert isinstance(d, ShipmentDecision)
        rows.add((d.decision_id, d.trigger, d.action, tuple(d.event_ids)))
    return rows


def test_a_stop_keeps_the_windows_open_for_the_next_run(tmp_path: Path) -> None:
    whole: list[Any] = []
    never = StopSignal(grace_seconds=1)
    run(
        window_flow(TestingSource(SCENARIO), never, whole, stop_event=""),
        recovery_of(tmp_path / "a"),
    )
    recovery = recovery_of(tmp_path / "b")
    first: list[Any] = []
    stop = StopSignal(grace_seconds=1)
    run(window_flow(TestingSource(SCENARIO), stop, first), recovery)
    assert stop.requested
    assert [d.trigger for _, d in first if d.trigger == "end_of_input"] == []
    second: list[Any] = []
    run(window_flow(TestingSource(SCENARIO), never, second, stop_event=""), recovery)
    assert any(d.trigger == "end_of_input" for _, d in second), "the kept windows closed later"
    assert decided(first) | decided(second) == decided(whole), "as if never stopped"
    assert not decided(first) & decided(second), "no decision made twice"


def test_the_end_of_an_input_that_never_ends_by_itself_is_a_stop_elsewhere(tmp_path: Path) -> None:
    """Kafka, tailing: its partitions end only when a process of the cluster stops, so a process
    that got no signal keeps its windows too."""
    stop = StopSignal(grace_seconds=1, unbounded_input=True)
    out: list[Any] = []
    run(window_flow(TestingSource(SCENARIO), stop, out, stop_event=""), recovery_of(tmp_path))
    assert not stop.requested and stop.eof_means_stop
    assert [d.decision_id for _, d in out if d.trigger == "end_of_input"] == []


class _Counting(StatelessSourcePartition[int]):
    def __init__(self) -> None:
        self.n = 0

    def next_batch(self) -> list[int]:
        self.n += 1
        if self.n > 1000:
            raise StopIteration()
        return [self.n]


class CountingSource(DynamicSource[int]):
    """A source without resume state: 1, 2, ... 1000 on each worker."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Counting:
        return _Counting()


def test_a_source_without_resume_state_ends_at_a_stop_too() -> None:
    stop = StopSignal(grace_seconds=1)
    out: list[int] = []
    flow = Dataflow("stop_dynamic")
    items = op.input("in", flow, until_stopped(CountingSource(), stop))
    op.inspect("stop_at_5", items, stop_at(stop, lambda n: n == 5))
    op.output("out", items, TestingSink(out))
    run_main(flow)
    assert out[:5] == [1, 2, 3, 4, 5] and len(out) < 1000
    with pytest.raises(TypeError, match="not a Bytewax source"):
        until_stopped(object(), stop)  # type: ignore[arg-type]
