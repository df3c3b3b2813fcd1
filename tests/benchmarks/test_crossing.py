"""`benchmarks.crossing`: the pickle of a crossing group measured in a tree, and the CPU of each
thread of a running process read from /proc."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.crossing import CASES, ThreadCpu, micro

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| this tree \| (\d+) \| (\d+\.\d\d) \| (\d+\.\d\d) \| (\d+\.\d\d) \|$")


PYDANTIC_FORM_BYTES = {"shipments": 303, "tickets": 397}
"""Bytes per crossing item when Bytewax pickled it in its pydantic form (docs/BENCHMARKS.md,
sections crossing and crossing-tickets, the baseline rows)."""


@pytest.mark.parametrize("flow", sorted(CASES))
def test_micro_measures_a_group_of_this_tree(flow: str) -> None:
    rows = micro(CASES[flow], {"this tree": ROOT}, rounds=1, batch=60)
    found = [ROW.match(row) for row in rows]
    (match,) = [m for m in found if m]
    size, dumps, loads, both = (float(x) for x in match.groups())
    assert 0 < size < PYDANTIC_FORM_BYTES[flow], "an item crosses in fewer bytes than before"
    assert dumps > 0 and loads > 0
    assert abs(both - (dumps + loads)) <= 0.011


def test_thread_cpu_counts_the_cpu_of_a_busy_thread() -> None:
    busy = (
        "import threading, time\n"
        "def spin():\n"
        "    end = time.process_time() + 0.4\n"
        "    while time.process_time() < end: pass\n"
        "t = threading.Thread(target=spin, name='spinner7'); t.start(); t.join()\n"
        "time.sleep(0.2)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", busy])
    threads = ThreadCpu([proc.pid])
    threads.start()
    assert proc.wait(timeout=60) == 0
    by_name = threads.by_name()
    spinner = sum(cpu for name, cpu in by_name.items() if name.startswith("python"))  # comm
    assert spinner >= 0.2, by_name
