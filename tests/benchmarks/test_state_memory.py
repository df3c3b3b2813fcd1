"""`python -m benchmarks.state_memory --quick --skip-recovery` still runs: it reports the RSS
per live shipment key and where the Python bytes go, the live stream with the allocator policy
on and off side by side, the replay stream, and writes
only the file it is given."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_state_memory_benchmark_reports_bytes_per_live_key(tmp_path: Path) -> None:
    before = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    doc = tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "SURGEFLOW_NO_PROGRESS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.state_memory", "--quick", "--skip-recovery",
         "--doc", str(doc)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    per_key = re.search(r"\*\*([\d,]+) B of RSS per live key\*\* at ([\d,]+) keys", done.stdout)
    assert per_key, done.stdout
    assert int(per_key[2].replace(",", "")) >= 4_000  # the keys stayed live
    assert 200 < int(per_key[1].replace(",", "")) < 20_000
    where = re.findall(r"^\| (.+?) \| ([\d,]+) \| \d+% \|$", done.stdout, re.MULTILINE)
    assert "shipment window state (`operators/shipments`)" in {name for name, _ in where}
    assert "| live | 60,000 after the warm-up |" in done.stdout
    assert "| live, trim off | 60,000 after the warm-up |" in done.stdout  # side by side
    assert "`SURGEFLOW_MALLOC_TRIM_SECONDS=10`" in done.stdout
    assert "<!-- begin state-memory -->" in doc.read_text()
    assert (ROOT / "docs" / "BENCHMARKS.md").read_text() == before
