"""The test server's own knobs: the latency distribution it draws from."""

from __future__ import annotations

import statistics

import pytest

from tests.support.openai_server import lognormal_latency


def test_lognormal_latency_has_the_asked_median_and_tail() -> None:
    draw = lognormal_latency(0.2, 2.0, seed=1)
    samples = sorted(draw() for _ in range(40_000))
    assert statistics.median(samples) == pytest.approx(0.2, rel=0.05)
    assert samples[int(0.99 * len(samples))] == pytest.approx(2.0, rel=0.1)
    assert statistics.fmean(samples) == pytest.approx(0.2 * 1.63, rel=0.1)


def test_lognormal_latency_refuses_an_inverted_range() -> None:
    with pytest.raises(ValueError):
        lognormal_latency(1.0, 0.5)
