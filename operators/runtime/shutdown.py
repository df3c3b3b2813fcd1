"""Graceful stop: a signal ends the input, in-flight work finishes within a bound, exit 0.

Bytewax 0.21.1 checks for Python signals in its run loop (`Python::check_signals`, on the main
thread) and only stops on a handler that raises: SIGTERM's default action kills the process with
no final snapshot, SIGINT's raises `KeyboardInterrupt` through the workers. A handler that does not
raise lets the dataflow run on, so the stop is done in Python with what Bytewax does at the end of
a bounded input:

- `on_signals` installs handlers for SIGTERM and SIGINT that call `StopSignal.request`.
- Sources wrapped by `until_stopped` (below) end (`StopIteration`) at their
next batch;
  Bytewax then snapshots each partition's position, so the next run resumes right there.
- Every stateful step gets `on_eof`. Steps that hold a `StopSignal` tell the two ends apart
  (`eof_means_stop`: a stop was requested here, or the input never ends by itself, so another
  process of the cluster stopped): a decision window keeps its open windows for the next run
  instead of closing them as the end of the input; an async agent step waits for its calls in
  flight until the deadline (the signal plus `grace_seconds`) and keeps what is still unfinished
  in its snapshot, to submit again.
- Bytewax writes the snapshots of that last epoch and its frontier (an input that ended is
  progress), the workers finish and `python -m bytewax.run` exits 0; one INFO line says so.
  A partition reads, and so ends, only once the recovery writer has finished every earlier
  epoch, so the frontier written last is the final epoch + 1: the next run starts after it and
  writes no output of the stopped run again. Other inputs (the `WorkerProbe`s, which end at
  once and feed nothing) do not move it.

The stop is bounded: a watchdog ends the process with exit code 1 (and an ERROR line) when the
dataflow has not finished `grace_seconds + HARD_STOP_MARGIN_SECONDS` after the signal (another
process of the cluster that never got the signal holds its input open, a sink hangs); that run
resumes from its last periodic snapshot, as after a crash. A second signal ends the process at
once the same way. Nothing here names a flow; tests inject their own `StopSignal`.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import FrameType, TracebackType
from typing import Any, Optional, TypeVar

from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    Source,
    StatefulSourcePartition,
    StatelessSourcePartition,
)

log = logging.getLogger(__name__)

HARD_STOP_MARGIN_SECONDS = 5.0
"""Time after the grace for the last snapshot and the exit, before the watchdog ends the process."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HARD_STOP_EXIT_CODE = 1


class StopSignal:
    """A request to stop, shared by a process's sources and stateful steps (thread-safe).

    `requested` turns true once `request` is called and stays so. `remaining()` is the time left
    for in-flight work: `grace_seconds` from the request, never below zero. The steps that settle
    in-flight work report it with `settled`, for the one line logged at exit.

    `unbounded_input` says the flow's input never ends by itself (Kafka, tailing): then an end
    of the input seen by a stateful step is a stop even when this process got no signal (another
    process of the cluster did, and its partitions ended), so `eof_means_stop` holds.
    """

    def __init__(
        self,
        *,
        grace_seconds: float,
        unbounded_input: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if grace_seconds < 0:
            raise ValueError("grace_seconds must not be negative")
        self.grace_seconds = grace_seconds
        self.unbounded_input = unbounded_input
        self._clock = clock
        self._lock = threading.Lock()
        self._requested_at: Optional[float] = None
        self.reason: Optional[str] = None
        self.finished = 0
        self.kept = 0

    @property
    def requested(self) -> bool:
        return self._requested_at is not None

    @property
    def eof_means_stop(self) -> bool:
        """An end of the input now is a stop, not the input's end (keep state for next run)."""
        return self.unbounded_input or self.requested

    def request(self, reason: str = "requested") -> bool:
        """Ask every holder to stop; True for the first request, False when already asked."""
        with self._lock:
            if self._requested_at is not None:
                return False
            self._requested_at = self._clock()
            self.reason = reason
            return True

    def remaining(self) -> float:
        """Seconds left for in-flight work (all of the grace before a request)."""
        if self._requested_at is None:
            return self.grace_seconds
        return max(0.0, self._requested_at + self.grace_seconds - self._clock())

    def elapsed(self) -> float:
        """Seconds since the request (0 before one)."""
        return 0.0 if self._requested_at is None else self._clock() - self._requested_at

    def settled(self, *, finished: int, kept: int) -> None:
        """Count in-flight items a step let finish, and those it kept for the next run."""
        with self._lock:
            self.finished += finished
            self.kept += kept

    def summary(self) -> str:
        """The line that ends a stopped run."""
        return (
            f"stopped on {self.reason} in {self.elapsed():.1f} s: input ended, "
            f"{self.finished} in-flight items finished, {self.kept} kept in the snapshot for "
            "the next run; final snapshot written, exit 0"
        )


class _Handlers:
    """The signal handlers of one process and what they do at exit (installed once)."""

    def __init__(self, stop: StopSignal, exit_now: Callable[[int], None]) -> None:
        self.stop = stop
        self.exit_now = exit_now
        self.failed = False
        self._hook = sys.excepthook

    def install(self, signals: Sequence[signal.Signals]) -> None:
        for signum in signals:
            signal.signal(signum, self.on_signal)
        sys.excepthook = self.on_uncaught
        atexit.register(self.at_exit)

    def on_signal(self, signum: int, _frame: Optional[FrameType]) -> None:
        name = signal.Signals(signum).name
        if not self.stop.request(name):
            announce(logging.ERROR, f"second {name} while stopping: exiting now, no final snapshot")
            self.exit_now(HARD_STOP_EXIT_CODE)
            return
        bound = self.stop.grace_seconds + HARD_STOP_MARGIN_SECONDS
        watchdog = threading.Thread(
            target=self._watch, args=(name, bound), name="stop-watchdog", daemon=True
        )
        watchdog.start()

    def _watch(self, name: str, bound: float) -> None:
        time.sleep(bound)
        announce(
            logging.ERROR,
            f"stop on {name} did not finish in {bound:.0f} s: exiting without a final snapshot "
            "(the next run resumes from the last periodic one)",
        )
        self.exit_now(HARD_STOP_EXIT_CODE)

    def on_uncaught(
        self, kind: type[BaseException], value: BaseException, tb: Optional[TracebackType]
    ) -> None:
        self.failed = True
        self._hook(kind, value, tb)

    def at_exit(self) -> None:
        if self.stop.requested and not self.failed:
            announce(logging.INFO, self.stop.summary())


_installed: Optional[_Handlers] = None
_installed_lock = threading.Lock()


def on_signals(
    grace_seconds: float,
    *,
    install: bool,
    unbounded_input: bool = False,
    signals: Sequence[signal.Signals] = STOP_SIGNALS,
    exit_now: Callable[[int], None] = os._exit,
) -> StopSignal:
    """The `StopSignal` that SIGTERM and SIGINT request, when `install` (the process runs a
    dataflow, not a test) and this is the main thread; else a `StopSignal` nothing requests.

    Handlers are installed once per process; later calls return the same signal.
    """
    global _installed
    if not install or threading.current_thread() is not threading.main_thread():
        return StopSignal(grace_seconds=grace_seconds, unbounded_input=unbounded_input)
    with _installed_lock:
        if _installed is None:
            stop = StopSignal(grace_seconds=grace_seconds, unbounded_input=unbounded_input)
            handlers = _Handlers(stop, exit_now)
            handlers.install(signals)
            _installed = handlers
        return _installed.stop


def announce(level: int, line: str) -> None:
    """Log `line`; to stderr with a UTC timestamp when logging is not configured (so the stop
    line is seen even then), else through the logging configuration."""
    if logging.getLogger().handlers:
        log.log(level, line)
        return
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    sys.stderr.write(f"{stamp} {logging.getLevelName(level)} {log.name}: {line}\n")
    sys.stderr.flush()


X = TypeVar("X")
"""The item type of a wrapped source."""


class _StoppingPartition(StatefulSourcePartition[X, Any]):
    """A partition that ends at its first batch after the stop was requested."""

    def __init__(self, inner: StatefulSourcePartition[X, Any], stop: StopSignal) -> None:
        self._inner = inner
        self._stop = stop

    def next_batch(self) -> Iterable[X]:
        if self._stop.requested:
            raise StopIteration()
        return self._inner.next_batch()

    def next_awake(self) -> Optional[datetime]:
        # A paced partition may sleep until its next record; a stop wakes it at once.
        return None if self._stop.requested else self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class _StoppingStatelessPartition(StatelessSourcePartition[X]):
    def __init__(self, inner: StatelessSourcePartition[X], stop: StopSignal) -> None:
        self._inner = inner
        self._stop = stop

    def next_batch(self) -> Iterable[X]:
        if self._stop.requested:
            raise StopIteration()
        return self._inner.next_batch()

    def next_awake(self) -> Optional[datetime]:
        return None if self._stop.requested else self._inner.next_awake()

    def close(self) -> None:
        self._inner.close()


class _StoppingFixedSource(FixedPartitionedSource[X, Any]):
    def __init__(self, inner: FixedPartitionedSource[X, Any], stop: StopSignal) -> None:
        self._inner = inner
        self._stop = stop

    def list_parts(self) -> list[str]:
        return self._inner.list_parts()

    def build_part(
        self, step_id: str, for_part: str, resume_state: Optional[Any]
    ) -> _StoppingPartition[X]:
        part = self._inner.build_part(step_id, for_part, resume_state)
        return _StoppingPartition(part, self._stop)


class _StoppingDynamicSource(DynamicSource[X]):
    def __init__(self, inner: DynamicSource[X], stop: StopSignal) -> None:
        self._inner = inner
        self._stop = stop

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> _StoppingStatelessPartition[X]:
        part = self._inner.build(step_id, worker_index, worker_count)
        return _StoppingStatelessPartition(part, self._stop)


def until_stopped(source: Source[X], stop: StopSignal) -> Source[X]:
    """`source`, whose partitions end (`StopIteration`) at their next batch once `stop` is
    requested, without reading more. A stateful partition's resume state is its position after
    the last record it emitted, which Bytewax snapshots as the partition ends."""
    if isinstance(source, FixedPartitionedSource):
        return _StoppingFixedSource(source, stop)
    if isinstance(source, DynamicSource):
        return _StoppingDynamicSource(source, stop)
    raise TypeError(f"cannot stop a {type(source).__name__}: not a Bytewax source")
