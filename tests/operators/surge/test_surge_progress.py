"""`python -m operators.surge --out FILE`: a bar of records generated on a terminal, none on a
pipe, and the same file either way."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.support.terminal import ESCAPE, plain, run_on_pipes, run_on_terminal

ROOT = Path(__file__).resolve().parents[3]


def test_the_bar_is_drawn_on_a_terminal_only_and_the_surge_is_the_same(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    env.pop("SURGEFLOW_NO_PROGRESS", None)

    def command(out: Path) -> list[str]:
        args = ["tickets", "--seed", "3", "--steady", "200", "--burst", "4", "--out", str(out)]
        return [sys.executable, "-m", "operators.surge", *args]

    code, screen = run_on_terminal(command(tmp_path / "terminal.jsonl"), env)
    assert code == 0, plain(screen)
    assert ESCAPE.search(screen)
    assert "generating" in plain(screen) and "1000/1000 records" in plain(screen)

    code, out, err = run_on_pipes(command(tmp_path / "pipe.jsonl"), env)
    assert code == 0, err
    assert b"\x1b" not in out + err and b"\r" not in out + err
    assert err.decode().startswith("wrote ")
    assert (tmp_path / "terminal.jsonl").read_bytes() == (tmp_path / "pipe.jsonl").read_bytes()
