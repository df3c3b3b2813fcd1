"""The intents of the tickets router (`data/intents.json`) and their index (plain Python).

`IntentIndex` holds, per route, the examples and description, a lexical TF-IDF scorer over them
(`operators.tickets.lexical`) and the example embeddings, fetched once per model and shared by every
message; `operators.tickets.router` decides with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Optional

from pydantic import BaseModel, Field, TypeAdapter

from operators.llm.types import LLMInvalidOutput, LLMService
from operators.runtime.resources import data_file
from operators.tickets.lexical import ROUTES, LexicalScorer, RouteScores
from schemas.enrichment import Enrichment
from schemas.tickets import Route

INTENTS_JSON = data_file("intents.json")

ExampleVectors = list[tuple[Route, list[float]]]


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


def load_intents(path: Traversable = INTENTS_JSON) -> dict[Route, IntentSpec]:
    """The intents file, validated: exactly one entry per route."""
    specs = TypeAdapter(list[IntentSpec]).validate_json(path.read_bytes())
    by_route = {spec.intent: spec for spec in specs}
    if len(specs) != len(ROUTES) or set(by_route) != set(ROUTES):
        raise ValueError(f"{path} must hold exactly one entry per route {ROUTES}")
    return {route: by_route[route] for route in ROUTES}


@dataclass(frozen=True)
class _Example:
    route: Route
    text: str


def examples_version(intents: dict[Route, IntentSpec]) -> str:
    """A content version of the examples the router embeds: `ex-` and 12 hex digits of the
    SHA-256 of every route's examples in order. A calibration of the embedding router is fitted
    on one version and holds only for it."""
    content = [[route, spec.examples] for route, spec in intents.items()]
    encoded = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    return "ex-" + hashlib.sha256(encoded).hexdigest()[:12]


class IntentIndex:
    """The intents with their lexical scorer and a memo of the example embeddings.

    The lexical scorer (`lexical_scorer`, an `operators.tickets.lexical.LexicalScorer`) keeps a
    TF-IDF centroid per route: the normalised sum of the TF-IDF vectors of its examples and its
    description. `version` names the examples' content (`examples_version`).
    """

    def __init__(self, intents: dict[Route, IntentSpec]) -> None:
        self.intents = intents
        self.version = examples_version(intents)
        self.examples = tuple(
            _Example(route, text) for route, spec in intents.items() for text in spec.examples
        )
        self.lexical_scorer = LexicalScorer(intents)
        self._embeddings: dict[str, ExampleVectors] = {}
        self._fetches: dict[tuple[int, str], asyncio.Future[Enrichment]] = {}

    @classmethod
    def from_file(cls, path: Traversable = INTENTS_JSON) -> IntentIndex:
        return cls(load_intents(path))

    def lexical_scores(self, text: str) -> RouteScores:
        """Per route: the cosine of the TF-IDF vector of `text` to the route's centroid."""
        return self.lexical_scorer.scores(text)

    def lexical_values(self, text: str) -> tuple[float, ...]:
        """`lexical_scores(text)` in the order of `ROUTES`."""
        return self.lexical_scorer.values(text)

    def joined_lexical_values(self, texts: Sequence[str]) -> tuple[float, ...]:
        """`lexical_values(" ".join(texts))`, from the words of each text."""
        return self.lexical_scorer.joined_values(texts)

    def lexical(self, text: str) -> tuple[Route, float]:
        """The deterministic route and confidence of `text` (no network)."""
        return self.lexical_scorer.route(text)

    def held_example_embeddings(self, model: str) -> Optional[ExampleVectors]:
        """The examples' unit vectors by `model` if fetched already, else None."""
        return self._embeddings.get(model)

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
        texts = [e.text for e in self.examples]
        result = await service.embed(texts, model=model, role="passage")
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
