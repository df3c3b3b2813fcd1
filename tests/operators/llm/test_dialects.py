"""Structured-output dialects and per-task endpoints, through the real client and loopback servers.

Each dialect sends what its servers take (OpenAI's `json_schema`, llama.cpp's `json_object` with
`schema`, `json_object` or nothing with the schema in the prompt), never the bounds that blow
up grammars (`maxLength`), and validates the answer against the full schema whatever was sent.
A server that refuses the request itself (llama.cpp's 500 for `json_schema`) is asked once, not
retried, and opens the breaker with one ERROR carrying its text. Each task goes to its own
endpoint when one is set; a task without any endpoint goes to the rules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from operators.config.llm import StructuredOutput
from operators.config.settings import Settings
from operators.llm.breaker import State
from operators.llm.service import OpenAIService
from operators.llm.structured import server_schema
from operators.llm.types import BreakerOpen, LLMCallError, LLMInvalidOutput, LLMUnavailable
from tests.operators.llm.service_calls import MODEL, Verdict, classify, messages, run
from tests.support.openai_server import CHAT_PATH, EMBEDDINGS_PATH, OpenAITestServer

DIALECTS: list[StructuredOutput] = ["json_schema", "json_object_schema", "json_object", "none"]
LLAMA_CPP_TEXT = "Input should be 'json_object' or 'text'"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_each_dialect_sends_its_form_and_the_answer_is_validated(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings], dialect: str
) -> None:
    service = OpenAIService(llm_settings(llm_structured_output=dialect))
    result = run(service, lambda: classify(service))
    assert result.value.category == "damaged"
    body = openai_server.requests[0].body
    sent_format = body.get("response_format")
    system = body["messages"][0]["content"]
    full = Verdict.model_json_schema()
    assert "maxLength" in json.dumps(full) and "maxLength" not in json.dumps(sent_format)
    if dialect == "json_schema":
        assert sent_format["type"] == "json_schema"
        assert sent_format["json_schema"]["schema"] == server_schema(full)
    elif dialect == "json_object_schema":
        assert sent_format == {"type": "json_object", "schema": server_schema(full)}
    elif dialect == "json_object":
        assert sent_format == {"type": "json_object"}
    else:
        assert sent_format is None
    in_prompt = dialect in ("json_object", "none")
    assert ("JSON Schema:" in system) is in_prompt
    assert system.startswith("Classify the note.")
    if in_prompt:
        assert "maxLength" not in system


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_answer_breaking_a_bound_left_out_of_the_sent_schema_is_still_refused(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings], dialect: str
) -> None:
    """The server is not told `maxLength: 200`; an answer of 500 characters is still invalid."""
    too_long = json.dumps({"category": "damaged", "message_draft": "x" * 500})
    openai_server.responder = lambda body: too_long
    service = OpenAIService(llm_settings(llm_structured_output=dialect))
    with pytest.raises(LLMInvalidOutput):
        run(service, lambda: classify(service))
    assert openai_server.count(CHAT_PATH) == 2  # the answer and one repair, both refused


def test_a_server_that_refuses_the_dialect_is_asked_once_and_opens_the_breaker(
    openai_server: OpenAITestServer,
    llm_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="operators.llm")
    openai_server.response_formats = frozenset({"text", "json_object"})
    settings = llm_settings(llm_max_retries=3)
    service = OpenAIService(settings, flow="dialect")

    async def calls() -> list[str]:
        reasons = []
        for i in range(5):
            try:
                await classify(service, f"note {i}")
                reasons.append("answered")
            except (LLMCallError, BreakerOpen) as exc:
                reasons.append(type(exc).__name__)
        return reasons

    reasons = run(service, calls)
    assert reasons == ["LLMCallError"] + ["BreakerOpen"] * 4
    assert openai_server.count(CHAT_PATH) == 1  # no retry, no later call
    assert service.breakers[MODEL].state is State.OPEN
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert LLAMA_CPP_TEXT in errors[0].getMessage()
    assert "SURGEFLOW_LLM_STRUCTURED_OUTPUT" in errors[0].getMessage()

    # the same server in its own dialect answers
    openai_server.reset()
    fixed = OpenAIService(llm_settings(llm_structured_output="json_object_schema"))
    assert run(fixed, lambda: classify(fixed)).value.category == "damaged"
    assert openai_server.count(CHAT_PATH) == 1


@pytest.fixture
def second_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        yield server


def embed(service: OpenAIService) -> Any:
    return service.embed(["where is my parcel"], model="text-embedding-3-small")


def test_each_task_goes_to_its_own_endpoint_with_its_own_key_and_dialect(
    openai_server: OpenAITestServer,
    second_server: OpenAITestServer,
    llm_settings: Callable[..., Settings],
) -> None:
    """Classify goes to a second server with its key and llama.cpp's dialect; replies and
    embeddings stay on the shared endpoint in OpenAI's."""
    second_server.api_key = "sk-classify-key"
    second_server.response_formats = frozenset({"text", "json_object"})
    openai_server.api_key = "sk-shared-key"
    settings = llm_settings(
        openai_api_key="sk-shared-key",
        llm_classify_base_url=second_server.base_url,
        llm_classify_api_key="sk-classify-key",
        llm_classify_structured_output="json_object_schema",
    )
    service = OpenAIService(settings)

    async def work() -> None:
        await service.chat_structured(
            messages=messages(), response_model=Verdict, model=MODEL,
            prompt_version="v1", task="classify",
        )  # fmt: skip
        await service.chat_structured(
            messages=messages("a reply please"), response_model=Verdict, model=MODEL,
            prompt_version="v1", task="reply",
        )  # fmt: skip
        await embed(service)

    run(service, work)
    assert [r.path for r in second_server.requests] == [CHAT_PATH]
    assert second_server.requests[0].body["response_format"]["type"] == "json_object"
    assert second_server.requests[0].headers["authorization"] == "Bearer sk-classify-key"
    shared = openai_server.requests
    assert sorted(r.path for r in shared) == sorted([CHAT_PATH, EMBEDDINGS_PATH])
    chat = next(r for r in shared if r.path == CHAT_PATH)
    assert chat.body["response_format"]["type"] == "json_schema"
    assert all(r.headers["authorization"] == "Bearer sk-shared-key" for r in shared)
    assert "sk-classify-key" not in repr(settings) and "sk-shared-key" not in repr(settings)


def test_a_task_without_any_endpoint_goes_to_the_rules(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    """Only embeddings are configured: chat calls are unavailable, embeddings are served."""
    settings = llm_settings(openai_base_url=None, llm_embeddings_base_url=openai_server.base_url)
    assert settings.llm.enabled
    assert settings.llm.endpoint("classify") is None
    service = OpenAIService(settings)
    with pytest.raises(LLMUnavailable, match="classify"):
        run(service, lambda: service.chat_structured(
            messages=messages(), response_model=Verdict, model=MODEL, prompt_version="v1",
            task="classify",
        ))  # fmt: skip
    vectors = run(service, lambda: embed(service)).vectors
    assert len(vectors) == 1 and len(vectors[0]) > 0
    assert [r.path for r in openai_server.requests] == [EMBEDDINGS_PATH]


def test_embedding_roles_reach_the_server_as_prefixes_and_are_cached_apart(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    """e5-style models: a message as "query: ...", an intent example as "passage: ..."."""
    settings = llm_settings(
        llm_embeddings_query_prefix="query: ", llm_embeddings_passage_prefix="passage: "
    )
    service = OpenAIService(settings)

    async def work() -> tuple[Any, Any, Any]:
        query = await service.embed(["my parcel is late"], model="text-embedding-3-small")
        passage = await service.embed(
            ["my parcel is late"], model="text-embedding-3-small", role="passage"
        )
        again = await service.embed(["my parcel is late"], model="text-embedding-3-small")
        return query, passage, again

    query, passage, again = run(service, work)
    sent = [text for r in openai_server.requests for text in r.body["input"]]
    assert sent == ["query: my parcel is late", "passage: my parcel is late"]
    assert query.vectors != passage.vectors  # the server embedded two different texts
    assert again.vectors == query.vectors and again.enrichment.source == "cache"
