"""Progress bars for the long commands a person runs, and silence for everything else.

    with progress("producing", total=33_000, unit="records", off=args.no_progress) as bar:
        for chunk in chunks:
            bar.advance(len(chunk))

A bar is drawn (with `rich`, on stderr) only when stderr is a terminal whose `TERM` is not `dumb`,
and neither `--no-progress` (`add_flag`) nor `SURGEFLOW_NO_PROGRESS` (any value but empty, `0`,
`false` or `no`) turns it off. Otherwise `progress` yields a bar that does nothing: no control
characters reach a pipe, a file or a CI log, and the commands' plain summary lines are printed
either way. While a bar is up, `print` to stderr (and to stdout when stdout is the same kind of
terminal) appears above it; output of child processes that write to the terminal themselves does
not, so commands keep a bar only around work that prints through this process.

Generic: it names no flow, and `rich` is imported only when a bar is drawn.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Optional, TextIO

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

    def advance(self, amount: float = 1) -> None:
        """`amount` more units done."""

    def total(self, total: Optional[float]) -> None:
        """The number of units of the whole job (None: not known)."""

    def describe(self, description: str) -> None:
        """A new label before the bar (the step it is at)."""


class _RichBar(Bar):
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def advance(self, amount: float = 1) -> None:
        self._progress.advance(self._task, amount)

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
) -> Iterator[Bar]:
    """A bar labelled `description` counting `unit`s up to `total` (None: a count with no end),
    drawn while the block runs if `wanted`, left on screen at its final count afterwards."""
    stream = sys.stderr if stream is None else stream
    if not wanted(off=off, stream=stream):
        yield Bar()
        return
    with _rich_progress(stream, unit) as shown:
        yield _RichBar(shown, shown.add_task(description, total=total))


@contextmanager
def _rich_progress(stream: TextIO, unit: str) -> Iterator[Progress]:
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
        """Units per second, once there is a rate."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data")

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
        redirect_stdout=same_terminal,
        redirect_stderr=stream is sys.stderr,
    ) as shown:
        yield shown
