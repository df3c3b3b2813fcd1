"""Structured chat answers: the cached answer, else a provider call with one repair attempt.

`StructuredChat.lookup(spec)` serves a request from the cache. `produce(spec)` asks the provider
(through `ProviderCaller`: breaker, budget with the fallback model, limits, retries) and
validates the answer into the request's pydantic model. An answer that does not validate (JSON
that breaks the schema, text that is no JSON, an unreadable or empty body) gets one repair call:
the original messages, the invalid answer as the assistant's turn and a user turn naming the
validation error and asking for a corrected JSON object. When that fails too, `LLMInvalidOutput`
(with what both calls `spent`) sends the caller to its rules engine.

A valid answer is cached before it is returned, under the key of the request as sent (model,
messages, parameters, prompt version) and, after a repair, under the original request's key too,
so a replay is free. The entry keeps the answer's usage, which is the cost a later hit saves. An
answer of the fallback model is cached under the fallback model's request only, so it never
stands in for the configured model later.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic

import openai
from pydantic import BaseModel

from operators.config.llm import StructuredOutput
from operators.llm.admission import estimate_prompt_tokens
from operators.llm.cache import InProcessCache, canonical_json, chat_key
from operators.llm.provider import ProviderCaller, ProviderReply, ProviderRequest
from operators.llm.responses import (
    chat_answer,
    pack_answer,
    unpack_answer,
    usage_tokens,
    validate_answer,
)
from operators.llm.served import Served, TolerantCache
from operators.llm.types import LLMError, LLMInvalidOutput, Spent, T

REPAIR_INSTRUCTION = (
    "Your previous answer could not be used: {error}\n"
    "Answer again with only a JSON object that matches the requested schema."
)
MAX_REPAIR_ANSWER_CHARS = 4000
MAX_REPAIR_ERROR_CHARS = 1000


SCHEMA_INSTRUCTION = (
    "Answer with only a JSON object, no other text, that is valid against this JSON Schema:\n"
    "{schema}"
)
MAX_SERVER_ITEMS = 16
"""`maxItems` above this is left out of the schema sent to a server (validated here instead)."""


@functools.lru_cache(maxsize=256)
def _json_schema(response_model: type[BaseModel]) -> dict[str, Any]:
    return response_model.model_json_schema()


def server_schema(schema: Any) -> Any:
    """`schema` without the bounds that blow up a server's grammar (`maxLength`, a large
    `maxItems`): a server that compiles a schema into a grammar expands each bounded repetition
    into rules, and llama.cpp's server dies on a `maxLength` of 1200. The answer is still
    validated against the full schema here."""
    if isinstance(schema, dict):
        return {
            key: server_schema(value)
            for key, value in schema.items()
            if key != "maxLength"
            and not (key == "maxItems" and isinstance(value, int) and value > MAX_SERVER_ITEMS)
        }
    if isinstance(schema, list):
        return [server_schema(item) for item in schema]
    return schema


@functools.lru_cache(maxsize=256)
def _server_schema(response_model: type[BaseModel]) -> dict[str, Any]:
    sent: dict[str, Any] = server_schema(_json_schema(response_model))
    return sent


def response_format(
    response_model: type[BaseModel], dialect: StructuredOutput = "json_schema"
) -> dict[str, Any] | None:
    """The `response_format` asking for a JSON instance of `response_model`'s schema in the
    server's `dialect` (None for `none`); the schema is generated once per model."""
    schema = _server_schema(response_model)
    if dialect == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": response_model.__name__, "schema": schema, "strict": False},
        }
    if dialect == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    if dialect == "json_object":
        return {"type": "json_object"}
    return None


def with_schema_instruction(
    messages: list[dict[str, str]], response_model: type[BaseModel]
) -> list[dict[str, str]]:
    """`messages` with the schema spelled out in the system turn, for servers that take no schema
    in `response_format` (dialects `json_object` and `none`)."""
    schema = canonical_json(_server_schema(response_model))
    instruction = SCHEMA_INSTRUCTION.format(schema=schema)
    if messages and messages[0].get("role") == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{instruction}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


@dataclass(frozen=True)
class ChatSpec(Generic[T]):
    """One structured chat request as the caller asked it, and the dialect its server speaks."""

    messages: list[dict[str, str]]
    response_model: type[T]
    model: str
    prompt_version: str
    max_tokens: int
    dialect: StructuredOutput = "json_schema"
    parameters: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        parameters: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": 0}
        sent_format = response_format(self.response_model, self.dialect)
        if sent_format is not None:
            parameters["response_format"] = sent_format
        object.__setattr__(self, "parameters", parameters)

    def sent(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """`messages` as sent: with the schema in the prompt when the dialect carries none."""
        if self.dialect in ("json_object", "none"):
            return with_schema_instruction(messages, self.response_model)
        return messages

    def key(self, model: str | None = None, messages: list[dict[str, str]] | None = None) -> str:
        """The cache key of this request, or of it sent to `model` with `messages`."""
        return chat_key(
            model=model or self.model,
            messages=self.sent(self.messages if messages is None else messages),
            parameters=self.parameters,
            prompt_version=self.prompt_version,
        )


def repair_messages(
    messages: list[dict[str, str]], answer: str | None, error: str
) -> list[dict[str, str]]:
    """`messages` followed by the invalid `answer` (if any) and a request to correct it."""
    turns = list(messages)
    if answer:
        turns.append({"role": "assistant", "content": answer[:MAX_REPAIR_ANSWER_CHARS]})
    instruction = REPAIR_INSTRUCTION.format(error=error[:MAX_REPAIR_ERROR_CHARS])
    turns.append({"role": "user", "content": instruction})
    return turns


@dataclass(frozen=True)
class _Draft(Generic[T]):
    """One provider answer: its value when valid, else its content (if any) and the error."""

    reply: ProviderReply | None
    value: T | None = None
    content: str | None = None
    answered_by: str | None = None
    error: LLMInvalidOutput | None = None


class StructuredChat:
    """Cached, validated, once-repaired structured chat calls."""

    def __init__(
        self,
        *,
        client: Callable[[], openai.AsyncOpenAI],
        caller: ProviderCaller,
        cache: TolerantCache,
        fallback_model: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self._client = client
        self._endpoint = endpoint
        self._caller = caller
        self._cache = cache
        self._fallback = fallback_model

    async def lookup(self, spec: ChatSpec[T]) -> Served[T] | None:
        """The cached answer of `spec` (its cost is what the hit saves), or None."""
        key = spec.key()
        hit = unpack_answer((await self._cache.get([key])).get(key), spec.response_model)
        if hit is None:
            return None
        return Served(hit.value, hit.model, "cache_hit", cost_saved_usd=hit.cost_usd)

    def lookup_now(self, front: InProcessCache, spec: ChatSpec[T]) -> Served[T] | None:
        """`lookup` in the in-process `front` only, on the calling thread (no event loop)."""
        key = spec.key()
        found = front.get_many_now([key], count_misses=False).get(key)
        hit = unpack_answer(found, spec.response_model)
        if hit is None:
            return None
        return Served(hit.value, hit.model, "cache_hit", cost_saved_usd=hit.cost_usd)

    async def produce(self, spec: ChatSpec[T]) -> Served[T]:
        """A validated answer from the provider, repaired once if needed; cached."""
        first = await self._ask(spec, spec.messages)
        if first.value is not None:
            return await self._keep(spec, [first], [spec.key(_sent_model(first, spec))])
        return await self._repair(spec, first)

    async def _repair(self, spec: ChatSpec[T], first: _Draft[T]) -> Served[T]:
        """One more call that shows the model its unusable answer and why; else the error."""
        fixing = repair_messages(spec.messages, first.content, str(first.error))
        try:
            second = await self._ask(spec, fixing)
        except LLMError as exc:
            exc.spent = _spent([first])
            raise
        if second.value is None:
            error = LLMInvalidOutput(f"answer still invalid after a repair: {second.error}")
            error.spent = _spent([first, second])
            raise error
        model = _sent_model(second, spec)
        return await self._keep(spec, [first, second], [spec.key(model), spec.key(model, fixing)])

    async def _keep(self, spec: ChatSpec[T], drafts: list[_Draft[T]], keys: list[str]) -> Served[T]:
        """Cache the valid last draft under `keys`; its value with the usage of every draft."""
        last = drafts[-1]
        assert last.value is not None and last.content is not None and last.reply is not None
        spent = _spent(drafts)
        usage: dict[str, Any] = {
            "tokens_in": spent.tokens_in,
            "tokens_out": spent.tokens_out,
            "cost_usd": spent.cost_usd,
        }
        entry = pack_answer(last.content, last.answered_by or last.reply.model, usage)
        await self._cache.set(dict.fromkeys(keys, entry))
        fallback = last.reply.model != spec.model
        return Served(
            last.value,
            last.answered_by or last.reply.model,
            "fallback" if fallback else "success",
            spent.tokens_in,
            spent.tokens_out,
            spent.cost_usd,
            fallback_reason="budget" if fallback else None,
        )

    async def _ask(self, spec: ChatSpec[T], messages: list[dict[str, str]]) -> _Draft[T]:
        """One provider call (with its retries) and the validation of its answer."""
        try:
            reply = await self._caller.call(self._request(spec, messages))
        except LLMInvalidOutput as exc:  # an unreadable body: nothing to show the model
            return _Draft(None, error=exc)
        try:
            content, answered_by, _, _ = chat_answer(reply.response, reply.model)
        except LLMInvalidOutput as exc:
            return _Draft(reply, error=exc)
        try:
            value = validate_answer(spec.response_model, content)
        except LLMInvalidOutput as exc:
            return _Draft(reply, content=content, answered_by=answered_by, error=exc)
        return _Draft(reply, value, content, answered_by)

    def _request(self, spec: ChatSpec[T], messages: list[dict[str, str]]) -> ProviderRequest:
        schema = canonical_json(spec.parameters.get("response_format") or {})
        fallbacks = (self._fallback,) if self._fallback else ()
        sent = spec.sent(messages)

        async def send(model: str, attempt: int) -> Any:
            return await self._client().chat.completions.create(
                model=model,
                messages=sent,  # type: ignore[arg-type]  # role/content dicts; openai types each role
                extra_headers={"x-stainless-retry-count": str(attempt)},
                **spec.parameters,
            )

        return ProviderRequest(
            operation="chat",
            model=spec.model,
            tokens_in=estimate_prompt_tokens(sent, schema),
            tokens_out=spec.max_tokens,
            send=send,
            usage=lambda r: (
                usage_tokens(r, "prompt_tokens"),
                usage_tokens(r, "completion_tokens"),
            ),
            fallback_models=fallbacks,
            endpoint=self._endpoint,
        )


def _sent_model(draft: _Draft[Any], spec: ChatSpec[Any]) -> str:
    return draft.reply.model if draft.reply is not None else spec.model


def _spent(drafts: list[_Draft[Any]]) -> Spent:
    replies = [d.reply for d in drafts if d.reply is not None]
    model = replies[-1].model if replies else ""
    return Spent(
        model,
        sum(r.tokens_in for r in replies),
        sum(r.tokens_out for r in replies),
        sum(r.cost_usd for r in replies),
    )
