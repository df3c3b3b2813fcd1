"""`benchmarks.bytewax_steps`: the shapes it compares do the same work, and how it reports."""

from __future__ import annotations

import pytest

from benchmarks.bytewax_steps import SHAPES, Failure, items, per_item_us, report, run

TWO_OUTPUTS = ("branch", "branch (C predicate)", "split")


@pytest.mark.parametrize("batch", [1, 7, 500])
def test_the_batch_split_gives_what_the_branch_gives_in_the_same_order(batch: int) -> None:
    data = items(1_003)
    _, branched = run("branch", data, batch)
    _, split = run("split", data, batch)
    _, on_c = run("branch (C predicate)", data, batch)
    assert split == branched
    assert on_c == branched
    trues, falses = branched
    assert trues == [x for x in data if not isinstance(x, Failure)]
    assert falses == [x for x in data if isinstance(x, Failure)]


@pytest.mark.parametrize("shape", [s for s in SHAPES if s not in TWO_OUTPUTS])
def test_every_other_shape_passes_every_item_once_in_order(shape: str) -> None:
    data = items(1_003)
    _, outs = run(shape, data, 50)
    if shape.startswith("stateful_batch"):  # Bytewax emits a batch's keys in its own order
        assert sorted(outs[0], key=lambda x: x.n) == data
    else:
        assert outs == [data]


def test_costs_are_per_item_over_the_dataflow_without_a_shape() -> None:
    medians = {(b, s): 1.0 for b in (500, 50, 10) for s in SHAPES}
    medians[(500, "branch")] = 1.5
    cost = per_item_us(medians, 1_000_000)
    assert cost[(500, "branch")] == pytest.approx(0.5)
    assert cost[(50, "split")] == pytest.approx(0.0)
    assert "| branch | 0.500 | 0.000 | 0.000 |" in report(medians, 1_000_000, 3)
