"""Cost of a call in USD from the price tables in settings (USD per 1M tokens, input and output).

Prices belong to an endpoint. A call to a base URL listed in `llm_endpoint_prices`
(`SURGEFLOW_LLM_ENDPOINT_PRICES`) is priced by that endpoint's table only: a model it does not
list costs 0 (logged once), never the shared rates. A call to any other endpoint is priced by
`llm_prices` (`SURGEFLOW_LLM_PRICES`, by default OpenAI's list prices). So a local server that
answers a hosted model name (llama.cpp answers any name) is priced by its own table once its base
URL is listed, e.g. `{"http://127.0.0.1:8080/v1": {"*": [0, 0]}}`, and not at hosted rates.

Within a table, a dated snapshot name (`gpt-4o-mini-2024-07-18`) is priced as its base model
(`gpt-4o-mini`, the longest matching name), and `*` prices every model not listed. A model missing
from the table costs 0 and is logged once per table, so a surge of calls to an unpriced model does
not flood the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from operators.config.llm import LLMSettings
from operators.config.redact import redacted_url

log = logging.getLogger(__name__)

PER_TOKENS = 1_000_000

ANY_MODEL = "*"
"""The entry of a price table that prices every model it does not list."""

Prices = Mapping[str, tuple[float, float]]


def endpoint_key(base_url: str | None) -> str | None:
    """How a base URL is looked up among the endpoint tables (no trailing slash)."""
    return base_url.rstrip("/") if base_url else None


class PriceTable:
    """Prices per model (and per endpoint); `cost(model, tokens_in, tokens_out)` gives USD."""

    def __init__(
        self,
        prices: Prices,
        endpoints: Mapping[str, Prices] | None = None,
        *,
        endpoint: str | None = None,
    ) -> None:
        self._prices = {name: (float(p_in), float(p_out)) for name, (p_in, p_out) in prices.items()}
        self._endpoint = endpoint
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._endpoints: dict[str, PriceTable] = {}
        for url, table in (endpoints or {}).items():
            key = endpoint_key(url)
            if key:
                self._endpoints[key] = PriceTable(table, endpoint=key)

    @classmethod
    def from_settings(cls, llm: LLMSettings) -> PriceTable:
        return cls(llm.prices, llm.endpoint_prices)

    def at(self, base_url: str | None) -> PriceTable:
        """The table that prices calls to `base_url`: its own when listed, else this one."""
        key = endpoint_key(base_url)
        found = self._endpoints.get(key) if key else None
        return found if found is not None else self

    def price(self, model: str) -> tuple[float, float] | None:
        """(input, output) USD per 1M tokens of `model` or of its base model; None when unknown."""
        if model in self._prices:
            return self._prices[model]
        bases = [name for name in self._prices if model.startswith(name + "-")]
        if bases:
            return self._prices[max(bases, key=len)]
        return self._prices.get(ANY_MODEL)

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
        if self._endpoint is None:
            log.warning("no price for model %r: its calls are accounted at 0 USD", model)
        else:
            log.warning(
                "no price for model %r in the table of %s (SURGEFLOW_LLM_ENDPOINT_PRICES): its "
                "calls there are accounted at 0 USD",
                model, redacted_url(self._endpoint),
            )  # fmt: skip
