"""Cost of a call in USD from the price table in settings (USD per 1M tokens, input and output).

A dated snapshot name (`gpt-4o-mini-2024-07-18`) is priced as its base model (`gpt-4o-mini`, the
longest matching name). A model missing from the table costs 0 and is logged once per table, so a
surge of calls to an unpriced model does not flood the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from operators.config.llm import LLMSettings

log = logging.getLogger(__name__)

PER_TOKENS = 1_000_000


class PriceTable:
    """Prices per model; `cost(model, tokens_in, tokens_out)` gives USD."""

    def __init__(self, prices: Mapping[str, tuple[float, float]]) -> None:
        self._prices = {name: (float(p_in), float(p_out)) for name, (p_in, p_out) in prices.items()}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, llm: LLMSettings) -> PriceTable:
        return cls(llm.prices)

    def price(self, model: str) -> tuple[float, float] | None:
        """(input, output) USD per 1M tokens of `model` or of its base model; None when unknown."""
        if model in self._prices:
            return self._prices[model]
        bases = [name for name in self._prices if model.startswith(name + "-")]
        return self._prices[max(bases, key=len)] if bases else None

    def cost(self, model: str, tokens_in: int, tokens_out: int = 0) -> float:
        """USD for `tokens_in` prompt and `tokens_out` completion tokens (0 for unknown models)."""
        price = self.price(model)
        if price is None:
            self._warn_unknown(model)
            return 0.0
        p_in, p_out = price
        return (max(tokens_in, 0) * p_in + max(tokens_out, 0) * p_out) / PER_TOKENS

    def _warn_unknown(self, model: str) -> None:
        with self._lock:
            if model in self._warned:
                return
            self._warned.add(model)
        log.warning("no price for model %r: its calls are accounted at 0 USD", model)
