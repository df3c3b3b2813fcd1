"""`route_by_key` in a real cluster of 2 processes: every item reaches the worker that owns its
key, and an item that changes process is pickled once, in its batch's group, not twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from operators.runtime.placement import worker_of
from scripts.server_process import free_ports
from tests.operators.runtime.exchange_procs import PARTITIONS, PER_PARTITION

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.dataflow


def run_cluster(*extra: str) -> list[dict[str, Any]]:
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(2))
    command = [sys.executable, "-m", "tests.operators.runtime.exchange_procs", addresses]
    procs = [
        subprocess.Popen(
            [*command, str(i), *extra],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-2000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    return outs


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("extra", "pickles_per_crossing"), [((), 1), (("--single",), 2)])
def test_items_that_change_process_are_pickled_once_in_groups(
    extra: tuple[str, ...], pickles_per_crossing: int
) -> None:
    """With `route_by_key` each crossing item is pickled once (its group's pickle); keyed one at a
    time, as a keyed step does by itself, Bytewax 0.21 pickles it twice."""
    outs = run_cluster(*extra)
    read = {n: w for out in outs for n, w in out["read"]}
    owned = [(k, n, w) for out in outs for k, n, w in out["owned"]]
    total = len(PARTITIONS) * PER_PARTITION
    assert sorted(n for _, n, _ in owned) == list(range(total))
    assert all(w == worker_of(k, 2) for k, _, w in owned), "every item is on its key's worker"
    crossing = sum(1 for k, n, _ in owned if read[n] != worker_of(k, 2))
    assert 0.25 * total < crossing < 0.75 * total
    pickled = sum(out["pickled"] for out in outs)
    assert pickled == pickles_per_crossing * crossing


@pytest.mark.timeout(180)
@pytest.mark.parametrize("items", ["--enriched", "--parsed"])
def test_flow_items_reach_their_keys_worker_equal(items: str) -> None:
    """The shipments flow's `EnrichedEvent`s and the tickets flow's `ParsedTicket`s, in their
    groups' compact pickles (`EnrichedGroup`, `ParsedGroup`), reach the worker that owns their
    key equal to what was read, fields set included."""
    outs = run_cluster(items)
    read = {n: w for out in outs for n, w in out["read"]}
    owned = [(k, n, w) for out in outs for k, n, w in out["owned"]]
    total = len(PARTITIONS) * PER_PARTITION
    assert sorted(n for _, n, _ in owned) == list(range(total))
    assert all(w == worker_of(k, 2) for k, _, w in owned)
    crossing = sum(1 for k, n, _ in owned if read[n] != worker_of(k, 2))
    assert 0.25 * total < crossing
    assert [n for out in outs for n in out["unequal"]] == []
