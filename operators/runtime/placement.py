"""Which worker Bytewax routes a state key to, and lanes that stay on the worker that fills them.

A keyed step of Bytewax 0.21 (`op.stateful`, `op.stateful_batch`) sends each item to worker
`DefaultHasher(key) % worker_count`: Rust's SipHash-1-3 with zero keys over the key as a `str`
hashes (its UTF-8 bytes, then the byte 0xff), taken mod the number of workers of the whole
cluster (Bytewax's `src/operators.rs` and `src/timely.rs`; `worker_of` computes it, and
`tests/operators/runtime/test_placement.py` checks it against Bytewax's own routing).

An async step's items come from a step keyed by the same key (a decision from its shipment's
window, a message from its session): they are already on the worker that owns their key. Giving
them a lane key that Bytewax routes to that same worker (`LaneTable`) keeps them there, so no
item crosses to another process to be pickled twice and unpickled. Lane keys stay the strings
"0", "1", … that `inflight.lane_for` gives; with one worker the table is "0" … "lanes - 1" and a
key gets the lane `lane_for` gives it.

A keyed step's items that arrive on another worker than the one owning their key cross one at
a time, each pickled on its own (twice, by Bytewax 0.21) and unpickled. `by_owner` groups a
batch by owning worker, so that they can cross as one message per owner and batch
(`operators.runtime.exchange.route_by_key`), each class they refer to pickled once per message.

Plain Python: `note_worker` is told the calling worker thread's index and the worker count (by a
source built on each worker at start-up, `operators.runtime.async_step`), `this_worker` reads it.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Optional, TypeVar

from siphash24 import siphash13

X = TypeVar("X")

_U64 = (1 << 64) - 1

_workers: dict[int, tuple[int, int]] = {}
"""Thread id → (worker index, worker count) of the Bytewax worker running on that thread."""


def worker_of(key: str, workers: int) -> int:
    """The worker (of `workers`) that Bytewax 0.21 routes the state key `key` to."""
    digest: int = siphash13(key.encode("utf-8") + b"\xff").intdigest()
    return (digest & _U64) % workers


@lru_cache(maxsize=1024)
def local_lanes(worker: int, workers: int, lanes: int) -> tuple[str, ...]:
    """The first ceil(`lanes` / `workers`) lane keys "0", "1", … that Bytewax routes to `worker`
    (of `workers`); with one worker, "0" … "lanes - 1"."""
    if not 0 <= worker < workers or lanes < 1:
        raise ValueError(f"no lanes for worker {worker} of {workers} with {lanes} lanes")
    wanted = -(-lanes // workers)
    found: list[str] = []
    n = 0
    while len(found) < wanted:
        name = str(n)
        if workers == 1 or worker_of(name, workers) == worker:
            found.append(name)
        n += 1
    return tuple(found)


class LaneTable:
    """The lanes of one worker: `lane(key)` is one of `local_lanes(worker, workers, lanes)`,
    the same for a key every time (CRC-32 of the key mod the table's length)."""

    __slots__ = ("names", "size")

    def __init__(self, worker: int, workers: int, lanes: int) -> None:
        self.names = local_lanes(worker, workers, lanes)
        self.size = len(self.names)

    def lane(self, key: str) -> str:
        return self.names[zlib.crc32(key.encode("utf-8")) % self.size]


def carrier(worker: int, workers: int) -> str:
    """The lane key "0", "1", … that carries items to `worker` (of `workers`): its first lane."""
    return local_lanes(worker, workers, 1)[0]


OWNERS_KEPT = 32_768
"""Keys whose worker `by_owner` keeps, per worker count; when full it starts again. The items
of a session or a shipment come close together, and a lookup costs about 30 ns where
`worker_of` costs about 0.5 µs (with 1 worker nothing is kept)."""
_owners: dict[int, dict[str, int]] = {}
"""Worker count → key → the worker that owns it (`worker_of`)."""


def by_owner(
    items: Iterable[X], key: Callable[[X], str], workers: int
) -> list[tuple[str, list[tuple[str, X]]]]:
    """`(key(item), item)` pairs grouped by the worker Bytewax routes `key(item)` to (of
    `workers`): one `(carrier(worker, workers), pairs)` per worker that owns a key, the pairs in
    the items' order."""
    if workers == 1:
        pairs = [(key(item), item) for item in items]
        return [(carrier(0, 1), pairs)] if pairs else []
    owners = _owners.get(workers)
    if owners is None or len(owners) >= OWNERS_KEPT:
        owners = _owners[workers] = {}
    groups: dict[int, list[tuple[str, X]]] = {}
    for item in items:
        k = key(item)
        owner = owners.get(k)
        if owner is None:
            owner = owners[k] = worker_of(k, workers)
        group = groups.get(owner)
        if group is None:
            group = groups[owner] = []
        group.append((k, item))
    return [(carrier(owner, workers), pairs) for owner, pairs in groups.items()]


def note_worker(index: int, count: int) -> None:
    """Record that the calling thread runs worker `index` of `count` (called at its start-up)."""
    _workers[threading.get_ident()] = (index, count)


def this_worker() -> Optional[tuple[int, int]]:
    """(index, count) of the worker on the calling thread, None when none was noted."""
    return _workers.get(threading.get_ident())
