"""Prices from `SURGEFLOW_LLM_PRICES`: a negative or non-finite price is refused when the settings
load, before any call is priced with it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from operators.config.settings import Settings
from operators.llm.pricing import PriceTable


@pytest.mark.parametrize(
    "prices",
    [
        '{"gpt-4o-mini": [-0.15, 0.60]}',
        '{"gpt-4o-mini": [0.15, -1]}',
        '{"gpt-4o-mini": [0.15, NaN]}',
        '{"gpt-4o-mini": [Infinity, 0.6]}',
    ],
)
def test_a_negative_or_non_finite_price_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch, prices: str
) -> None:
    monkeypatch.setenv("SURGEFLOW_LLM_PRICES", prices)
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "llm_prices.gpt-4o-mini" in str(raised.value)


def test_prices_of_zero_and_above_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURGEFLOW_LLM_PRICES", '{"local-model": [0, 0], "gpt-4o": [2.5, 10]}')
    table = PriceTable.from_settings(Settings().llm)
    assert table.cost("local-model", 1000, 1000) == 0.0
    assert table.cost("gpt-4o", 1_000_000, 100_000) == pytest.approx(3.5)
