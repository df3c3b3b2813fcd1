"""Embeddings: a per-text cache, merged texts in flight, micro-batched provider requests.

`Embeddings.embed(texts, model)` answers every text it can from the cache (one batched lookup),
and hands each remaining distinct text to the loop's `MicroBatcher` of the model through a
`SingleFlight` keyed by the text's cache key. The batcher gathers the texts of every message
submitted within `embed_batch_wait_seconds` (up to `embed_batch_size`) into one provider request
(`ProviderCaller`: breaker, budget, limits, retries), so a surge of short messages costs a few
large requests instead of one each; a text already on its way in an earlier batch is joined
instead of sent again. Each batch's vectors are cached per text.

A request of n texts has the timeout `llm.embed_timeout(n)`: `SURGEFLOW_LLM_TIMEOUT_SECONDS`
plus `SURGEFLOW_EMBED_TIMEOUT_PER_TEXT_SECONDS` per text, as a CPU server takes time per text.
A request of several texts that times out is not sent again at the same size: it is split in
halves, sent one after the other (a slow server gets one piece at a time), down to single texts
(a single text keeps the usual retries); other failures (429, 5xx) are retried as for any call.
The batch size cap of the model (`AdaptiveBatchSize`) drops below each size that timed out and
grows again slowly while batches near it succeed; a batch made before a drop is sent in pieces
of the new cap. The whole batch, splits included, has a deadline, `embed_bound_seconds` (a call
at the timeout of a full batch): texts still unanswered then fail with `LLMTimeout`, which keeps
every item within `item_bound_seconds`. Each piece's answer is kept (cache, results) whatever
happens to the others.

A batch's `usage.prompt_tokens` is shared among its texts in proportion to their estimated
tokens; a text's share is its `tokens_in` and cost. A cache hit saves what the text would cost
at its estimated size (vectors are cached without their usage).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import openai

from operators.config.llm import LLMSettings
from operators.llm.batching import AdaptiveBatchSize, MicroBatcher
from operators.llm.cache import InProcessCache, embedding_key, pack_vector, unpack_vector
from operators.llm.pricing import PriceTable
from operators.llm.prompt_text import estimate_tokens
from operators.llm.provider import ProviderCaller, ProviderRequest
from operators.llm.responses import embedding_vectors, usage_tokens
from operators.llm.served import Served, ServedOutcome, TolerantCache
from operators.llm.singleflight import SingleFlight
from operators.llm.types import LLMError, LLMTimeout
from operators.runtime.per_loop import PerLoop
from operators.runtime.runner import embed_bound_seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embedded:
    """One text's vector and its share of its batch's tokens and cost."""

    vector: list[float]
    tokens: int
    cost_usd: float


def shares(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights` (largest remainders), summing to `total`."""
    if not weights:
        return []
    scaled = list(weights) if sum(weights) > 0 else [1] * len(weights)
    exact = [total * w / sum(scaled) for w in scaled]
    parts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


@dataclass
class _Batching:
    """One model's batcher on one loop and the size cap its timeouts set."""

    batcher: MicroBatcher[str, Embedded]
    size: AdaptiveBatchSize

    def timed_out(self, size: int) -> None:
        self.batcher.max_size = self.size.timed_out(size)

    def succeeded(self, size: int) -> None:
        self.batcher.max_size = self.size.succeeded(size)


async def _close_all(batchings: dict[str, _Batching]) -> None:
    for batching in batchings.values():
        await batching.batcher.aclose()


class Embeddings:
    """Cached, merged, micro-batched embeddings of one service."""

    def __init__(
        self,
        llm: LLMSettings,
        *,
        client: Callable[[], openai.AsyncOpenAI],
        caller: ProviderCaller,
        cache: TolerantCache,
        prices: PriceTable,
        endpoint: str | None = None,
    ) -> None:
        self._llm = llm
        self._client = client
        self._endpoint = endpoint
        self._caller = caller
        self._cache = cache
        self._prices = prices
        self._batchers: PerLoop[dict[str, _Batching]] = PerLoop(dict, close=_close_all)
        self._bound = embed_bound_seconds(llm)
        self._flights: PerLoop[SingleFlight[str, Embedded]] = PerLoop(SingleFlight)

    async def embed(self, texts: Sequence[str], model: str) -> Served[list[list[float]]]:
        """One vector per text, in order, with the batch shares of the texts sent for it."""
        keys = {text: embedding_key(model=model, text=text) for text in texts}
        cached = await self._cache.get(list(keys.values()))
        found = {text: unpack_vector(cached[key]) for text, key in keys.items() if key in cached}
        saved = sum(self._prices.cost(model, estimate_tokens(text)) for text in found)
        misses = [text for text in keys if text not in found]
        fresh = await asyncio.gather(*(self._one(model, text, keys[text]) for text in misses))
        sent = [item for item, joined in fresh if not joined]
        merged = [item for item, joined in fresh if joined]
        for text, (item, _) in zip(misses, fresh, strict=True):
            found[text] = item.vector
        outcome: ServedOutcome = "success" if sent else "merged" if merged else "cache_hit"
        return Served(
            [found[text] for text in texts],
            model,
            outcome,
            tokens_in=sum(item.tokens for item in sent),
            cost_usd=sum(item.cost_usd for item in sent),
            cost_saved_usd=saved + sum(item.cost_usd for item in merged),
        )

    def lookup_now(
        self, front: InProcessCache, texts: Sequence[str], model: str
    ) -> Served[list[list[float]]] | None:
        """`embed` from the in-process `front` only, on the calling thread (no event loop);
        None unless it holds every text."""
        keys = {text: embedding_key(model=model, text=text) for text in texts}
        found = front.get_many_now(list(keys.values()), count_misses=False)
        if len(found) < len(set(keys.values())):
            return None
        saved = sum(self._prices.cost(model, estimate_tokens(text)) for text in keys)
        vectors = [unpack_vector(found[keys[text]]) for text in texts]
        return Served(vectors, model, "cache_hit", cost_saved_usd=saved)

    async def _one(self, model: str, text: str, key: str) -> tuple[Embedded, bool]:
        """`text`'s embedding from its batch; joined when the same text was already in flight."""
        return await self._flights.get().run(
            key, lambda: self._batching(model).batcher.submit(text)
        )

    def batching(self, model: str) -> _Batching:
        """The running loop's batcher of `model` and its size cap."""
        return self._batching(model)

    def _batching(self, model: str) -> _Batching:
        batchings = self._batchers.get()
        found = batchings.get(model)
        if found is None:
            batcher: MicroBatcher[str, Embedded] = MicroBatcher(
                lambda texts: self._run(model, texts),
                max_size=self._llm.embed_batch_size,
                max_wait=self._llm.embed_batch_wait_seconds,
                name=f"embeddings:{model}",
            )
            found = batchings[model] = _Batching(
                batcher, AdaptiveBatchSize(self._llm.embed_batch_size)
            )
        return found

    async def _run(self, model: str, texts: list[str]) -> list[Embedded | BaseException]:
        """`texts` embedded within the batch's deadline: in pieces of at most the size cap, a
        piece that timed out split in halves; each text's vector or why it has none."""
        batching = self._batching(model)
        results: dict[int, Embedded | BaseException] = {}
        pending: deque[list[int]] = deque([list(range(len(texts)))])
        scope = asyncio.timeout(self._bound)
        try:
            async with scope:
                while pending:
                    piece = pending.popleft()
                    cap = batching.size.limit
                    if len(piece) > cap:  # made before the cap dropped: send at the new cap
                        pending.extendleft(reversed(_chunks(piece, cap)))
                        continue
                    split = await self._piece(model, texts, piece, batching, results)
                    pending.extendleft(reversed(split))
        except TimeoutError:
            if not scope.expired():
                raise
            late = LLMTimeout(
                f"embedding batch of {len(texts)} exceeded its bound of {self._bound:.1f} s"
            )
            log.debug("%s: %d of %d texts unanswered", model, len(texts) - len(results), len(texts))
            for index in range(len(texts)):
                results.setdefault(index, late)
        return [results[index] for index in range(len(texts))]

    async def _piece(
        self,
        model: str,
        texts: list[str],
        piece: list[int],
        batching: _Batching,
        results: dict[int, Embedded | BaseException],
    ) -> list[list[int]]:
        """One request for the texts at `piece`, its results recorded; the halves still to send
        when it timed out."""
        try:
            embedded = await self._request(model, [texts[i] for i in piece])
        except LLMTimeout as exc:
            batching.timed_out(len(piece))
            if len(piece) > 1:
                half = (len(piece) + 1) // 2
                return [piece[:half], piece[half:]]
            results[piece[0]] = exc
            return []
        except LLMError as exc:
            results.update(dict.fromkeys(piece, exc))
            return []
        batching.succeeded(len(piece))
        results.update(zip(piece, embedded, strict=True))
        return []

    async def _request(self, model: str, texts: list[str]) -> list[Embedded]:
        """One provider request for `texts` (its timeout grows with their number; a timeout of
        several is not retried at that size); their vectors cached, with their usage shares."""
        estimates = [estimate_tokens(text) for text in texts]
        timeout = self._llm.embed_timeout(len(texts))

        async def send(sent_model: str, attempt: int) -> Any:
            return await self._client().embeddings.create(
                input=texts,
                model=sent_model,
                extra_headers={"x-stainless-retry-count": str(attempt)},
                timeout=timeout,
            )

        reply = await self._caller.call(
            ProviderRequest(
                operation="embeddings",
                model=model,
                tokens_in=sum(estimates),
                tokens_out=0,
                send=send,
                usage=lambda response: (usage_tokens(response, "prompt_tokens"), 0),
                endpoint=self._endpoint,
                timeout_seconds=timeout,
                retry_timeouts=len(texts) == 1,
            )
        )
        vectors = embedding_vectors(reply.response, len(texts))
        pairs = zip(texts, vectors, strict=True)
        await self._cache.set(
            {embedding_key(model=model, text=t): pack_vector(v) for t, v in pairs}
        )
        parts = shares(reply.tokens_in, estimates)
        return [
            Embedded(vector, part, self._prices.cost(model, part))
            for vector, part in zip(vectors, parts, strict=True)
        ]


def _chunks(piece: list[int], size: int) -> list[list[int]]:
    return [piece[i : i + size] for i in range(0, len(piece), size)]
