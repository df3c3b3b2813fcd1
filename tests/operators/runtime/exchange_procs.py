"""One process of a 2-process Bytewax cluster for `test_exchange.py`: reads its partitions, keys
every item with `route_by_key` or one at a time (`--single`), and prints what it saw as JSON.

`python -m tests.operators.runtime.exchange_procs ADDRESSES PROC_ID [--single]`
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import cluster_main

from operators.runtime.exchange import WorkerProbe, route_by_key
from operators.runtime.placement import this_worker

PARTITIONS = ["p0", "p1", "p2", "p3"]
PER_PARTITION = 400
BATCH = 50


class Counted:
    """An item that counts how often this process pickles it."""

    pickled = 0

    def __init__(self, key: str, n: int) -> None:
        self.key, self.n = key, n

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        Counted.pickled += 1
        return (Counted, (self.key, self.n))


class _Part(StatefulSourcePartition[Counted, None]):
    def __init__(self, part: str) -> None:
        p = PARTITIONS.index(part)
        self.items = [
            Counted(f"K-{p}-{i % 37}", p * PER_PARTITION + i) for i in range(PER_PARTITION)
        ]

    def next_batch(self) -> list[Counted]:
        if not self.items:
            raise StopIteration()
        batch, self.items = self.items[:BATCH], self.items[BATCH:]
        return batch

    def snapshot(self) -> None:
        return None


class Parts(FixedPartitionedSource[Counted, None]):
    def list_parts(self) -> list[str]:
        return PARTITIONS

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[None]) -> _Part:
        return _Part(for_part)


def main(argv: list[str]) -> None:
    addresses, proc_id, single = argv[0].split(";"), int(argv[1]), "--single" in argv
    read: list[tuple[int, int]] = []
    owned: list[tuple[str, int, int]] = []

    flow = Dataflow("exchange_procs")
    op.input("probe", flow, WorkerProbe())
    up = op.input("in", flow, Parts())
    up = op.map("read", up, lambda c: read.append((c.n, _index())) or c)
    if single:
        keyed = op.key_on("key", up, lambda c: c.key)
    else:
        keyed = route_by_key("key", up, lambda c: c.key)

    def count(state: Optional[int], c: Counted) -> tuple[int, int]:
        owned.append((c.key, c.n, _index()))
        return (state or 0) + 1, c.n

    op.inspect("seen", op.stateful_map("count", keyed, count), lambda *_: None)
    cluster_main(flow, addresses, proc_id, worker_count_per_proc=1)
    print(json.dumps({"pickled": Counted.pickled, "read": read, "owned": owned}))


def _index() -> int:
    worker = this_worker()
    assert worker is not None
    return worker[0]


if __name__ == "__main__":
    main(sys.argv[1:])
