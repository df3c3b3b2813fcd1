"""Items crossing a keyed exchange between processes: pickled once, and only when they cross.

Bytewax routes every item of a keyed step (`op.stateful`, `op.stateful_batch`) to the worker
that owns its key. An item bound for a worker of another process is pickled; one bound for a
worker of the same process is moved as it is. Bytewax 0.21 pickles an item that crosses twice
(once to size the message, once to write it), and a scan or a decision, a pydantic model with
several UTC datetimes, costs about 10 µs to pickle and as much to unpickle. In a 2-process run
that was a third of each worker's CPU (`benchmarks/peers.py`; docs/BENCHMARKS.md).

`Wire(item)` wraps an item before such a step: its pickle is the item's pickle, made the first
time it is asked for and reused the second time; an item that stays in its process is never
pickled. The receiving step takes the item back with `unwire`. A `Wire` never reaches a snapshot:
the steps unwrap before they keep anything.
An item that crossed arrives as itself, one that stayed as its `Wire`.
`operators.runtime.exchange.route_by_key` sends a batch's group of items bound for one worker as
one `Wire`; the agent lanes wrap each item (they are on the item's own worker, so it does not
cross unless no worker was noted).
"""

from __future__ import annotations

import pickle
from typing import Generic, Optional, TypeVar, Union

T = TypeVar("T")


class Wire(Generic[T]):
    """`item` on its way to the worker that owns its key (see the module docstring)."""

    __slots__ = ("_pickled", "item")

    def __init__(self, item: T) -> None:
        self.item = item
        self._pickled: Optional[bytes] = None

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        pickled = self._pickled
        if pickled is None:
            pickled = self._pickled = pickle.dumps(self.item, pickle.HIGHEST_PROTOCOL)
        return (_arrived, (pickled,))

    def __repr__(self) -> str:
        return f"Wire({self.item!r})"


def _arrived(pickled: bytes) -> object:
    """A `Wire` unpickled in the receiving process: the item itself (`unwire` takes both)."""
    return pickle.loads(pickled)


def unwire(value: Union[Wire[T], T]) -> T:
    """The item of `value`, a `Wire` or an item that was never wrapped (tests, resumed state)."""
    return value.item if type(value) is Wire else value  # type: ignore[return-value]
