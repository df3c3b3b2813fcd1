"""`route_by_key`: key a stream for a keyed step, the items that change worker crossing in batches.

A keyed step of Bytewax 0.21 routes each item to the worker that owns its key. An item bound for
a worker of another process crosses on its own: Bytewax pickles it twice (to size the message,
then to write it) and the receiver unpickles it, and each pickle names every class the item
refers to again (a scan: the scan, its source, three datetimes, the time zone). A scan cost
about 20 µs to pickle and 15 µs to unpickle that way, as much as half of what the rest of the
flow spends on it.

`route_by_key` groups each batch by the worker that owns each item's key
(`placement.by_owner`, Bytewax's own routing computed in Python) and sends one message per owner
through a keyed step that keeps nothing (`carry`): a group is pickled once, as one list, and
classes are named once per message (about 9 µs per scan each way). `group` can make a group's
pickle cheaper still: the shipments flow's `EnrichedGroup` pickles and unpickles a scan in about
4 µs in all, the tickets flow's `ParsedGroup` a parsed message in about 3.5 µs (6.5 as a list).
On its owner's worker each
item then leaves as `(key, item)`, so the keyed step that follows finds it already there and
Bytewax moves it without pickling. The `carry` step's keys are lane names ("0", "1", …) that
Bytewax routes to each worker; it holds no state, so a resume with another worker count finds
nothing of it.

`WorkerProbe` is the source that tells each worker thread its index and the worker count as the
dataflow starts (`placement.note_worker`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Optional, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.operators import KeyedStream, StatefulBatchLogic

from operators.runtime.placement import by_owner, note_worker, this_worker
from operators.runtime.wire import Wire, unwire

X = TypeVar("X")

Group = list[tuple[str, X]]


class _NoItems(StatelessSourcePartition[Any]):
    def next_batch(self) -> list[Any]:
        raise StopIteration()


class WorkerProbe(DynamicSource[Any]):
    """A source of no items whose `build`, which Bytewax calls on every worker's thread as the
    dataflow starts, notes that worker's index and the worker count (`placement.note_worker`)."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _NoItems:
        note_worker(worker_index, worker_count)
        return _NoItems()


PROBE_STEP = "worker_probe"
"""The step name of the one `WorkerProbe` input of a dataflow."""


def probe_workers(up: Stream[Any]) -> None:
    """Give `up`'s dataflow its one `WorkerProbe` input, unless it has it already.

    The probe is added at the top level of the dataflow even when `up` is inside an operator:
    `up.flow().substeps` is the dataflow's own list of top-level steps, but an input added
    through `up.flow()` would land in the operator's scope, where the check above never looks,
    so each operator would add one more probe. One is enough: every worker builds every input.
    """
    flow = up.flow()
    if not any(step.step_name == PROBE_STEP for step in flow.substeps):
        op.input(PROBE_STEP, Dataflow(flow.flow_id, flow.substeps), WorkerProbe())


class _Carry(StatefulBatchLogic[Wire[Group[X]], tuple[str, X], None]):
    """Hands on the pairs of the groups it gets; keeps nothing."""

    def on_batch(self, values: list[Wire[Group[X]]]) -> tuple[Iterable[tuple[str, X]], bool]:
        out: Group[X] = unwire(values[0])
        if len(values) > 1:
            out = list(out)
            for more in values[1:]:
                group: Group[X] = unwire(more)
                out.extend(group)
        return out, StatefulBatchLogic.DISCARD

    def snapshot(self) -> None:
        return None


def _carry(resume: Optional[None]) -> _Carry[Any]:
    return _Carry()


def _as_is(pairs: Group[X]) -> Group[X]:
    return pairs


@operator
def route_by_key(
    step_id: str,
    up: Stream[X],
    key: Callable[[X], str],
    *,
    group: Callable[[Group[X]], Group[X]] = _as_is,
) -> KeyedStream[X]:
    """`(key(item), item)` for every item, emitted on the worker that owns `key(item)`.

    Consumes: items `X`. Emits: `(key(item), item)`, each on the worker a keyed step routes
    `key(item)` to, in the items' order per key and upstream worker. The items of one batch bound
    for one worker cross to it as one message (see the module docstring): `group(pairs)`, a
    list of the same pairs whose pickle may be cheaper than a list's (such as a list subclass
    with its own `__reduce__`), made for every group and pickled only when it crosses; it must
    unpickle as the same pairs. State: none (the `carry` step discards every key at once).
    """
    probe_workers(up)

    def groups(batch: list[X]) -> list[tuple[str, Wire[Group[X]]]]:
        worker = this_worker()
        workers = 1 if worker is None else worker[1]
        return [(lane, Wire(group(pairs))) for lane, pairs in by_owner(batch, key, workers)]

    packed = op.flat_map_batch("group", up, groups)
    carried = op.stateful_batch("carry", packed, _carry)
    return op.flat_map_batch("unpack", carried, lambda batch: [pair for _, pair in batch])
