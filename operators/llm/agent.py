"""One agent protocol and the one adapter that runs every LLM-backed agent (plain Python).

An agent (`Agent`) says what is particular to it; `AgentRunner` does what every agent does:

    item ─ needs no call? ─────────────────────────────► rules(item, None)
         ─ no endpoint configured? ────────────────────► rules(item, "disabled")
         ─ consult: the calls it asks for, answered
             now, on the worker thread, from this process's cache (`answer_now`), or
             by the service on the event loop (`answer`)
             ─ an `LLMError` on the way ───────────────► rules(item, error.reason, spent)
             ─ an output ─ violations(item, output)? ──► blocked(item, output, violations)
                                                  └────► output

`consult(item, spent)` is a generator: it yields the calls it needs (`Chat`, `Embed`, or its own
`Call`), receives each result and returns the output; raising an `LLMError` (an answer it cannot
use) sends the item to the rules like a failed call. `spent` holds the enrichment (provenance and
cost) of every call answered so far, so an output (and a fallback) can carry what was paid; a
fallback also gets the enrichment of the failed call itself when the provider answered and was
paid (`LLMError.paid`: an answer that did not validate, a truncated or a refused one).
`ChatAgent` is the usual shape, one structured chat: the prompt (`request`), the answer model
(`answer_model`) and how an answer becomes the output (`answer`).

`answer_now` serves an item without the event loop when the rules answer it or every call it
needs is held in this process (`chat_cached_now` / `embed_cached_now`); else it returns None and
the item goes to `answer`. The accounting of what it served is kept on a `Tab` and settled only
when the whole consultation was answered, so an item served half from the process and then by
`answer` is accounted once. A runner is what `agent_step` runs: `answer` as the async agent,
`answer_now` as `ready`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Optional, Protocol, TypeVar

from pydantic import BaseModel

from operators.config.llm import EmbeddingRole, Task
from operators.llm.types import ChatResult, EmbedResult, LLMError, LLMService, Tab
from schemas.enrichment import Enrichment, FallbackReason, PolicyRule, combine_enrichments

log = logging.getLogger(__name__)

X = TypeVar("X")
Y = TypeVar("Y")
A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", covariant=True)


class Paid(Protocol):
    """A call's result: it says what the call cost (None when it cost this item nothing)."""

    @property
    def enrichment(self) -> Optional[Enrichment]: ...


class Call(Protocol[R]):
    """One call an agent asks for: answered by the service, or by what this process holds."""

    def ask(self, llm: LLMService) -> Awaitable[R]:
        """The result, from the service (cache, an identical call in flight, or the provider)."""
        ...

    def held(self, llm: LLMService, tab: Tab) -> Optional[R]:
        """The result if this process holds it (no event loop, no network), accounted on `tab`;
        else None."""
        ...


Consultation = Generator[Call[Any], Any, Y]
"""What `Agent.consult` is: yields calls, is sent their results, returns the output."""


@dataclass(frozen=True)
class ChatRequest:
    """A chat prompt and where it goes (`LLMService.chat_structured` without the answer model)."""

    messages: list[dict[str, str]]
    model: str
    prompt_version: str
    max_tokens: Optional[int] = None
    key: Optional[str] = None
    task: Optional[Task] = None
    """Which endpoint answers it (`classify`, `route`, `reply`; None = the shared one)."""


@dataclass(frozen=True)
class Chat(Generic[A]):
    """A structured chat call whose answer validates as `answer_model`."""

    request: ChatRequest
    answer_model: type[A]

    def _arguments(self) -> dict[str, Any]:
        r = self.request
        return dict(
            messages=r.messages, response_model=self.answer_model, model=r.model,
            prompt_version=r.prompt_version, max_tokens=r.max_tokens, key=r.key, task=r.task,
        )  # fmt: skip

    def ask(self, llm: LLMService) -> Awaitable[ChatResult[A]]:
        return llm.chat_structured(**self._arguments())

    def held(self, llm: LLMService, tab: Tab) -> Optional[ChatResult[A]]:
        return llm.chat_cached_now(**self._arguments(), tab=tab)


@dataclass(frozen=True)
class Embed:
    """An embedding call: one vector per text."""

    texts: Sequence[str]
    model: str
    key: Optional[str] = None
    role: EmbeddingRole = "query"

    def ask(self, llm: LLMService) -> Awaitable[EmbedResult]:
        return llm.embed(self.texts, model=self.model, key=self.key, role=self.role)

    def held(self, llm: LLMService, tab: Tab) -> Optional[EmbedResult]:
        return llm.embed_cached_now(
            self.texts, model=self.model, key=self.key, tab=tab, role=self.role
        )


class Agent(ABC, Generic[X, Y]):
    """An LLM-backed agent turning an `X` into a `Y`: what `AgentRunner` needs to know of it."""

    name: ClassVar[str]
    """Names the agent in logs."""

    def needs_call(self, item: X) -> bool:
        """Whether `item` is worth a call at all (when not, the rules answer it)."""
        return True

    @abstractmethod
    def rules(self, item: X, reason: Optional[FallbackReason], spent: Sequence[Enrichment]) -> Y:
        """The rules' output for `item`; `reason` says why they stand in for the LLM (None when
        the item needs no call), `spent` what the calls made before a failure cost."""

    @abstractmethod
    def consult(self, item: X, spent: Sequence[Enrichment]) -> Consultation[Y]:
        """The calls `item` needs and the output made of their results (see the module)."""

    def violations(self, item: X, output: Y) -> tuple[PolicyRule, ...]:
        """The output checks: the policy rules an output of the LLM path breaks (none here)."""
        return ()

    def blocked(self, item: X, output: Y, violations: tuple[PolicyRule, ...]) -> Y:
        """The output in place of one that broke `violations` (agents with checks define it)."""
        raise NotImplementedError(f"{type(self).__name__} checks outputs but blocks none")

    def label(self, item: X) -> str:
        """What logs call `item`."""
        return type(item).__name__


class ChatAgent(Agent[X, Y], Generic[X, Y, A]):
    """An agent that asks one structured chat question per item."""

    answer_model: ClassVar[type[BaseModel]]
    """The model the answer must validate as (the `A` of `answer`)."""

    @abstractmethod
    def request(self, item: X) -> ChatRequest:
        """The prompt of `item` and where it goes."""

    @abstractmethod
    def answer(self, item: X, result: ChatResult[A]) -> Y:
        """The output made of a validated answer (raise an `LLMError` for an unusable one)."""

    def consult(self, item: X, spent: Sequence[Enrichment]) -> Consultation[Y]:
        result: ChatResult[A] = yield Chat(self.request(item), self.answer_model)
        return self.answer(item, result)


class AgentRunner(Generic[X, Y]):
    """Runs `agent` over `llm`: `answer` (async) and `answer_now` (the worker thread)."""

    def __init__(self, agent: Agent[X, Y], llm: LLMService) -> None:
        self.agent = agent
        self.llm = llm

    def answer_now(self, item: X) -> Optional[Y]:
        """The output of `item` without waiting: by the rules when no call is due, or from what
        this process holds; None when a call has to be made (then `answer` makes it)."""
        agent = self.agent  # `_without_llm(item)`, written out
        if not agent.needs_call(item):
            return agent.rules(item, None, ())
        if not self.llm.enabled:
            return agent.rules(item, "disabled", ())
        tab = Tab()
        output = self._run(item, lambda call: call.held(self.llm, tab))
        if output is not None:
            self.llm.settle(tab)
        return output

    async def answer(self, item: X) -> Y:
        """The output of `item`: the rules when no call is due, else the agent's consultation
        with its calls answered by the service; never raises an `LLMError` (the rules answer)."""
        done = self._without_llm(item)
        if done is not None:
            return done
        spent: list[Enrichment] = []
        consultation = self.agent.consult(item, spent)
        try:
            call = next(consultation)
            while True:
                result = await call.ask(self.llm)
                _note(spent, result)
                call = consultation.send(result)
        except StopIteration as finished:
            return self._checked(item, finished.value)
        except LLMError as error:
            consultation.close()
            return self._fallback(item, error, spent)

    def _without_llm(self, item: X) -> Optional[Y]:
        if not self.agent.needs_call(item):
            return self.agent.rules(item, None, ())
        if not self.llm.enabled:
            return self.agent.rules(item, "disabled", ())
        return None

    def _run(self, item: X, held: Callable[[Call[Any]], Any]) -> Optional[Y]:
        """The consultation with every call answered by `held`; None at its first miss."""
        spent: list[Enrichment] = []
        consultation = self.agent.consult(item, spent)
        try:
            call = next(consultation)
            while True:
                result = held(call)
                if result is None:
                    consultation.close()
                    return None
                _note(spent, result)
                call = consultation.send(result)
        except StopIteration as finished:
            return self._checked(item, finished.value)
        except LLMError as error:
            consultation.close()
            return self._fallback(item, error, spent)

    def _checked(self, item: X, output: Y) -> Y:
        violations = self.agent.violations(item, output)
        return self.agent.blocked(item, output, violations) if violations else output

    def _fallback(self, item: X, error: LLMError, spent: Sequence[Enrichment]) -> Y:
        log.debug(
            "%s: %s for %s (%s); the rules answer",
            self.agent.name, type(error).__name__, self.agent.label(item), error,
        )  # fmt: skip
        paid = (*spent, error.paid) if error.paid is not None else tuple(spent)
        return self.agent.rules(item, error.reason, paid)


E = TypeVar("E", bound=Enrichment)


def with_spent(enrichment: E, spent: Sequence[Enrichment]) -> E:
    """A rules `enrichment` with the model, tokens, cost and latency of the calls `spent` for its
    item (the text is the rules', the bill is the calls'); `enrichment` itself when none."""
    paid = combine_enrichments(spent)
    if paid is None:
        return enrichment
    fields = {"model", "tokens_in", "tokens_out", "cost_usd", "latency_ms"}
    return enrichment.model_copy(update=paid.model_dump(include=fields))


def _note(spent: list[Enrichment], result: Paid) -> None:
    if result.enrichment is not None:
        spent.append(result.enrichment)
