"""Write one benchmark's section of `docs/BENCHMARKS.md`, leaving the other sections as they are.

Each section sits between `<!-- begin NAME -->` and `<!-- end NAME -->`; a section that is not there
yet is appended. The figures come from the run that writes them, with the command and the machine.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\n"
    "Figures written by the programs in `benchmarks/`; each section names the command that "
    "produced it. Ratios are measured side by side in one run, because the machines are shared "
    "and absolute figures vary from run to run.\n"
)


def machine() -> str:
    """A one-line description of where the figures were measured."""
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )


def section(name: str, title: str, command: str, body: str) -> str:
    """A section's markdown: title, the command, the date and machine, then `body`."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<!-- begin {name} -->\n## {title}\n\n"
        f"Command: `{command}`  \nMeasured {stamp} on {machine()}.\n\n"
        f"{body.rstrip()}\n<!-- end {name} -->\n"
    )


def write_section(
    name: str, title: str, command: str, body: str, path: Path = DEFAULT_PATH
) -> Path:
    """Replace (or append) section `name` in `path` and return the path."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    block = section(name, title, command, body)
    pattern = re.compile(
        rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->\n?", re.DOTALL
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def command_line() -> str:
    """The command that is running, as a user would type it."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    program = ["python", "-m", spec.name] if spec else ["python", sys.argv[0]]
    return " ".join([*program, *sys.argv[1:]])
