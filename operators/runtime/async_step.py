"""`map_async`: run an async function on every item of a stream without ever blocking the worker.

Each Bytewax worker gets one `AsyncRunner` (an event loop in a daemon thread) and one
`PendingBound` (`StepParams.max_pending` unfinished items), created lazily the first time the
worker submits an item and held per worker thread outside any state, so nothing unpicklable
reaches a snapshot. The runner is closed when its worker thread ends or the process exits.
The lane state machine is `operators.runtime.inflight.Lane`; `LaneLogic` is its thin Bytewax
adapter. Items keep to the worker they are on: each worker's lanes are lane keys that Bytewax
routes to that worker (`operators.runtime.placement`); a `WorkerProbe` source
(`operators.runtime.exchange`) tells each worker thread its index and the worker count as the
dataflow starts. A step that can make no call (`StepParams.rules_only`: no LLM endpoint) and has a
`ready` answers a batch at a time on the worker thread instead, without lanes.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional, TypeVar, Union

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from operators.config.llm import LLMSettings
from operators.runtime.exchange import probe_workers
from operators.runtime.inflight import AsyncFailure, Lane, PendingBound, lane_for
from operators.runtime.metrics import PENDING
from operators.runtime.placement import LaneTable, this_worker
from operators.runtime.runner import RUNNER_MARGIN_SECONDS, AsyncRunner, item_bound_seconds
from operators.runtime.shutdown import StopSignal
from operators.runtime.wire import Wire, unwire
from schemas.common import utc_now

__all__ = ["AsyncFailure", "LaneLogic", "map_async", "worker_bound", "worker_runner"]

X = TypeVar("X")
Y = TypeVar("Y")

LaneState = dict[str, Any]
"""`Lane.snapshot()`: `{"version": 1, "pending": [(seq, item), ...]}`."""


class _WorkerLocal:
    """One worker thread's runners (by item bound) and pending bounds (by limit)."""

    def __init__(self) -> None:
        self.runners: dict[float, AsyncRunner] = {}
        self.bounds: dict[int, PendingBound] = {}
        weakref.finalize(self, _close_all, self.runners)


def _close_all(runners: dict[float, AsyncRunner]) -> None:
    for runner in runners.values():
        runner.close()
    runners.clear()


_local = threading.local()
_by_ident: dict[int, _WorkerLocal] = {}
_by_ident_lock = threading.Lock()


def _worker() -> _WorkerLocal:
    """The calling thread's `_WorkerLocal`.

    Bytewax's worker threads are started by its Rust core, not by Python: their Python thread
    state (and with it every `threading.local`) is dropped each time the worker releases the
    GIL, so for them the holder is also kept by thread id, for the life of the process (closed
    at exit). A thread Python started keeps it in a thread-local, closed when the thread ends.
    """
    found: Optional[_WorkerLocal] = getattr(_local, "worker", None)
    if found is None:
        if isinstance(threading.current_thread(), threading._DummyThread):
            with _by_ident_lock:
                found = _by_ident.get(threading.get_ident())
                if found is None:
                    found = _by_ident[threading.get_ident()] = _WorkerLocal()
        else:
            found = _WorkerLocal()
        _local.worker = found
    return found


@dataclass(frozen=True)
class StepParams:
    """What bounds an async step: its keyed `lanes`, the unfinished items a worker may hold
    (`max_pending`), how often finished items leave without input (`poll_seconds`) and how long
    one item may run (`item_bound_seconds`)."""

    lanes: int
    max_pending: int
    poll_seconds: float
    item_bound_seconds: float
    rules_only: bool = False
    """No call can be made (no LLM endpoint): `ready` answers every item on the worker thread,
    so a step with `ready` answers its items a batch at a time, without lanes (`map_async`)."""

    @classmethod
    def from_settings(cls, llm: LLMSettings) -> StepParams:
        """The bounds of an agent step calling the LLM layer configured by `llm`."""
        return cls(
            lanes=llm.lanes, max_pending=llm.max_pending, poll_seconds=llm.poll_seconds,
            item_bound_seconds=item_bound_seconds(llm), rules_only=not llm.enabled,
        )  # fmt: skip


def worker_runner(bound_seconds: float) -> AsyncRunner:
    """The calling thread's (worker's) runner bounding each item to `bound_seconds`, created
    on first use."""
    runners = _worker().runners
    runner = runners.get(bound_seconds)
    if runner is None or runner.closed:
        name = threading.current_thread().name
        runner = runners[bound_seconds] = AsyncRunner(call_timeout=bound_seconds, name=name)
    return runner


def worker_bound(limit: int) -> PendingBound:
    """The calling thread's (worker's) bound of `limit` unfinished items, shared by all its
    lanes."""
    bounds = _worker().bounds
    if limit not in bounds:
        bounds[limit] = PendingBound(limit)
    return bounds[limit]


async def _apply(fn: Callable[[X], Awaitable[Y]], item: X) -> Y:
    return await fn(item)


class LaneLogic(StatefulBatchLogic[Union[Wire[X], X], Any, LaneState]):
    """Bytewax face of one `Lane`: submit on `on_batch`, emit what finished on every call.

    Asks to be notified `poll_seconds` from `now()` while items are pending, so results leave
    without new input; waits up to `drain_seconds` for the rest on EOF; is discarded whenever
    nothing is pending. Keeps `PENDING` (items handed over and not yet emitted) of `flow` up
    to date.
    An EOF that `stop` calls a stop (`eof_means_stop`) is not the end of the input: the lane
    waits for its items until the stop's deadline and keeps the unfinished ones in its snapshot.
    """

    def __init__(
        self,
        lane: Lane[X, Any],
        *,
        poll_seconds: float,
        drain_seconds: float,
        now: Callable[[], datetime] = utc_now,
        stop: Optional[StopSignal] = None,
        flow: str,
    ) -> None:
        self.lane = lane
        self.pending = PENDING.labels(flow)
        self.poll_every = timedelta(seconds=poll_seconds)
        self.drain_seconds = drain_seconds
        self.now = now
        self.stop = stop

    def restore(self, state: LaneState, *, step: Optional[str] = None) -> None:
        """Submit again the items of a snapshot (raises `IncompatibleStateError`, naming `step`,
        on a version this build cannot read)."""
        self.lane.restore(state, step=step)
        self.pending.inc(len(self.lane))

    def on_batch(self, values: list[Union[Wire[X], X]]) -> tuple[Iterable[Any], bool]:
        def submit_then_poll() -> list[Any]:
            self.lane.submit([unwire(v) for v in values])
            return self.lane.poll()

        return self._emit(submit_then_poll)

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        return self._emit(self.lane.poll)

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        if self.stop is not None and self.stop.eof_means_stop:
            return self._emit(self._settle)
        return self._emit(lambda: self.lane.drain(self.drain_seconds))

    def _settle(self) -> list[Any]:
        """A stop: emit what finishes before the deadline, keep the rest (in the snapshot)."""
        assert self.stop is not None
        before = len(self.lane)
        out = self.lane.settle(self.stop.remaining())
        self.stop.settled(finished=before - len(self.lane), kept=len(self.lane))
        return out

    def notify_at(self) -> Optional[datetime]:
        return self.now() + self.poll_every if len(self.lane) else None

    def snapshot(self) -> LaneState:
        return self.lane.snapshot()

    def _emit(self, step: Callable[[], list[Any]]) -> tuple[Iterable[Any], bool]:
        out = self._tracked(step)
        return out, StatefulBatchLogic.RETAIN if len(self.lane) else StatefulBatchLogic.DISCARD

    def _tracked(self, step: Callable[[], list[Any]]) -> list[Any]:
        before = len(self.lane)
        try:
            return step()
        finally:
            self.pending.inc(len(self.lane) - before)


@operator
def map_async(
    step_id: str,
    up: Stream[X],
    fn: Callable[[X], Awaitable[Y]],
    *,
    key: Callable[[X], str],
    params: StepParams,
    ready: Optional[Callable[[X], Optional[Y]]] = None,
    stop: Optional[StopSignal] = None,
    flow: str,
) -> Stream[Y | AsyncFailure[X]]:
    """Apply an async `fn` to every item, many at once, emitting each result when it is ready.

    Consumes: items `X` of `up` (any shape; `fn` and `key` get the item as it is).

    Emits: `fn(item)` for every item exactly once, in completion order across keys but never
    before an earlier item with the same `key(item)` (so a session's replies keep message
    order). An item whose `fn` raised, or ran longer than `params.item_bound_seconds`, is
    emitted as `AsyncFailure(item, error_type, error)` instead, so one bad item never stops the
    dataflow. `fn` should turn its expected failures into data itself; `AsyncFailure` is the
    safety net, and flows dead-letter it.

    Keeps: per lane the items not yet emitted. An item's lane is one of the lanes Bytewax
    routes to the worker the item is on (`placement.LaneTable`: about `params.lanes` / workers
    lanes per worker, picked by CRC-32 of `key(item)`), so items never change worker or process
    here; per-key order holds for the items of a key that come from one worker (a step keyed by
    the same key sends all of them from one). With one worker a key's lane is `lane_for(key,
    params.lanes)`. After a resume with another worker count, an item kept in a snapshot is
    submitted again in the lane it was kept in, which may not be the lane its key's new items
    go to: those may leave before it. Its snapshot is those items and their sequence
    numbers (`{"version": 1, "pending": [...]}`), never futures; on resume they are submitted
    again (the LLM layer's cache makes already-answered calls free). A lane with nothing pending
    is discarded; on EOF a lane waits for its items (at most the item bound) and is discarded.
    When `stop` (an `operators.runtime.shutdown.StopSignal`) says an EOF means a stop (it was
    requested, or the input never ends by itself), the EOF is a graceful stop instead: a lane
    waits for its items until `stop.remaining()` runs out, emits those that finished and keeps
    the rest in its snapshot, submitted again by the next run.

    `ready(item)`, when given, answers an item on the worker thread when no call is needed (the
    rules path): a non-None answer skips the event loop, the future and the pending bound (see
    `Lane`) but still leaves in per-key order.

    With `params.rules_only` (no LLM endpoint configured) and a `ready`, every item is answered
    by `ready` as its batch arrives, one Python call per batch, and leaves in input order: no
    lane, future, lock or metric per item. Should `ready` leave an item to the call all the
    same, the call is made and waited for (at most the item bound, then a `TimeoutError`
    failure). The lanes stay in the dataflow, fed nothing, so the items a snapshot of a run with
    an endpoint kept are submitted again on resume and leave (possibly after newer items of
    their key, which no longer wait in a lane).

    The worker never waits for one call: items start on the worker's `AsyncRunner` at once and
    finished ones leave on the next batch or poll (`params.poll_seconds`). Only when
    `params.max_pending` items of the worker are unfinished does a batch wait for one.
    Items handed over and not yet emitted count in `surgeflow_llm_pending{flow}`.
    """
    bound_seconds = params.item_bound_seconds

    def submit(item: X) -> Future[Y]:
        return worker_runner(bound_seconds).submit(_apply(fn, item))

    calls = f"{up._scope.parent_id}.calls"  # the stateful step's id, as Bytewax names it

    def build(resume: Optional[LaneState]) -> LaneLogic[X]:
        lane: Lane[X, Y] = Lane(
            submit,
            key,
            bound=worker_bound(params.max_pending),
            wait_seconds=bound_seconds + RUNNER_MARGIN_SECONDS,
            ready=ready,
        )
        logic = LaneLogic(
            lane,
            poll_seconds=params.poll_seconds,
            drain_seconds=bound_seconds + RUNNER_MARGIN_SECONDS,
            stop=stop,
            flow=flow,
        )
        if resume is not None:
            logic.restore(resume, step=calls)
        return logic

    tables: dict[tuple[int, int], LaneTable] = {}

    def to_lanes(batch: list[X]) -> list[tuple[str, Wire[X]]]:
        """Each item with a lane that Bytewax routes to this worker; an item still wrapped in a
        `Wire`, pickled once if it ever had to cross (no worker noted: `lane_for`)."""
        worker = this_worker()
        if worker is None:
            return [(lane_for(key(item), params.lanes), Wire(item)) for item in batch]
        table = tables.get(worker)
        if table is None:
            table = tables[worker] = LaneTable(*worker, params.lanes)
        lane = table.lane
        return [(lane(key(item)), Wire(item)) for item in batch]

    probe_workers(up)
    if ready is None or not params.rules_only:
        lanes: op.KeyedStream[Union[Wire[X], X]] = op.flat_map_batch("lane", up, to_lanes)
        return _values("unlane", op.stateful_batch("calls", lanes, build))
    wait_seconds = bound_seconds + RUNNER_MARGIN_SECONDS

    def answer_all(batch: list[X]) -> list[Y | AsyncFailure[X]]:
        """The outcome of each item, as a lane gives them: `ready`'s answer, or an
        `AsyncFailure` of what it raised. Should `ready` leave an item to the call after all,
        the call is made and waited for (`_called`)."""
        answers: list[Y | AsyncFailure[X]] = []
        append = answers.append
        for item in batch:
            try:
                answer = ready(item)
            except Exception as exc:
                append(AsyncFailure.of(item, exc))
                continue
            if answer is None:
                called = _called(submit, wait_seconds, item)
                append(called)
            else:
                append(answer)
        return answers

    answered = op.flat_map_batch("answer", up, answer_all)
    # No item enters a lane. The lanes stay, fed nothing, so that the items a snapshot kept (of
    # a run that could call) are submitted again and emitted.
    nothing: op.KeyedStream[Union[Wire[X], X]] = op.flat_map_batch("lane", up, _nothing)
    kept = _values("unlane", op.stateful_batch("calls", nothing, build))
    return op.merge("merge", answered, kept)


def _nothing(batch: list[Any]) -> list[Any]:
    return []


def _values(step_id: str, up: op.KeyedStream[Y]) -> Stream[Y]:
    """`op.key_rm`, a batch at a time (one Python call per batch, not per item)."""
    return op.flat_map_batch(step_id, up, lambda batch: [value for _, value in batch])


def _called(submit: Callable[[X], Future[Y]], wait_seconds: float, item: X) -> Y | AsyncFailure[X]:
    """The outcome of `item`'s call in a rules-only step (`StepParams.rules_only`) whose rules
    left it to the call: made and waited for (at most `wait_seconds`)."""
    future = submit(item)
    try:
        return future.result(timeout=wait_seconds)
    except FutureTimeout:
        future.cancel()
        return AsyncFailure.of(item, TimeoutError("item did not finish within its bound"))
    except Exception as exc:
        return AsyncFailure.of(item, exc)
