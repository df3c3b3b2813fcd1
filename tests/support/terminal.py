"""Run a command on a real pseudo-terminal (`os.openpty`), or with pipes, and keep what it wrote.

A command run here sees a terminal the way it sees one in a person's shell: `isatty()` is true on
its stdin, stdout and stderr, and the window is `columns` wide. Nothing is faked.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Sequence

ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
"""A CSI control sequence (cursor moves, colours, line erases, cursor hiding)."""


def run_on_terminal(
    command: Sequence[str], env: dict[str, str], *, timeout: float = 60.0, columns: int = 120
) -> tuple[int, bytes]:
    """The exit code and everything `command` wrote to its terminal (stdout and stderr)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    try:
        proc = subprocess.Popen(
            command, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has closed it
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            raise TimeoutError(f"{command} did not finish within {timeout} s")
    finally:
        os.close(master)
    return proc.wait(timeout), b"".join(chunks)


def run_on_pipes(
    command: Sequence[str], env: dict[str, str], *, timeout: float = 60.0
) -> tuple[int, bytes, bytes]:
    """The exit code, stdout and stderr of `command` run with pipes (as under CI or `| tee`)."""
    done = subprocess.run(command, env=env, capture_output=True, timeout=timeout, check=False)
    return done.returncode, done.stdout, done.stderr


def plain(text: bytes) -> str:
    """`text` without control sequences and carriage returns, decoded."""
    return ESCAPE.sub(b"", text).replace(b"\r", b"").decode("utf-8", "replace")


def screen_lines(text: bytes) -> list[str]:
    """The lines as they stay on the screen: of each line only what follows its last carriage
    return (a bar redrawn in place leaves its last drawing), without control sequences."""
    lines = text.replace(b"\r\n", b"\n").split(b"\n")
    return [ESCAPE.sub(b"", line.split(b"\r")[-1]).decode("utf-8", "replace") for line in lines]


def run_drawing(command: Sequence[str], env: dict[str, str], *, timeout: float = 300.0) -> str:
    """Run `command` on a terminal (`TERM=xterm-256color`, no `SURGEFLOW_NO_PROGRESS`), check it
    exits 0 and draws (control sequences reach the terminal); return what it wrote, `plain`."""
    env = {k: v for k, v in env.items() if k != "SURGEFLOW_NO_PROGRESS"}
    code, screen = run_on_terminal(command, {**env, "TERM": "xterm-256color"}, timeout=timeout)
    shown = plain(screen)
    assert code == 0, shown[-3000:]
    assert ESCAPE.search(screen), f"no control sequence: nothing drawn\n{shown[-3000:]}"
    return shown


def count_labels(text: str) -> list[str]:
    """What each count line of a demo summary counts (`by topic`, `dead letters by reason`...)."""
    lines = [line.strip() for line in text.splitlines()]
    return [line.split(":")[0] for line in lines if line.startswith(("by ", "dead letters by"))]
