"""`placement`: Bytewax's routing of state keys computed in Python, and async steps whose items
stay on the worker that keyed them (checked against real Bytewax clusters of worker threads)."""

from __future__ import annotations

import threading
from typing import Any, Optional

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main

from operators.config.settings import Settings
from operators.runtime import placement
from operators.runtime.async_step import StepParams, map_async
from operators.runtime.exchange import WorkerProbe, route_by_key
from operators.runtime.inflight import lane_for
from operators.runtime.placement import (
    LaneTable,
    by_owner,
    carrier,
    local_lanes,
    this_worker,
    worker_of,
)

KEYS = [f"SHP-{i:06d}" for i in range(200)] + ["", "0", "ü-ß-日本", "a" * 300]


@pytest.mark.dataflow
@pytest.mark.parametrize("workers", [2, 3])
def test_worker_of_is_the_worker_bytewax_routes_a_key_to(workers: int) -> None:
    flow = Dataflow("placement_test")
    op.input("probe", flow, WorkerProbe())
    keyed = op.input("in", flow, TestingSource([(key, None) for key in KEYS]))

    def where(state: None, value: None) -> tuple[None, Optional[tuple[int, int]]]:
        return None, this_worker()

    out: list[tuple[str, Optional[tuple[int, int]]]] = []
    op.output("out", op.stateful_map("where", keyed, where), TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)

    assert len(out) == len(KEYS)
    assert {w for _, w in out} == {(i, workers) for i in range(workers)}
    assert [(key, worker_of(key, workers)) for key, (w, _) in out] == [(k, w) for k, (w, _) in out]


def test_one_worker_has_the_lanes_lane_for_gives() -> None:
    assert local_lanes(0, 1, 4) == ("0", "1", "2", "3")
    table = LaneTable(0, 1, 64)
    assert [table.lane(key) for key in KEYS] == [lane_for(key, 64) for key in KEYS]


@pytest.mark.parametrize(("workers", "lanes"), [(2, 64), (3, 64), (8, 5), (4, 1)])
def test_each_worker_gets_its_share_of_lanes_all_routed_to_it(workers: int, lanes: int) -> None:
    tables = [local_lanes(i, workers, lanes) for i in range(workers)]
    for i, names in enumerate(tables):
        assert len(names) == -(-lanes // workers)
        assert {worker_of(name, workers) for name in names} == {i}
        assert all(name.isdigit() for name in names)
    assert len({name for names in tables for name in names}) == sum(map(len, tables))
    with pytest.raises(ValueError, match="no lanes"):
        local_lanes(workers, workers, lanes)


@pytest.mark.dataflow
def test_an_async_step_runs_each_item_on_the_worker_that_keyed_it() -> None:
    """Items keyed by a stateful step reach `map_async`'s lanes on that step's worker thread, in
    per-key order (before, about half of them changed worker: a lane was CRC-32 mod lanes)."""
    step = StepParams.from_settings(Settings(llm_lanes=8, llm_poll_seconds=0.005).llm)
    items = [(KEYS[i % 40], i) for i in range(400)]
    keyed_on: dict[int, int] = {}
    answered_on: dict[int, int] = {}

    def count(state: Optional[int], item: tuple[str, int]) -> tuple[int, tuple[str, int]]:
        keyed_on[item[1]] = threading.get_ident()
        return (state or 0) + 1, item

    def ready(item: tuple[str, int]) -> int:
        answered_on[item[1]] = threading.get_ident()
        return item[1]

    async def never(item: tuple[str, int]) -> int:
        raise AssertionError("every item is answered by `ready`")

    flow = Dataflow("placement_async_test")
    up = op.input("in", flow, TestingSource(items, batch_size=16))
    counted = op.stateful_map("count", op.key_on("key", up, lambda item: item[0]), count)
    results = map_async(
        "llm", op.key_rm("unkey", counted), never, key=lambda item: item[0], params=step,
        ready=ready, flow="test",
    )  # fmt: skip
    out: list[Any] = []
    op.output("out", results, TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=2)

    assert sorted(out) == list(range(400))
    assert len(set(keyed_on.values())) == 2, "both workers keyed items"
    moved = [i for i in range(400) if answered_on[i] != keyed_on[i]]
    assert moved == [], f"{len(moved)} of 400 items changed worker"
    for key in {k for k, _ in items}:
        assert [o for o in out if items[o][0] == key] == [i for k, i in items if k == key]


def test_by_owner_groups_a_batch_by_the_worker_that_owns_each_key_in_order() -> None:
    items = [(KEYS[i % 50], i) for i in range(300)]
    groups = by_owner(items, lambda item: item[0], 3)
    assert len(groups) == 3
    for lane, pairs in groups:
        owner = worker_of(lane, 3)
        assert lane == carrier(owner, 3)
        assert {worker_of(k, 3) for k, _ in pairs} == {owner}
        assert [i for _, (_, i) in pairs] == sorted(i for _, (_, i) in pairs)
    assert sorted(item for _, pairs in groups for _, item in pairs) == sorted(items)
    assert by_owner(items, lambda item: item[0], 1) == [("0", [(k, (k, i)) for k, i in items])]
    assert by_owner([], lambda item: item, 2) == []


def test_by_owner_keeps_the_owners_it_computed_up_to_a_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keys met again are grouped by the owner kept for them, the same `worker_of` gives; the
    kept owners start again when `OWNERS_KEPT` are kept, per worker count."""
    monkeypatch.setattr(placement, "OWNERS_KEPT", 20)
    monkeypatch.setattr(placement, "_owners", {})
    for n in range(12):
        items = [KEYS[(n * 7 + i) % 50] for i in range(30)]
        for workers in (2, 3):
            for _, pairs in by_owner(items, str, workers):
                assert len({worker_of(k, workers) for k, _ in pairs}) == 1
            assert sorted(k for _, pairs in by_owner(items, str, workers) for k, _ in pairs) == (
                sorted(items)
            )
            kept = placement._owners[workers]
            assert 0 < len(kept) <= 20 + 30
            assert all(owner == worker_of(k, workers) for k, owner in kept.items())
    assert 1 not in placement._owners


@pytest.mark.dataflow
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_route_by_key_brings_every_item_to_the_worker_of_its_key(workers: int) -> None:
    """Each `(key, item)` leaves `route_by_key` on the worker that owns `key`, once, in per-key
    order, so the keyed step after it moves nothing."""
    items = [(KEYS[i % 60], i) for i in range(600)]
    flow = Dataflow("route_by_key_test")
    up = op.input("in", flow, TestingSource(items, batch_size=25))
    routed = route_by_key("route", up, lambda item: item[0])
    out: list[tuple[str, tuple[str, int], Optional[tuple[int, int]]]] = []
    where = op.map("where", routed, lambda kv: (kv[0], kv[1], this_worker()))
    op.output("out", where, TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)

    assert sorted(item for _, item, _ in out) == sorted(items)
    assert all(key == item[0] for key, item, _ in out)
    assert [(key, w) for key, _, w in out] == [
        (key, (worker_of(key, workers), workers)) for key, _, _ in out
    ]
    for key in {k for k, _ in items}:
        assert [i for k, (_, i), _ in out if k == key] == [i for k, i in items if k == key]
