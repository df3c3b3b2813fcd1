"""What one Bytewax step costs per item, by kind: `op.branch` against a split a batch at a time.

`python -m benchmarks.bytewax_steps [--items N] [--rounds R] [--quick]`

Each shape is a dataflow `input → flat_map_batch → <shape> → output` run by
`bytewax.testing.run_main` on `N` small objects (one in ten a "failure"), in batches of 500, 50
and 10; its CPU time less that of the dataflow without the shape is the shape's cost per item.
The shapes:

- `flat_map_batch`: one more batch step (one Python call per batch);
- `branch`: `op.branch` on `isinstance` (Bytewax calls the predicate once per item);
- `branch (C predicate)`: `op.branch` on `Failure.__instancecheck__`, a predicate with no
  Python frame (the outputs swapped);
- `split`: the same two outputs from two `flat_map_batch` filters (two calls per batch);
- `map`, `inspect`: `op.map` and `op.inspect` (a Python call per item);
- `key_rm`: `op.key_rm` (an `op.map`), and `key_rm (batch)`, the same a batch at a time;
- `stateful_batch`: keyed a batch at a time, a logic per key that passes its values on and
  keeps nothing, unkeyed a batch at a time; with 50,000 keys (about one value per key in a
  batch, as the flows' session and shipment keys) and with 1 key.

Rounds are interleaved (every shape once per round, the order rotating); the figures are medians.
The section is `bytewax-steps` of `docs/BENCHMARKS.md`.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSink, TestingSource, run_main

from benchmarks.report import command_line, write_section

BATCHES = (500, 50, 10)
ITEMS = {"full": 200_000, "quick": 20_000}


class Item:
    """A record as the flows carry them: an object with a few fields."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.text = "x" * (40 + n % 50)
        self.fields = {"k": n, "t": str(n)}


class Failure:
    """What a guarded step emits for an item it failed on."""

    def __init__(self, n: int) -> None:
        self.n = n


def items(count: int) -> list[Any]:
    return [Failure(n) if n % 10 == 0 else Item(n) for n in range(count)]


def _is_item(x: Any) -> bool:
    return not isinstance(x, Failure)


def _branch(s: Stream[Any]) -> list[Stream[Any]]:
    out = op.branch("branch", s, _is_item)
    return [out.trues, out.falses]


def _branch_c(s: Stream[Any]) -> list[Stream[Any]]:
    out = op.branch("branch", s, Failure.__instancecheck__)  # a C callable: no Python frame
    return [out.falses, out.trues]


def _split(s: Stream[Any]) -> list[Stream[Any]]:
    trues = op.flat_map_batch("trues", s, lambda b: [x for x in b if not isinstance(x, Failure)])
    falses = op.flat_map_batch("falses", s, lambda b: [x for x in b if isinstance(x, Failure)])
    return [trues, falses]


def _keyed(s: Stream[Any]) -> Stream[tuple[str, Any]]:
    return op.flat_map_batch("key", s, lambda b: [("k", x) for x in b])


class _Pass(StatefulBatchLogic[Any, Any, None]):
    """A key's logic that passes its values on and keeps nothing."""

    def on_batch(self, values: list[Any]) -> tuple[list[Any], bool]:
        return values, StatefulBatchLogic.RETAIN

    def snapshot(self) -> None:
        return None


def _stateful(keys: int) -> Callable[[Stream[Any]], list[Stream[Any]]]:
    def shape(s: Stream[Any]) -> list[Stream[Any]]:
        keyed = op.flat_map_batch("key", s, lambda b: [(str(x.n % keys), x) for x in b])
        kept = op.stateful_batch("stateful_batch", keyed, lambda _: _Pass())
        return [op.flat_map_batch("unkey", kept, lambda b: [v for _, v in b])]

    return shape


def _unkey_batch(s: Stream[Any]) -> list[Stream[Any]]:
    return [op.flat_map_batch("unkey", _keyed(s), lambda b: [v for _, v in b])]


SHAPES: dict[str, Callable[[Stream[Any]], list[Stream[Any]]]] = {
    "none": lambda s: [s],
    "flat_map_batch": lambda s: [op.flat_map_batch("step", s, lambda b: b)],
    "branch": _branch,
    "branch (C predicate)": _branch_c,
    "split": _split,
    "map": lambda s: [op.map("map", s, lambda x: x)],
    "inspect": lambda s: [op.inspect("inspect", s, lambda _s, _x: None)],
    "key_rm": lambda s: [op.key_rm("key_rm", _keyed(s))],
    "key_rm (batch)": _unkey_batch,
    "stateful_batch, 50,000 keys": _stateful(50_000),
    "stateful_batch, 1 key": _stateful(1),
}
"""Each shape: the streams it adds after the common `flat_map_batch`, each sent to a sink."""


def run(shape: str, data: list[Any], batch: int) -> tuple[float, list[list[Any]]]:
    """CPU seconds of one run of `shape` on `data`, and what each of its outputs received."""
    flow = Dataflow("steps")
    up = op.flat_map_batch("first", op.input("in", flow, TestingSource(data, batch)), lambda b: b)
    outs: list[list[Any]] = []
    for i, stream in enumerate(SHAPES[shape](up)):
        outs.append([])
        op.output(f"out{i}", stream, TestingSink(outs[-1]))
    gc.collect()
    started = time.process_time()
    run_main(flow)
    return time.process_time() - started, outs


def measure(count: int, rounds: int) -> dict[tuple[int, str], float]:
    """Median CPU seconds per run of every (batch, shape), rounds interleaved."""
    data = items(count)
    names = list(SHAPES)
    seen: dict[tuple[int, str], list[float]] = {(b, s): [] for b in BATCHES for s in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for batch in BATCHES:
            for shape in order:
                seen[(batch, shape)].append(run(shape, data, batch)[0])
    return {k: statistics.median(v) for k, v in seen.items()}


def per_item_us(medians: dict[tuple[int, str], float], count: int) -> dict[tuple[int, str], float]:
    """Each shape's cost per item over the dataflow without it, in µs."""
    return {(b, s): (t - medians[(b, "none")]) / count * 1e6 for (b, s), t in medians.items()}


def _signed(us: float) -> str:
    return f"{round(us, 3) + 0.0:+.3f}"  # + 0.0: no "-0.000"


def report(medians: dict[tuple[int, str], float], count: int, rounds: int) -> str:
    cost = per_item_us(medians, count)
    head = " | ".join(f"batch {b}" for b in BATCHES)
    rows = [
        f"{count:,} objects (one in ten a failure) per run through `input → flat_map_batch → "
        f"shape → output` (`bytewax.testing.run_main`, 1 worker); {rounds} interleaved rounds, "
        "medians. CPU µs per item the shape adds to the dataflow without it:",
        "",
        f"| shape | {head} |",
        "| --- |" + " ---: |" * len(BATCHES),
    ]
    for shape in SHAPES:
        if shape == "none":
            continue
        cells = " | ".join(f"{cost[(b, shape)]:.3f}" for b in BATCHES)
        rows.append(f"| {shape} | {cells} |")
    base = " | ".join(f"{medians[(b, 'none')] / count * 1e6:.3f}" for b in BATCHES)
    rows += [f"| (the dataflow without a shape, whole) | {base} |", ""]
    for b in BATCHES:
        branch = cost[(b, "branch")]
        split = _signed(cost[(b, "split")] - branch)
        on_c = _signed(cost[(b, "branch (C predicate)")] - branch)
        rows.append(
            f"- batch {b}: the split costs {split} µs per item against the branch; the branch on "
            f"a C predicate {on_c} µs."
        )
    return "\n".join(rows) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bytewax_steps")
    parser.add_argument("--quick", action="store_true", help="a small check; no section written")
    parser.add_argument("--items", type=int, default=None, help="objects per run")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    count = args.items or ITEMS["quick" if args.quick else "full"]
    rounds = 1 if args.quick else args.rounds
    medians = measure(count, rounds)
    body = report(medians, count, rounds)
    print(body)
    if not args.quick:
        write_section("bytewax-steps", "Bytewax steps: cost per item", command_line(), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
