"""Logging of a flow process: one handler on stderr, UTC timestamps, flow and worker on every line.

`configure_logging` runs when a flow is built, before anything else logs. Every line carries a UTC
timestamp, the level, the logger, the flow and the worker:

    2026-12-06T04:49:14.123+00:00 INFO operators.llm.redis_cache [tickets w1] Redis cache ... back

or, with `fmt="json"`, one JSON object per line (`time`, `level`, `logger`, `flow`, `worker`,
`message`, and `exception` when there is one).

- Idempotent: a second call (a second flow built in the same process) finds its handler and
  updates it; it never adds another.
- A host program's logging is left alone: when the root logger already has handlers that are not
  ours (an application embedding the flow, pytest), no handler is added and the root level is not
  touched; only the level of Surgeflow's own loggers is set, and only when it was asked for.
- The level applies to Surgeflow's loggers (`flows`, `operators`, `schemas`); other libraries
  (httpx, openai, redis) stay at WARNING so DEBUG does not print every HTTP request.
- Worker: Bytewax runs its workers on threads that Rust's timely names `timely:work-<i>` (the
  index within the process); with the process index and workers per process given (`-i`, `-w`)
  the line shows the cluster-wide index, as `worker_index` in Bytewax's own APIs. A process with
  one worker runs it on the main thread, so there every main-thread line (the build included) is
  that worker's. Lines from other threads (the one that builds the flow when there are several
  workers, an LLM event loop) show `-`; a thread may name its worker with `bind_worker`.

`RateLimitedLog` is a `log(level, msg, *args)` sink that passes one line per kind per interval and
says how many it held back; librdkafka's log is routed through it
(`operators.connectors.kafka.config`).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any, Literal, Optional, TextIO

LogFormat = Literal["text", "json"]

OWN_LOGGERS = ("flows", "operators", "schemas")
"""Top-level loggers of Surgeflow's packages; `SURGEFLOW_LOG_LEVEL` sets their level."""

OTHER_LIBRARIES_LEVEL = logging.WARNING

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(flow)s %(worker)s] %(message)s"


class WorkerContext(logging.Filter):
    """Adds `flow` and `worker` to every record it sees (never drops one)."""

    def __init__(self, flow: str, *, process: int = 0, workers_per_process: int = 1) -> None:
        super().__init__()
        self.flow = flow
        self.process = process
        self.workers_per_process = workers_per_process
        self._local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        record.flow = getattr(record, "flow", None) or self.flow
        if not hasattr(record, "worker"):
            record.worker = self.worker_label()
        return True

    def worker_label(self) -> str:
        """`w<index>` of the Bytewax worker running this thread, or `-`."""
        bound = _bound_workers.get(threading.get_ident())
        if bound is not None:
            return bound
        local = _thread_worker_index()
        if local is None and self.workers_per_process == 1 and _on_main_thread():
            local = 0  # one worker per process: Bytewax runs it on the main thread
        if local is None:
            return "-"
        return f"w{self.process * self.workers_per_process + local}"


_bound_workers: dict[int, str] = {}


def bind_worker(worker_index: Optional[int]) -> None:
    """Name the worker the current thread works for (None forgets it)."""
    ident = threading.get_ident()
    if worker_index is None:
        _bound_workers.pop(ident, None)
    else:
        _bound_workers[ident] = f"w{worker_index}"


_names = threading.local()


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _thread_worker_index() -> Optional[int]:
    """The index in its process of the timely worker running this thread (cached per thread)."""
    cached = getattr(_names, "index", False)
    if cached is not False:
        return cached
    index = None
    try:
        path = f"/proc/self/task/{threading.get_native_id()}/comm"
        with open(path, encoding="utf-8") as comm:
            name = comm.read().strip()
        if name.startswith("timely:work-"):
            index = int(name.removeprefix("timely:work-"))
    except (OSError, ValueError):
        index = None
    _names.index = index
    return index


class UtcFormatter(logging.Formatter):
    """Text lines with an ISO 8601 UTC timestamp (milliseconds, `+00:00`)."""

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")


class JsonLinesFormatter(UtcFormatter):
    """One JSON object per line: time, level, logger, flow, worker, message[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "flow": getattr(record, "flow", None),
            "worker": getattr(record, "worker", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _FlowHandler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` installs; found again by its type."""


def configure_logging(
    flow: str,
    *,
    level: str = "INFO",
    level_given: bool = True,
    fmt: LogFormat = "text",
    process: int = 0,
    workers_per_process: int = 1,
    stream: Optional[TextIO] = None,
) -> bool:
    """Set up logging for a process running `flow`; return whether our handler is in place.

    `level_given` False (the level is a default, not asked for) leaves a host's levels alone.
    Safe to call again: the handler is reused and updated.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _FlowHandler)]
    hosted = any(not isinstance(h, _FlowHandler) for h in root.handlers)
    if hosted and not ours:
        if level_given:
            _set_own_levels(level)
        return False
    handler = ours[0] if ours else _FlowHandler(stream or sys.stderr)
    handler.setFormatter(JsonLinesFormatter() if fmt == "json" else UtcFormatter(_TEXT_FORMAT))
    context = next((f for f in handler.filters if isinstance(f, WorkerContext)), None)
    if context is None:
        context = WorkerContext(flow)
        handler.addFilter(context)
    context.flow, context.process = flow, process
    context.workers_per_process = max(workers_per_process, 1)
    if not ours:
        root.addHandler(handler)
        root.setLevel(OTHER_LIBRARIES_LEVEL)
    _set_own_levels(level)
    logging.captureWarnings(True)
    return True


def _set_own_levels(level: str) -> None:
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)


class RateLimitedLog:
    """A `log(level, msg, *args)` sink passing at most one line per kind every `interval` s.

    The kind of a line is `kind(level, msg, args)` (default: level and first argument, which is
    librdkafka's facility such as `FAIL`). A line let through after others of its kind were held
    back says how many. Thread-safe; `clock` is injectable.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = 10.0,
        kind: Optional[Callable[[int, str, tuple[Any, ...]], Hashable]] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._kind = kind or (lambda level, msg, args: (level, args[0] if args else msg))
        self._clock = clock
        self._lock = threading.Lock()
        self._next: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def log(self, level: int, msg: str, *args: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        kind = self._kind(level, msg, args)
        now = self._clock()
        with self._lock:
            if now < self._next.get(kind, float("-inf")):
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            self._next[kind] = now + self.interval
            held = self._held.pop(kind, 0)
        if held:
            msg = f"{msg} (and {held} more like it in the last {self.interval:g} s)"
        self.logger.log(level, msg, *args)

    def held_back(self) -> int:
        """Lines held back and not yet reported."""
        with self._lock:
            return sum(self._held.values())
