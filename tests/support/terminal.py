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
