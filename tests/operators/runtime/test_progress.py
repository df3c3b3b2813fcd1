"""`operators.runtime.progress`: a bar on a real terminal, nothing on a pipe or when turned off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from operators.runtime.progress import ENV, progress, wanted
from tests.support.terminal import (
    ESCAPE,
    plain,
    run_on_pipes,
    run_on_terminal,
    screen_lines,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))

# Five rounds with a line printed in the middle of the bar, and a summary line after it.
SCRIPT = textwrap.dedent(
    """
    import sys
    from operators.runtime.progress import progress
    with progress("measuring", total=5, unit="rounds", off="--no-progress" in sys.argv) as bar:
        for n in range(5):
            if n == 2:
                print("halfway line")
            bar.advance()
    print("measured 5 rounds")
    """
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    yield {**os.environ, "PYTHONPATH": ROOT}


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def test_wanted_on_a_terminal_only(env: dict[str, str], terminal: tuple[int, int]) -> None:
    tty = open(terminal[1], "w", closefd=False)  # noqa: SIM115
    read, write = os.pipe()
    pipe = open(write, "w")  # noqa: SIM115
    try:
        assert wanted(stream=tty)
        assert not wanted(stream=pipe)
        assert not wanted(stream=tty, off=True)
    finally:
        pipe.close()
        os.close(read)


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_the_environment_turns_it_off(
    env: dict[str, str], terminal: tuple[int, int], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    tty = open(terminal[1], "w", closefd=False)  # noqa: SIM115
    monkeypatch.setenv(ENV, value)
    assert not wanted(stream=tty)
    monkeypatch.setenv(ENV, "0")
    assert wanted(stream=tty)
    monkeypatch.setenv("TERM", "dumb")
    assert not wanted(stream=tty)


def test_a_bar_off_draws_nothing_and_counts_nothing(env: dict[str, str]) -> None:
    read, write = os.pipe()
    with open(write, "w") as pipe, progress("x", total=3, stream=pipe) as bar:
        bar.advance(3)
        bar.total(4)
        bar.describe("y")
    with open(read, "rb") as drawn:
        assert drawn.read() == b""


def test_a_terminal_shows_the_bar_with_its_units_and_lines_above_it(env: dict[str, str]) -> None:
    code, screen = run_on_terminal([sys.executable, "-c", SCRIPT], env)
    assert code == 0, plain(screen)
    assert ESCAPE.search(screen)
    shown = plain(screen)
    assert "measuring" in shown and "5/5 rounds" in shown and "━" in shown
    assert "halfway line" in shown
    assert shown.rstrip().endswith("measured 5 rounds")


def test_a_pipe_gets_the_plain_lines_only(env: dict[str, str]) -> None:
    code, out, err = run_on_pipes([sys.executable, "-c", SCRIPT], env)
    assert code == 0, err
    assert out == b"halfway line\nmeasured 5 rounds\n"
    assert err == b""


def test_no_progress_on_a_terminal_gives_the_same_lines_as_a_pipe(env: dict[str, str]) -> None:
    code, screen = run_on_terminal([sys.executable, "-c", SCRIPT, "--no-progress"], env)
    assert code == 0
    assert screen == b"halfway line\r\nmeasured 5 rounds\r\n"


def test_the_quiet_path_does_not_import_rich(env: dict[str, str]) -> None:
    check = "import sys; import operators.runtime.progress as p\n"
    check += "with p.progress('x', total=1) as bar: bar.advance()\n"
    check += "assert 'rich' not in sys.modules, 'rich imported'"
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()


# A child process that writes to stdout and stderr, under a bar counting a file's lines.
CHILD = textwrap.dedent(
    """
    import pathlib, sys
    from operators.runtime.progress import progress, run_counting
    out = pathlib.Path(sys.argv[1])
    write = "import sys, time\\nfor i in range(3):\\n    print(i, flush=True); time.sleep(0.1)\\n"
    write += "print('child log line', file=sys.stderr)"
    with out.open("wb") as sink, progress("child", unit="lines") as bar:
        code = run_counting(
            [sys.executable, "-c", write], bar, lambda: len(out.read_bytes().splitlines()),
            stdout=sink, every=0.05,
        )
    print(f"child exited with {code}")
    """
)


def test_a_child_under_a_bar_writes_above_it_and_its_count_ends_the_bar(
    env: dict[str, str], tmp_path
) -> None:
    out = tmp_path / "child.out"
    code, screen = run_on_terminal([sys.executable, "-c", CHILD, str(out)], env)
    shown = plain(screen)
    assert code == 0, shown
    # a line of its own, passed through above the bar (not written across it)
    assert "child log line" in screen_lines(screen)
    assert "3/3 lines" in shown  # the count of an open-ended bar ends as its total
    assert shown.rstrip().endswith("child exited with 0")
    assert out.read_bytes() == b"0\n1\n2\n"

    code, stdout, stderr = run_on_pipes([sys.executable, "-c", CHILD, str(out)], env)
    assert code == 0
    assert (stdout, stderr) == (b"child exited with 0\n", b"child log line\n")
    assert out.read_bytes() == b"0\n1\n2\n"
