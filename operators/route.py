"""The router of the tickets flow: pick the worker (route) for a message (plain Python).

Three methods, tried in this order when an LLM endpoint is configured:

1. embedding: cosine similarity of the message embedding to the embeddings of every intent example
   (`data/intents.json`); a route scores the similarity of its nearest example;
2. llm: when the embedding decision is less confident than `settings.router_confidence_threshold`,
   a structured chat call picks the route;
3. lexical: a deterministic TF-IDF scorer (cosine to each route's centroid of its examples and
   description), used when no endpoint is configured and whenever an LLM call fails.

Confidence is the softmax weight of the best route over all route scores. A follow-up ("any
update?") is scored together with the session's last turns, so it stays on its topic.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import operator
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, get_args

from pydantic import BaseModel, Field, TypeAdapter

from flows.settings import Settings
from operators.llm.types import LLMError, LLMInvalidOutput, LLMService
from operators.tickets_domain import ContextTicket, RoutedTicket
from schemas.enrichment import Enrichment
from schemas.tickets import Route

logger = logging.getLogger(__name__)

INTENTS_JSON = Path(__file__).resolve().parent.parent / "data" / "intents.json"
ROUTES: tuple[Route, ...] = get_args(Route)
FALLBACK_ROUTE: Route = "general"
ROUTER_PROMPT_VERSION = "router.v1"
ROUTER_MAX_TOKENS = 60
LEXICAL_TEMPERATURE = 0.1
EMBEDDING_TEMPERATURE = 0.05
FOLLOW_UP_MAX_WORDS = 8
WEAK_SIGNAL = 0.2
CONTEXT_TURNS = 2
CONTEXT_WEIGHT = 1.0

RouteScores = dict[Route, float]
ExampleVectors = list[tuple[Route, list[float]]]
Vector = dict[str, float]


class WorkerSpec(BaseModel):
    """The `worker` block of an intent: its model (None = the default), boost and prompt."""

    model: Optional[str] = Field(default=None, min_length=1, max_length=100)
    priority_boost: int = Field(default=0, ge=-3, le=3)
    system_prompt: str = Field(min_length=1, max_length=4000)


class IntentSpec(BaseModel):
    """One entry of `data/intents.json`."""

    intent: Route
    description: str = Field(min_length=1, max_length=1000)
    examples: list[str] = Field(min_length=1, max_length=500)
    worker: WorkerSpec


def load_intents(path: Path = INTENTS_JSON) -> dict[Route, IntentSpec]:
    """The intents file, validated: exactly one entry per route."""
    specs = TypeAdapter(list[IntentSpec]).validate_json(path.read_bytes())
    by_route = {spec.intent: spec for spec in specs}
    if len(specs) != len(ROUTES) or set(by_route) != set(ROUTES):
        raise ValueError(f"{path} must hold exactly one entry per route {ROUTES}")
    return {route: by_route[route] for route in ROUTES}


class RouteChoice(BaseModel):
    """The LLM router's structured answer."""

    route: Route
    confidence: float = Field(ge=0.0, le=1.0)


# --- lexical scoring -------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")
_IDENTIFIERS = re.compile(r"\bORD[-_ ]?\d+\b|\S+@\S+|\b\d+(?:[.,]\d+)?\b", re.IGNORECASE)
_STOP_WORDS_TEXT = """
a an and are as at be been but by can could did do does for from had has have hello hi i im in is
it its just me my of on or our please so that the their them there this to us was we were what
when where which who why will with would you your
"""
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
_SUFFIXES = ("ing", "ed", "es", "s", "ly")


def stem(word: str) -> str:
    """A light suffix stripper: `delayed`, `delays`, `delaying`, `delay` all become `delay`.

    A final `e` is dropped too, so `update`/`updated` and `charge`/`charges` meet.
    """
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def terms(text: str) -> list[str]:
    """Stemmed words without stop words, plus adjacent-word bigrams.

    Order ids, email addresses and numbers are left out: they name things, not intents.
    """
    plain = _IDENTIFIERS.sub(" ", text).lower().replace("'", "")
    words = [stem(w) for w in _WORD.findall(plain) if w not in _STOP_WORDS]
    return words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]


def _normalise(vector: Vector) -> Vector:
    norm = math.sqrt(sum(v * v for v in vector.values()))
    return {k: v / norm for k, v in vector.items()} if norm else {}


def _dot(a: Vector, b: Vector) -> float:
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return sum(v * large.get(k, 0.0) for k, v in small.items())


def decide(scores: RouteScores, temperature: float) -> tuple[Route, float]:
    """The best route and its softmax weight; `general` at 1/len(routes) when nothing scored."""
    best = max(ROUTES, key=lambda route: scores.get(route, 0.0))
    if scores.get(best, 0.0) <= 0.0:
        return FALLBACK_ROUTE, 1.0 / len(ROUTES)
    top = scores[best]
    weights = {r: math.exp((scores.get(r, 0.0) - top) / temperature) for r in ROUTES}
    return best, weights[best] / sum(weights.values())


def blend(
    current: RouteScores, context: RouteScores, weight: float = CONTEXT_WEIGHT
) -> RouteScores:
    """Route scores of a follow-up: its own plus `weight` times those of the earlier turns."""
    return {r: current.get(r, 0.0) + weight * context.get(r, 0.0) for r in ROUTES}


@dataclass(frozen=True)
class _Example:
    route: Route
    text: str


class IntentIndex:
    """The intents with a TF-IDF centroid per route and a memo of the example embeddings.

    A route's centroid is the normalised sum of the TF-IDF vectors of its examples and its
    description.
    """

    def __init__(self, intents: dict[Route, IntentSpec]) -> None:
        self.intents = intents
        self.examples = tuple(
            _Example(route, text) for route, spec in intents.items() for text in spec.examples
        )
        documents = [terms(e.text) for e in self.examples]
        documents += [terms(spec.description) for spec in intents.values()]
        document_frequency = Counter(term for doc in documents for term in set(doc))
        n = len(documents)
        self._idf = {t: math.log((1 + n) / (1 + df)) + 1.0 for t, df in document_frequency.items()}
        self._centroids = {route: self._centroid(route) for route in ROUTES}
        self._embeddings: dict[str, ExampleVectors] = {}
        self._fetches: dict[tuple[int, str], asyncio.Future[Enrichment]] = {}

    @classmethod
    def from_file(cls, path: Path = INTENTS_JSON) -> IntentIndex:
        return cls(load_intents(path))

    def _tfidf(self, text: str) -> Vector:
        counts = Counter(t for t in terms(text) if t in self._idf)
        return _normalise({t: (1 + math.log(c)) * self._idf[t] for t, c in counts.items()})

    def _centroid(self, route: Route) -> Vector:
        spec = self.intents[route]
        total: Counter[str] = Counter()
        for text in (*spec.examples, spec.description):
            total.update(self._tfidf(text))
        return _normalise(dict(total))

    def lexical_scores(self, text: str) -> RouteScores:
        """Per route: the cosine of the TF-IDF vector of `text` to the route's centroid."""
        query = self._tfidf(text)
        return {route: _dot(query, centroid) for route, centroid in self._centroids.items()}

    def lexical(self, text: str) -> tuple[Route, float]:
        """The deterministic route and confidence of `text` (no network)."""
        return decide(self.lexical_scores(text), LEXICAL_TEMPERATURE)

    async def example_embeddings(
        self, service: LLMService, model: str
    ) -> tuple[ExampleVectors, Optional[Enrichment]]:
        """Unit vectors of every example, fetched once per model.

        Concurrent first callers on one event loop share a single fetch; the caller that started
        it also gets the fetch's enrichment (the others get None), so its cost is counted once.
        """
        if model in self._embeddings:
            return self._embeddings[model], None
        key = (id(asyncio.get_running_loop()), model)
        fetch = self._fetches.get(key)
        started_here = fetch is None
        if fetch is None:
            fetch = self._fetches[key] = asyncio.ensure_future(self._fetch(service, model))
        try:
            enrichment = await asyncio.shield(fetch)
        finally:
            if started_here:
                self._fetches.pop(key, None)
        return self._embeddings[model], enrichment if started_here else None

    async def _fetch(self, service: LLMService, model: str) -> Enrichment:
        result = await service.embed([e.text for e in self.examples], model=model)
        if len(result.vectors) != len(self.examples):
            raise LLMInvalidOutput("embedding count differs from the number of intent examples")
        pairs = zip(self.examples, result.vectors, strict=True)
        self._embeddings[model] = [(e.route, unit(v)) for e, v in pairs]
        return result.enrichment

    @staticmethod
    def embedding_scores(vector: Sequence[float], examples: ExampleVectors) -> RouteScores:
        """Per route: the cosine similarity of `vector` to its nearest example."""
        query = unit(vector)
        scores = dict.fromkeys(ROUTES, 0.0)
        for route, example in examples:
            if len(example) != len(query):
                raise LLMInvalidOutput("message and example embeddings differ in dimension")
            scores[route] = max(scores[route], sum(map(operator.mul, query, example)))
        return scores


def unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else list(vector)


# --- routing a ticket ------------------------------------------------------------------------


def context_text(t: ContextTicket, own_scores: RouteScores) -> str:
    """The session's last turns when `t` is a follow-up; empty otherwise.

    A follow-up has history and is short ("any update?") or carries little intent of its own
    (its best lexical score is below `WEAK_SIGNAL`, e.g. "please reply, third time I write").
    """
    if not t.history:
        return ""
    short = len(t.text.split()) <= FOLLOW_UP_MAX_WORDS
    if not short and max(own_scores.values(), default=0.0) >= WEAK_SIGNAL:
        return ""
    return " ".join(turn.text for turn in t.history[-CONTEXT_TURNS:])


def route_lexically(
    t: ContextTicket, index: IntentIndex, spent: tuple[Enrichment, ...] = ()
) -> RoutedTicket:
    """Route with the lexical scorer, keeping the enrichments of any LLM calls already made."""
    scores = index.lexical_scores(t.text)
    earlier = context_text(t, scores)
    if earlier:
        scores = blend(scores, index.lexical_scores(earlier))
    route, confidence = decide(scores, LEXICAL_TEMPERATURE)
    return RoutedTicket.from_context(
        t, route=route, route_method="lexical", confidence=confidence, route_enrichments=spent
    )


async def _embedding_decision(
    t: ContextTicket,
    *,
    service: LLMService,
    index: IntentIndex,
    model: str,
    spent: list[Enrichment],
) -> tuple[Route, float]:
    examples, fetched = await index.example_embeddings(service, model)
    if fetched is not None:
        spent.append(fetched)
    earlier = context_text(t, index.lexical_scores(t.text))
    texts = [t.text, earlier] if earlier else [t.text]
    result = await service.embed(texts, model=model)
    spent.append(result.enrichment)
    if len(result.vectors) != len(texts):
        raise LLMInvalidOutput(f"{len(result.vectors)} embeddings for {len(texts)} texts")
    scores = index.embedding_scores(result.vectors[0], examples)
    if earlier:
        scores = blend(scores, index.embedding_scores(result.vectors[1], examples))
    return decide(scores, EMBEDDING_TEMPERATURE)


def router_messages(t: ContextTicket, index: IntentIndex) -> list[dict[str, str]]:
    """The chat prompt of the LLM fallback: the intents, the recent turns and the message."""
    intents = "\n".join(f"- {route}: {spec.description}" for route, spec in index.intents.items())
    system = (
        "You route customer-support and internal IT messages to exactly one intent.\n"
        f"Intents:\n{intents}\n"
        'Answer with JSON {"route": <intent>, "confidence": <0..1>}. '
        "Use the earlier messages only to resolve short follow-ups."
    )
    earlier = "\n".join(f"- {turn.text}" for turn in t.history[-CONTEXT_TURNS:]) or "(none)"
    user = f"Earlier messages in this conversation:\n{earlier}\n\nMessage:\n{t.text}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


async def _route_with_llm(
    t: ContextTicket,
    *,
    service: LLMService,
    index: IntentIndex,
    settings: Settings,
    spent: list[Enrichment],
) -> RoutedTicket:
    model = settings.llm_model_embeddings
    route, confidence = await _embedding_decision(
        t, service=service, index=index, model=model, spent=spent
    )
    if confidence >= settings.router_confidence_threshold:
        return RoutedTicket.from_context(
            t,
            route=route,
            route_method="embedding",
            confidence=confidence,
            route_enrichments=tuple(spent),
        )
    answer = await service.chat_structured(
        messages=router_messages(t, index),
        response_model=RouteChoice,
        model=settings.llm_model_route,
        prompt_version=ROUTER_PROMPT_VERSION,
        max_tokens=min(settings.llm_max_tokens, ROUTER_MAX_TOKENS),
    )
    spent.append(answer.enrichment)
    return RoutedTicket.from_context(
        t,
        route=answer.value.route,
        route_method="llm",
        confidence=answer.value.confidence,
        route_enrichments=tuple(spent),
    )


async def route_ticket(
    t: ContextTicket, *, service: LLMService, index: IntentIndex, settings: Settings
) -> RoutedTicket:
    """Choose the route of a message: embedding, then LLM below the threshold, else lexical.

    Without an enabled service (or without text to embed) the lexical scorer decides. Any
    `LLMError` on the way falls back to the lexical scorer; the enrichments of the calls that did
    succeed are kept.
    """
    if not service.enabled or not t.text:
        return route_lexically(t, index)
    spent: list[Enrichment] = []
    try:
        return await _route_with_llm(
            t, service=service, index=index, settings=settings, spent=spent
        )
    except LLMError as error:
        logger.debug("routing %s lexically: %s", t.message.message_id, error)
        return route_lexically(t, index, tuple(spent))
