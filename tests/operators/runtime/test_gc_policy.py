"""The worker's garbage-collector policy: applied when asked, left alone when turned off."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from operators.config.settings import Settings
from operators.runtime import gc_policy


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_apply_freezes_start_up_and_raises_the_thresholds() -> None:
    gc.unfreeze()
    assert gc_policy.apply(True)
    assert gc.get_freeze_count() > 0, "what start-up left is in the permanent generation"
    assert gc.get_threshold() == (gc_policy.YOUNG_THRESHOLD, *gc_policy.OLDER_THRESHOLDS)
    assert gc.isenabled(), "the collector still runs"


@pytest.mark.usefixtures("restored_gc")
def test_turned_off_it_changes_nothing() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    assert not gc_policy.apply(False)
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == (700, 10, 10)


def test_the_setting_is_on_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(_env_file=None).process.gc_tuning is True
    monkeypatch.setenv("SURGEFLOW_GC_TUNING", "false")
    assert Settings(_env_file=None).process.gc_tuning is False
