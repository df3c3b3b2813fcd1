"""The worker's C allocator policy: a built flow trims glibc's heap on a thread, at the configured
interval, or not at all when turned off; a trim gives freed heap pages back to the system."""

from __future__ import annotations

import resource
import threading
from collections.abc import Iterator

import pytest
from bytewax.testing import TestingSink, TestingSource

from benchmarks.state_memory import embedded_settings
from flows.shipments import build_flow
from operators.config.settings import Settings
from operators.runtime import malloc_policy


@pytest.fixture(autouse=True)
def stopped_trimmer() -> Iterator[None]:
    yield
    malloc_policy.apply(0)


def _build(trim_seconds: float) -> None:
    settings = embedded_settings(malloc_trim_seconds=trim_seconds)
    build_flow(settings, source=TestingSource([]), sink=TestingSink([]))


def test_a_built_flow_trims_the_c_heap_at_the_configured_interval() -> None:
    _build(30)
    trimmer = malloc_policy.current()
    assert trimmer is not None and trimmer.running
    assert trimmer.interval == 30


def test_turned_off_no_trimmer_runs() -> None:
    _build(30)
    first = malloc_policy.current()
    _build(0)
    assert malloc_policy.current() is None
    assert first is not None and not first.running, "the earlier trimmer was stopped"


def test_the_trimmer_calls_trim_on_its_thread_until_stopped() -> None:
    called = threading.Event()
    answers = iter([1, 0, 1])

    def trim() -> int:
        called.set()
        return next(answers, 0)

    trimmer = malloc_policy.apply(0.01, trim=trim)
    assert trimmer is not None
    assert called.wait(10), "the thread trims"
    trimmer.stop()
    assert not trimmer.running
    made = trimmer.trims
    trimmer.run_once()
    assert trimmer.trims == made + 1 and 1 <= trimmer.released <= 2


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        malloc_policy.Trimmer(lambda: 0, 0)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def test_a_glibc_trim_gives_freed_heap_pages_back() -> None:
    trim = malloc_policy.glibc_trim()
    assert trim is not None, "the test machines run glibc"
    # 1,000-byte objects come from glibc's heap (over pymalloc's 512 B); keeping every 64th (and
    # the last, at the top of the heap) leaves the freed pages inside the heap, where free()
    # keeps them.
    blocks = [bytes(1000) for _ in range(100_000)]
    kept = blocks[::64] + blocks[-1:]
    del blocks
    held = _rss_bytes()
    trim()
    assert held - _rss_bytes() > 50 * 2**20, "most of the ~100 MB freed went back"
    assert len(kept) > 0


def test_the_setting_is_ten_seconds_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(_env_file=None).process.malloc_trim_seconds == 10
    monkeypatch.setenv("SURGEFLOW_MALLOC_TRIM_SECONDS", "0")
    assert Settings(_env_file=None).process.malloc_trim_seconds == 0
    monkeypatch.setenv("SURGEFLOW_MALLOC_TRIM_SECONDS", "-1")
    with pytest.raises(ValueError):
        Settings(_env_file=None)
