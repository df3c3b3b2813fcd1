"""Progress bars for the long commands a person runs, and silence for everything else.

    with progress("producing", total=33_000, unit="records", off=args.no_progress) as bar:
        for chunk in chunks:
            bar.advance(len(chunk))

A bar is drawn (with `rich`, on stderr) only when stderr is a terminal whose `TERM` is not `dumb`,
and neither `--no-progress` (`add_flag`) nor `SURGEFLOW_NO_PROGRESS` (any value but empty, `0`,
`false` or `no`) turns it off. Otherwise `progress` yields a bar that does nothing: no control
characters reach a pipe, a file or a CI log, and the commands' plain summary lines are printed
either way. While a bar is up, `print` to stderr (and to stdout when stdout is the same kind of
terminal) appears above it. A child process would write to the terminal past the bar, so
`run_counting` runs one with its stdout and stderr passed through this process while a bar is up.

Generic: it names no flow, and `rich` is imported only when a bar is drawn.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Optional, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

ENV = "SURGEFLOW_NO_PROGRESS"
_FALSE = {"", "0", "false", "no"}


def add_flag(parser: argparse.ArgumentParser) -> None:
    """`--no-progress` on a command's parser (`args.no_progress`)."""
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help=f"never draw a progress bar (also {ENV}=1); none is drawn unless stderr is a terminal",
    )


def off_by_flag(args: argparse.Namespace) -> bool:
    """Whether `--no-progress` was given; if so, `SURGEFLOW_NO_PROGRESS=1` is set too, so no later
    bar of this process, nor any of its child processes, is drawn."""
    if getattr(args, "no_progress", False):
        os.environ[ENV] = "1"
        return True
    return False


def wanted(*, off: bool = False, stream: Optional[TextIO] = None) -> bool:
    """Whether a bar is drawn on `stream` (default stderr): a terminal, not `TERM=dumb`, and not
    turned off by `off` or the environment."""
    if off or os.environ.get(ENV, "").strip().lower() not in _FALSE:
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class Bar:
    """One bar: `advance` by a number of units, `total` when it becomes known. This base class
    draws nothing (the bar of a pipe, a file, or `--no-progress`)."""

    drawn = False

    def advance(self, amount: float = 1) -> None:
        """`amount` more units done."""

    def completed(self, amount: float) -> None:
        """`amount` units done in all."""

    def total(self, total: Optional[float]) -> None:
        """The number of units of the whole job (None: not known)."""

    def describe(self, description: str) -> None:
        """A new label before the bar (the step it is at)."""


class _RichBar(Bar):
    drawn = True

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def advance(self, amount: float = 1) -> None:
        self._progress.advance(self._task, amount)

    def completed(self, amount: float) -> None:
        self._progress.update(self._task, completed=amount)

    def total(self, total: Optional[float]) -> None:
        self._progress.update(self._task, total=total)

    def describe(self, description: str) -> None:
        self._progress.update(self._task, description=description)


@contextmanager
def progress(
    description: str,
    *,
    total: Optional[float] = None,
    unit: str = "records",
    off: bool = False,
    stream: Optional[TextIO] = None,
    refresh: float = 8.0,
) -> Iterator[Bar]:
    """A bar labelled `description` counting `unit`s up to `total` (None: a count with no end),
    drawn while the block runs if `wanted`, left on screen at its final count afterwards (a full
    bar, when the block ends without an error). It is redrawn `refresh` times a second by a
    thread of its own (benchmarks that time work in this process ask for 1)."""
    stream = sys.stderr if stream is None else stream
    if not wanted(off=off, stream=stream):
        yield Bar()
        return
    with _rich_progress(stream, unit, refresh) as shown:
        task = shown.add_task(description, total=total)
        yield _RichBar(shown, task)
        if shown.tasks[0].total is None:  # a count with no end ends as a full bar
            shown.update(task, total=shown.tasks[0].completed)


class Child(subprocess.Popen[bytes]):
    """A child process started by `popen`; `pumps` pass its output through (none: inherited)."""

    pumps: list[threading.Thread]

    def join_output(self) -> None:
        """Wait until what the ended child wrote has been passed through."""
        for pump in self.pumps:
            pump.join()


def popen(command: Sequence[str], *, through: Optional[bool] = None, **options: Any) -> Child:
    """`subprocess.Popen(command, **options)`, but while bars are drawn (`through`, by default
    `wanted()`) the child's stdout and stderr (those not given in `options`) come through this
    process line by line, so they print above a bar instead of across it. Otherwise the child
    inherits them as usual."""
    if through is None:
        through = wanted()
    passed = [name for name in ("stdout", "stderr") if through and name not in options]
    options |= dict.fromkeys(passed, subprocess.PIPE)
    child = Child(list(command), **options)
    child.pumps = [
        threading.Thread(target=_pump, args=(getattr(child, n), getattr(sys, n)), daemon=True)
        for n in passed
    ]
    for pump in child.pumps:
        pump.start()
    return child


def run_counting(
    command: Sequence[str],
    bar: Bar,
    count: Callable[[], float],
    *,
    timeout: Optional[float] = None,
    every: float = 0.25,
    **options: Any,
) -> int:
    """Run `command` to its end (`popen`, passing its output through while `bar` is drawn) and
    return its exit code, moving `bar` to `count()` every `every` seconds and once at the end
    (`count` is not called when the bar is not drawn). Past `timeout` seconds the child is
    killed and `subprocess.TimeoutExpired` raised."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with popen(command, through=bar.drawn, **options) as child:
        while True:
            try:
                child.wait(every)
                break
            except subprocess.TimeoutExpired:
                if bar.drawn:
                    bar.completed(count())
                if deadline is not None and time.monotonic() > deadline:
                    child.kill()
                    raise subprocess.TimeoutExpired(list(command), timeout or 0.0) from None
        child.join_output()
        if bar.drawn:
            bar.completed(count())
        return child.returncode


def _pump(source: IO[bytes], sink: TextIO) -> None:
    for line in iter(source.readline, b""):
        sink.write(line.decode("utf-8", "replace"))
        sink.flush()


@contextmanager
def _rich_progress(stream: TextIO, unit: str, refresh: float) -> Iterator[Progress]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        """Units per second, once there is one of at least 1 (runs that take seconds each show
        none: their elapsed and remaining times say it)."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            shown = "" if speed is None or speed < 1 else f"{speed:,.0f}/s"
            return Text(shown, style="progress.data")

    columns: list[Any] = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TextColumn(unit),
        Rate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    # stdout goes through the bar's console only when it is a terminal too: a redirected stdout
    # keeps its bytes, unmixed with the bar's stream.
    same_terminal = sys.stdout is not None and sys.stdout.isatty()
    with Progress(
        *columns,
        console=Console(file=stream),
        refresh_per_second=refresh,
        redirect_stdout=same_terminal,
        redirect_stderr=stream is sys.stderr,
    ) as shown:
        yield shown
