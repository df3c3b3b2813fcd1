"""Prices from `SURGEFLOW_LLM_PRICES` and `SURGEFLOW_LLM_ENDPOINT_PRICES`: a negative or
non-finite price is refused when the settings load; a listed endpoint is priced by its own table
only, so a local server answering a hosted model name is not billed at hosted rates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from operators.config.settings import Settings
from operators.llm.pricing import PriceTable
from operators.llm.service import OpenAIService
from tests.operators.llm.service_calls import MODEL, Verdict, messages
from tests.support.openai_server import OpenAITestServer


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


LOCAL = "http://127.0.0.1:8080/v1"


def test_a_listed_endpoint_is_priced_by_its_own_table_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = PriceTable(
        {"gpt-4o-mini": (0.15, 0.60)},
        {f"{LOCAL}/": {"gpt-4o-mini": (0.0, 0.0)}, "http://gpu:8000/v1": {"mistral": (0.1, 0.1)}},
    )
    assert table.at(None) is table and table.at("https://api.openai.com/v1") is table
    assert table.at(LOCAL).cost("gpt-4o-mini", 1_000_000, 1_000_000) == 0.0  # slash ignored
    assert table.at(None).cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    with caplog.at_level("WARNING", logger="operators.llm.pricing"):
        # a hosted name on an endpoint whose table lacks it: 0, never the shared rate
        assert table.at("http://gpu:8000/v1").cost("gpt-4o-mini", 1_000_000, 0) == 0.0
        assert table.at("http://gpu:8000/v1").cost("gpt-4o-mini", 1_000_000, 0) == 0.0
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "http://gpu:8000/v1" in warned[0], warned


def test_a_star_prices_every_model_of_a_table() -> None:
    table = PriceTable({"gpt-4o": (2.5, 10.0), "*": (1.0, 2.0)})
    assert table.cost("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.5)
    assert table.cost("anything", 1_000_000, 1_000_000) == pytest.approx(3.0)


def test_endpoint_prices_load_from_the_environment_and_are_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SURGEFLOW_LLM_ENDPOINT_PRICES", f'{{"{LOCAL}": {{"*": [0, 0]}}}}')
    table = PriceTable.from_settings(Settings().llm)
    assert table.at(LOCAL).cost("gpt-4o-mini", 1000, 1000) == 0.0
    assert table.at(None).cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    monkeypatch.setenv("SURGEFLOW_LLM_ENDPOINT_PRICES", f'{{"{LOCAL}": {{"*": [-1, 0]}}}}')
    with pytest.raises(ValidationError):
        Settings()


def test_credentials_in_a_priced_base_url_are_not_shown() -> None:
    llm = Settings(llm_endpoint_prices={"http://user:s3cret@gpu:8000/v1": {"*": (0, 0)}}).llm
    assert "s3cret" not in repr(llm)


def test_a_local_server_answering_a_hosted_name_is_priced_by_its_endpoint_table(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    """Through the real client: classify and embeddings go to a "local" server listed at 0,
    replies to the shared endpoint; the same model names, different prices."""
    with OpenAITestServer() as local:
        settings = llm_settings(
            llm_classify_base_url=local.base_url, llm_embeddings_base_url=local.base_url,
            llm_endpoint_prices={local.base_url: {"*": (0.0, 0.0)}},
        )  # fmt: skip
        service = OpenAIService(settings, flow="endpoint-prices")

        async def ask(task: str, note: str):  # type: ignore[no-untyped-def]
            return await service.chat_structured(
                messages=messages(note), response_model=Verdict, model=MODEL,
                prompt_version="v1", task=task,  # type: ignore[arg-type]
            )  # fmt: skip

        async def calls():  # type: ignore[no-untyped-def]
            try:
                local_answer = await ask("classify", "The box arrived crushed.")
                hosted_answer = await ask("reply", "The box arrived crushed.")
                embedded = await service.embed(["a crushed box"], model="text-embedding-3-small")
                return local_answer, hosted_answer, embedded
            finally:
                await service.aclose()

        local_answer, hosted_answer, embedded = asyncio.run(calls())
        assert local.count("/v1/chat/completions") == 1 and local.count("/v1/embeddings") == 1
    free, paid = local_answer.enrichment, hosted_answer.enrichment
    assert (free.model, free.source, free.cost_usd) == (MODEL, "llm", 0.0) and free.tokens_in > 0
    assert paid.model == MODEL and paid.cost_usd == pytest.approx(
        (paid.tokens_in * 0.15 + paid.tokens_out * 0.60) / 1e6
    )
    assert embedded.enrichment.tokens_in > 0 and embedded.enrichment.cost_usd == 0.0
    assert service.ledger.totals("endpoint-prices").cost_usd == pytest.approx(paid.cost_usd)
