"""The items one lane of an async step has in flight: submitted, polled, emitted, snapshotted.

Plain Python, no Bytewax: `operators.runtime.async_step.map_async` wraps a `Lane` per lane key in a
`StatefulBatchLogic`. A lane hands every item to a `submit` callable that starts the work and
returns a `concurrent.futures.Future` at once, unless its `ready` callable answers the item on
the spot (the rules path: no future, no lock, no slot of the bound, when no earlier item of its
key is still in the lane). `poll` returns what has finished, in completion
order across keys, but never an item before an earlier item of the same key. A `PendingBound`
shared by the lanes of a worker caps how many items are unfinished, so `submit` waits only when
that many are. A snapshot holds the unemitted items themselves (the requests, never futures):
restoring submits them again. Snapshots go through `LANE_STATE`
(`operators.runtime.state.VersionedState`): one of a version this build cannot read stops the
flow with `IncompatibleStateError` rather than drop the calls it holds.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Optional, TypeVar, cast

from operators.errors import IncompatibleStateError as IncompatibleStateError
from operators.runtime.state import VersionedState

log = logging.getLogger(__name__)

X = TypeVar("X")
Y = TypeVar("Y")

STATE_VERSION = 1
"""Layout of `Lane.snapshot()`: `{"version": 1, "pending": [(seq, item), ...]}`; bump on change."""

MAX_ERROR_CHARS = 2000


LANE_STATE = VersionedState("async step lane", STATE_VERSION)
"""The snapshot layout of one lane; not disposable (its calls in flight would be lost)."""


@dataclass(frozen=True)
class AsyncFailure(Generic[X]):
    """An item whose async function raised, emitted in place of its result.

    `error_type` is the exception's class name (`TimeoutError` when the item outran its bound)
    and `error` its message, cut to 2000 characters. The item is kept as it came in, so the flow
    can `op.branch` failures (`isinstance(x, AsyncFailure)`) to its dead-letter output.
    """

    item: X
    error_type: str
    error: str

    @classmethod
    def of(cls, item: X, exc: BaseException) -> AsyncFailure[X]:
        text = str(exc) or type(exc).__name__
        return cls(item=item, error_type=type(exc).__name__, error=text[:MAX_ERROR_CHARS])


def lane_for(key: str, lanes: int) -> str:
    """The lane of a stream key: a stable hash (CRC-32, the same in every process) mod `lanes`."""
    return str(zlib.crc32(key.encode("utf-8")) % lanes)


class PendingBound:
    """At most `limit` unfinished items (queued or in flight) among the lanes sharing it."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._used = 0
        self._freed = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    def acquire(self, timeout: Optional[float] = None) -> bool:
        """Take a slot, waiting up to `timeout` s for one to free. Past that the slot is taken
        anyway (over the limit, so a stuck item cannot stop the worker) and False is returned."""
        with self._freed:
            free = self._freed.wait_for(lambda: self._used < self.limit, timeout)
            self._used += 1
            return free

    def release(self) -> None:
        with self._freed:
            self._used -= 1
            self._freed.notify()


@dataclass
class _Entry(Generic[X, Y]):
    seq: int
    key: str
    item: X
    future: concurrent.futures.Future[Y]
    expired: bool = False


class Lane(Generic[X, Y]):
    """One lane's unemitted items, by sequence number, and the order they may leave in.

    Consumes items (`submit`); emits each item's result, or an `AsyncFailure` for an item whose
    future raised or was cancelled (`poll`, `drain`). Keeps every item not yet emitted (finished
    or not) with its sequence number and future, and per key the sequence numbers in order.
    """

    def __init__(
        self,
        submit: Callable[[X], concurrent.futures.Future[Y]],
        key: Callable[[X], str],
        *,
        bound: PendingBound,
        wait_seconds: Optional[float] = None,
        ready: Optional[Callable[[X], Optional[Y]]] = None,
    ) -> None:
        self._submit = submit
        self._key = key
        self._bound = bound
        self._wait_seconds = wait_seconds
        self._answer_now = ready
        self._answered: list[tuple[int, X, Y | AsyncFailure[X]]] = []
        """Items `ready` answered on submit, not yet emitted: (seq, item, outcome)."""
        self._entries: dict[int, _Entry[X, Y]] = {}
        self._by_key: dict[str, deque[int]] = {}
        self._finished: deque[int] = deque()  # appended by futures' callbacks, in any thread
        self._ready: set[int] = set()
        self._next_seq = 0

    def __len__(self) -> int:
        """Items submitted and not yet emitted."""
        return len(self._entries) + len(self._answered)

    def submit(self, items: Iterable[X]) -> None:
        """Start every item, in order; waits while the shared bound is full."""
        for item in items:
            self._start(self._next_seq, item)
            self._next_seq += 1

    def poll(self) -> list[Y | AsyncFailure[X]]:
        """What may leave now: finished items in completion order, each after its key's earlier
        items (a finished item waits in the lane for them)."""
        out: list[Y | AsyncFailure[X]] = []
        if self._answered:
            out.extend(outcome for _, _, outcome in self._answered)
            self._answered.clear()
        while self._finished:
            seq = self._finished.popleft()
            entry = self._entries.get(seq)
            if entry is None or seq in self._ready:
                continue
            self._ready.add(seq)
            out.extend(self._release(entry.key))
        return out

    def drain(self, timeout: Optional[float]) -> list[Y | AsyncFailure[X]]:
        """Wait up to `timeout` s for every item, then emit all of them; those still unfinished
        become `AsyncFailure`s with a `TimeoutError` (their futures are cancelled)."""
        concurrent.futures.wait([e.future for e in self._entries.values()], timeout)
        for entry in self._entries.values():
            if not entry.future.done():
                entry.expired = True
                entry.future.cancel()
                self._finished.append(entry.seq)
        return self.poll()

    def settle(self, timeout: Optional[float]) -> list[Y | AsyncFailure[X]]:
        """Wait up to `timeout` s for every item, then emit what may leave (as `poll`); what is
        still unfinished stays in the lane, running, for the snapshot (a graceful stop)."""
        concurrent.futures.wait([e.future for e in self._entries.values()], timeout)
        return self.poll()

    def snapshot(self) -> dict[str, Any]:
        """`{"version": 1, "pending": [(seq, item), ...]}`: the unemitted items, in order."""
        pending = [(seq, entry.item) for seq, entry in self._entries.items()]
        pending += [(seq, item) for seq, item, _ in self._answered]
        pending.sort(key=lambda pair: pair[0])
        return LANE_STATE.dump({"pending": pending})

    def restore(self, snapshot: dict[str, Any], *, step: Optional[str] = None) -> None:
        """Submit again the items of a `snapshot()` (into an empty lane), keeping their order;
        one this build cannot read raises `IncompatibleStateError` naming `step`."""
        state = LANE_STATE.load(snapshot, step=step)
        if state is None:
            return
        for seq, item in sorted(state["pending"], key=lambda pair: pair[0]):
            self._start(seq, item)
            self._next_seq = max(self._next_seq, seq + 1)

    def _start(self, seq: int, item: X) -> None:
        submit = self._submit
        if self._answer_now is not None:
            answered = _answer(self._answer_now, item)
            if answered is not None:
                key = self._key(item)
                if key not in self._by_key:  # nothing of its key before it: it may leave now
                    self._answered.append((seq, item, answered[0]))
                    return
                submit = _finished(answered)  # behind its key's earlier items
        if not self._bound.acquire(self._wait_seconds):
            log.warning("no pending slot freed in %s s; going over the bound", self._wait_seconds)
        try:
            future = submit(item)
        except BaseException:
            self._bound.release()
            raise
        key = self._key(item)
        self._entries[seq] = _Entry(seq, key, item, future)
        self._by_key.setdefault(key, deque()).append(seq)
        future.add_done_callback(lambda _: self._done(seq))

    def _done(self, seq: int) -> None:
        self._bound.release()
        self._finished.append(seq)

    def _release(self, key: str) -> list[Y | AsyncFailure[X]]:
        """Emit the finished items at the head of `key`'s queue, in order."""
        queue = self._by_key[key]
        out: list[Y | AsyncFailure[X]] = []
        while queue and queue[0] in self._ready:
            seq = queue.popleft()
            self._ready.discard(seq)
            outcome: Y | AsyncFailure[X] = _outcome(self._entries.pop(seq))
            out.append(outcome)
        if not queue:
            del self._by_key[key]
        return out


def _answer(
    ready: Callable[[X], Optional[Y]], item: X
) -> Optional[tuple[Y | AsyncFailure[X], Optional[Exception]]]:
    """`ready`'s outcome for `item` (its answer, or the failure it raised) and that failure;
    None when `ready` leaves the item to the call."""
    try:
        answer = ready(item)
    except Exception as exc:
        return AsyncFailure.of(item, exc), exc
    if answer is None:
        return None
    return answer, None


def _finished(
    answered: tuple[Y | AsyncFailure[X], Optional[Exception]],
) -> Callable[[X], concurrent.futures.Future[Y]]:
    """A submit that returns `_answer`'s outcome as a finished future (made only for an item
    that waits behind its key's earlier items; the others leave without one)."""
    outcome, error = answered
    done: concurrent.futures.Future[Y] = concurrent.futures.Future()
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(cast(Y, outcome))
    return lambda _: done


def _outcome(entry: _Entry[X, Y]) -> Y | AsyncFailure[X]:
    future = entry.future
    if entry.expired:
        return AsyncFailure.of(entry.item, TimeoutError("item did not finish within its bound"))
    if future.cancelled():
        return AsyncFailure.of(entry.item, concurrent.futures.CancelledError("item was cancelled"))
    error = future.exception()
    return future.result() if error is None else AsyncFailure.of(entry.item, error)
