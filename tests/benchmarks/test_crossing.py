"""`benchmarks.crossing`: the pickle of a crossing group measured in a tree, and the CPU of each
thread of a running process read from /proc."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from benchmarks.crossing import ThreadCpu, micro

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| this tree \| (\d+) \| (\d+\.\d\d) \| (\d+\.\d\d) \| (\d+\.\d\d) \|$")


def test_micro_measures_a_group_of_this_tree() -> None:
    rows = micro({"this tree": ROOT}, rounds=1, batch=60)
    found = [ROW.match(row) for row in rows]
    (match,) = [m for m in found if m]
    size, dumps, loads, both = (float(x) for x in match.groups())
    assert 0 < size < 303, "a scan crosses in fewer bytes than in pydantic's form"
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
