"""The runs behind `benchmarks.llm_layer`: the operator over the service, the cache stream, the
rules path of the shipments flow, and the verdicts against the targets."""

from __future__ import annotations

import random
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink, TestingSource, run_main

from operators.config.settings import Settings
from operators.llm.service import build_service
from operators.llm.types import LLMService
from operators.runtime import progress
from operators.runtime.async_step import StepParams, map_async
from operators.shipments.agent import NoteAssessment
from tests.support.openai_server import OpenAITestServer, lognormal_latency

PROMPT_MODEL = "gpt-4o-mini"
PROMPT_VERSION = "bench-v1"


@dataclass(frozen=True)
class Verdict:
    """One figure against its target."""

    name: str
    value: float
    op: str
    target: float

    @property
    def passed(self) -> bool:
        return self.value >= self.target if self.op == ">=" else self.value <= self.target

    @staticmethod
    def table(verdicts: list[Verdict]) -> str:
        rows = ["| target | measured | goal | met |", "|---|---:|---:|---|"]
        rows += [
            f"| {v.name} | {v.value:.3f} | {v.op} {v.target:g} | {'yes' if v.passed else 'NO'} |"
            for v in verdicts
        ]
        return "\n".join(rows) + "\n"


def prompt_messages(i: int, nonce: str = "") -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Classify the shipment notes. Answer in JSON."},
        {"role": "user", "content": f"Notes: parcel {i} {nonce} delayed by storm at the hub"},
    ]


def llm_settings(base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        openai_base_url=base_url, kafka_bootstrap_servers=None, redis_url=None,
        llm_timeout_seconds=30.0, llm_max_retries=2, llm_max_tokens=50,
    )  # fmt: skip
    values.update(overrides)
    return Settings(**values)


async def _classify(item: tuple[str, int], *, service: LLMService, nonce: str) -> Any:
    result = await service.chat_structured(
        messages=prompt_messages(item[1], nonce),
        response_model=NoteAssessment,
        model=PROMPT_MODEL,
        prompt_version=PROMPT_VERSION,
        max_tokens=50,
    )
    return result.enrichment


class _PacedPartition(StatefulSourcePartition[Any, None]):
    def __init__(self, items: list[Any], batch_size: int, interval: float) -> None:
        self._items, self._size, self._interval = items, batch_size, interval
        self._next = datetime.now(UTC)

    def next_batch(self) -> list[Any]:
        if not self._items:
            raise StopIteration()
        batch, self._items = self._items[: self._size], self._items[self._size :]
        self._next = datetime.now(UTC) + timedelta(seconds=self._interval)
        return batch

    def next_awake(self) -> datetime:
        return self._next

    def snapshot(self) -> None:
        return None


class PacedSource(FixedPartitionedSource[Any, None]):
    """`batch_size` items every `interval` seconds: a stream that arrives over time."""

    def __init__(self, items: list[Any], *, batch_size: int, interval: float) -> None:
        self.items, self.batch_size, self.interval = items, batch_size, interval

    def list_parts(self) -> list[str]:
        return ["paced"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PacedPartition:
        return _PacedPartition(list(self.items), self.batch_size, self.interval)


def run_items(
    settings: Settings, items: list[int], nonce: str = "", *, interval: float = 0.0
) -> tuple[float, list[Any]]:
    """`items` through `map_async` over a new service, in batches of 20 every `interval` s (all
    at once when 0); (seconds, outputs)."""
    service = build_service(settings, flow="bench")
    fn = partial(_classify, service=service, nonce=nonce)
    out: list[Any] = []
    flow = Dataflow("llm_bench")
    keyed = [(str(i), i) for i in items]
    source = (
        PacedSource(keyed, batch_size=20, interval=interval)
        if interval
        else TestingSource(keyed, batch_size=100)
    )
    up = op.input("in", flow, source)
    results = map_async(
        "call", up, fn, params=StepParams.from_settings(settings.llm), key=lambda x: x[0],
        flow="benchmark",
    )  # fmt: skip
    op.output("out", results, TestingSink(out))
    started = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - started, out


def operator_run(srv: OpenAITestServer, calls: int, concurrency: int, rpm: int) -> float:
    settings = llm_settings(
        srv.base_url, llm_max_concurrency=concurrency, llm_requests_per_minute=rpm,
        cache_max_entries=0, llm_max_pending=8 * concurrency,
    )  # fmt: skip
    elapsed, out = run_items(settings, list(range(calls)), uuid.uuid4().hex)
    failed = [o for o in out if not hasattr(o, "source")]
    if failed:
        raise RuntimeError(f"{len(failed)} calls failed in the operator run, e.g. {failed[0]}")
    return elapsed


def _stream(n: int, seed: int = 5) -> list[int]:
    """n prompts of which half repeat an earlier one, shuffled (a repeat never comes first)."""
    rng = random.Random(seed)
    unique = list(range(n // 2))
    order = unique[:]
    rng.shuffle(order)
    stream: list[int] = []
    for i, item in enumerate(order):
        stream.append(item)
        stream.append(order[rng.randrange(0, i + 1)])
    return stream


def _summary(label: str, srv: OpenAITestServer, seconds: float, out: list[Any]) -> dict[str, Any]:
    calls = srv.count()
    srv.reset()
    cost = sum(e.cost_usd for e in out if e.source == "llm")
    sources = {s: sum(1 for e in out if e.source == s) for s in ("llm", "cache", "rules")}
    print(f"  {label:30s} {len(out)} outputs, {calls} provider calls, cost ${cost:.6f}, "
          f"{seconds:.2f} s, sources {sources}")  # fmt: skip
    return dict(label=label, outputs=len(out), calls=calls, cost=cost, seconds=seconds, **sources)


def cache_stream(redis_url: str, *, quick: bool) -> tuple[str, list[Verdict]]:
    """Half-repeating stream: cache off, cache on (Redis), warm replay from Redis alone."""
    n = 200 if quick else 800
    stream = _stream(n)
    nonce = uuid.uuid4().hex
    print(f"Cache: {n} prompts, {len(set(stream))} distinct")
    srv = OpenAITestServer(latency=lognormal_latency(0.05, 0.5, seed=3)).start()
    try:
        base = dict(llm_max_concurrency=64)
        off = llm_settings(srv.base_url, cache_max_entries=0, **base)
        on = llm_settings(srv.base_url, redis_url=redis_url, **base)
        cold = llm_settings(srv.base_url, redis_url=redis_url, cache_front_entries=0, **base)
        paced = dict(interval=0.05)
        runs = {"cache off": off, "cache on (Redis)": on, "warm replay, Redis only": cold}
        rows = []
        with progress.progress("cache", total=len(runs), unit="runs", refresh=1) as bar:
            for label, settings in runs.items():
                rows.append(_summary(label, srv, *run_items(settings, stream, nonce, **paced)))
                bar.advance()
    finally:
        srv.stop()
    md = [
        f"**Cache**: {n} prompts of which half repeat an earlier one ({len(set(stream))} "
        "distinct), arriving 20 every 50 ms, concurrency 64, server latency lognormal p50 50 ms "
        "/ p99 500 ms. With the cache off, a repeat that arrives while its first call is still "
        "in flight is merged into it (counted under cache). The warm replay runs without the "
        "in-process front, as a new process would: every answer comes from Redis.\n",
        "| run | outputs | provider calls | cost USD | seconds | llm / cache |",
        "|---|---:|---:|---:|---:|---|",
    ]
    md += [
        f"| {r['label']} | {r['outputs']} | {r['calls']} | {r['cost']:.6f} | {r['seconds']:.2f} "
        f"| {r['llm']} / {r['cache']} |"
        for r in rows
    ]
    verdicts = [
        Verdict("cache on: provider calls / distinct prompts", rows[1]["calls"] / len(set(stream)),
                "<=", 1.0),
        Verdict("warm replay: provider calls", rows[2]["calls"], "<=", 0),
    ]  # fmt: skip
    return "\n".join(md) + "\n", verdicts


def _shipments_seconds(settings: Settings) -> tuple[float, int]:
    from flows.shipments import build_flow

    out: list[Any] = []
    flow = build_flow(settings, sink=TestingSink(out))
    started = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - started, len(out)


def rules_path_run(redis_url: str, *, quick: bool) -> tuple[str, list[Verdict]]:
    """The shipments flow on the rules path: cache disabled, cache enabled (Redis, no endpoint),
    and with an endpoint whose every answer is already cached (all lookups hit)."""
    events = 500 if quick else 2000
    rounds = 2 if quick else 5
    srv = OpenAITestServer().start()
    try:
        common: dict[str, Any] = dict(surge_steady_events=events, kafka_bootstrap_servers=None)
        variants = {
            "rules, cache disabled": Settings(redis_url=None, openai_base_url=None, **common),
            "rules, cache enabled": Settings(redis_url=redis_url, openai_base_url=None, **common),
            "LLM path, every answer cached": Settings(
                redis_url=redis_url, openai_base_url=srv.base_url, **common
            ),
        }
        total = 1 + rounds * len(variants)
        with progress.progress("rules path", total=total, unit="runs", refresh=1) as bar:
            _shipments_seconds(variants["LLM path, every answer cached"])  # warm the cache
            bar.advance()
            srv.reset()
            times: dict[str, list[float]] = {label: [] for label in variants}
            records = 0
            for _ in range(rounds):
                for label, settings in variants.items():
                    seconds, records = _shipments_seconds(settings)
                    times[label].append(seconds)
                    bar.advance()
        calls = srv.count()
    finally:
        srv.stop()
    medians = {label: statistics.median(t) for label, t in times.items()}
    base = medians["rules, cache disabled"]
    md = [
        f"**Rules path**: the shipments flow on the embedded surge ({records} outputs), "
        f"{rounds} rounds alternating, medians; {calls} provider calls during the timed rounds.\n",
        "| variant | seconds | records/s | cost against cache disabled |",
        "|---|---:|---:|---:|",
    ]
    for label, seconds in medians.items():
        md.append(
            f"| {label} | {seconds:.2f} | {records / seconds:.0f} | {seconds / base - 1:+.1%} |"
        )
        print(f"  {label:32s} {seconds:.2f} s  {records / seconds:7.0f} records/s "
              f"{seconds / base - 1:+.1%}")  # fmt: skip
    md.append(
        "\nThe target row is the rules path with the cache enabled against disabled. The last row "
        "is a stricter, informational comparison: the decisions that need the LLM (about one in "
        "five) are answered from the cache (the process's in-process front, on the worker thread) "
        "instead of by the rules engine, so it adds building the prompt, hashing its key, "
        "decoding and validating the answer and accounting the hit.\n"
    )
    cost = medians["rules, cache enabled"] / base - 1
    return "\n".join(md), [Verdict("rules path: cost of the cache enabled", cost, "<=", 0.05)]
