"""The LLM layer under heavy-tailed latency, a rate limit, repeated prompts and a warm replay.

    python -m benchmarks.llm_layer [--quick]

Against the loopback OpenAI-compatible server with lognormal latency (p50 200 ms, p99 2 s):

1. Throughput, in one run: the naive per-item call, a launch-and-wait-all batch, and Surgeflow's
   `map_async` operator in a Bytewax dataflow, each as achieved calls/s divided by the ceiling
   min(rate limit, concurrency / mean latency). Two settings: bound by the rate limit, and bound
   by concurrency. The mean latency is that of the draws the server made (its generator is
   seeded, so the benchmark draws the same numbers).
2. Cache: a stream in which half the prompts repeat, through the operator and the service, with
   the cache off and on (Redis), then a warm replay from Redis alone (no in-process front).
3. Rules path: the shipments flow on the embedded surge without an endpoint (every decision from
   the rules engine) and with an endpoint whose every answer is already cached, side by side.

Prints every figure and writes the "llm-layer" section of docs/BENCHMARKS.md. On a terminal a bar
per part counts its runs (`--no-progress` turns them off; piped, there are none).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletionMessageParam

from benchmarks.llm_runs import (
    PROMPT_MODEL,
    Verdict,
    cache_stream,
    operator_run,
    prompt_messages,
    rules_path_run,
)
from benchmarks.report import command_line, write_section
from operators.config.settings import Settings
from operators.runtime import progress
from scripts.redis_server import RedisServer
from tests.support.openai_server import OpenAITestServer, lognormal_latency

P50, P99 = 0.2, 2.0
SEED = 11


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    rpm: int
    calls: int

    def ceiling(self, mean_latency: float) -> float:
        return min(self.rpm / 60.0, self.concurrency / mean_latency)


def server(seed: int = SEED) -> OpenAITestServer:
    return OpenAITestServer(latency=lognormal_latency(P50, P99, seed=seed)).start()


def mean_of_draws(n: int, seed: int = SEED) -> float:
    draw = lognormal_latency(P50, P99, seed=seed)
    return statistics.fmean(draw() for _ in range(n))


def client(srv: OpenAITestServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=srv.base_url, api_key="bench", max_retries=0, timeout=30)


async def _one(c: openai.AsyncOpenAI, i: int) -> None:
    await c.chat.completions.create(
        model=PROMPT_MODEL,
        messages=cast("list[ChatCompletionMessageParam]", prompt_messages(i)),
        max_tokens=50,
    )


async def naive(srv: OpenAITestServer, calls: int) -> float:
    """One call at a time, awaited before the next: what a synchronous agent does."""
    async with client(srv) as c:
        started = time.perf_counter()
        for i in range(calls):
            await _one(c, i)
        return time.perf_counter() - started


async def launch_and_wait(srv: OpenAITestServer, calls: int, concurrency: int) -> float:
    """Batches of `concurrency` calls, each batch awaited in full before the next starts."""
    async with client(srv) as c:
        started = time.perf_counter()
        for first in range(0, calls, concurrency):
            batch = range(first, min(first + concurrency, calls))
            await asyncio.gather(*(_one(c, i) for i in batch))
        return time.perf_counter() - started


def throughput(scenario: Scenario, quick: bool) -> list[dict[str, Any]]:
    """The three ways side by side on fresh servers (same seed, so the same latency draws)."""
    rows = []
    naive_calls = 20 if quick else 60
    batch_calls = min(scenario.calls // 2, scenario.concurrency * 20)
    ways: list[tuple[str, int, Callable[[OpenAITestServer], float]]] = [
        ("naive per-item call", naive_calls, lambda s: asyncio.run(naive(s, naive_calls))),
        (
            "launch-and-wait-all batch",
            batch_calls,
            lambda s: asyncio.run(launch_and_wait(s, batch_calls, scenario.concurrency)),
        ),
        (
            "surgeflow map_async",
            scenario.calls,
            lambda s: operator_run(s, scenario.calls, scenario.concurrency, scenario.rpm),
        ),
    ]
    with progress.progress(scenario.name, total=len(ways), unit="runs", refresh=1) as bar:
        for name, calls, run in ways:
            srv = server()
            try:
                elapsed = run(srv)
                made = srv.count()
            finally:
                srv.stop()
            mean = mean_of_draws(made)
            achieved = calls / elapsed
            ceiling = scenario.ceiling(mean)
            rows.append(
                dict(way=name, calls=calls, seconds=elapsed, per_s=achieved, mean_latency=mean,
                     ceiling=ceiling, ratio=achieved / ceiling)
            )  # fmt: skip
            print(f"  {name:28s} {calls:5d} calls {elapsed:7.2f} s {achieved:7.1f}/s "
                  f"mean latency {mean * 1000:5.0f} ms ceiling {ceiling:6.1f}/s "
                  f"ratio {achieved / ceiling:5.2f}")  # fmt: skip
            bar.advance()
    return rows


def throughput_table(scenario: Scenario, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"**{scenario.name}**: concurrency {scenario.concurrency}, limit {scenario.rpm} "
        f"requests/min ({scenario.rpm / 60:.0f}/s); the operator runs with "
        f"`llm_max_pending` = {8 * scenario.concurrency}, the batch launches "
        f"{scenario.concurrency} calls at a time.\n",
        "| way | calls | seconds | calls/s | mean latency | ceiling/s | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['way']} | {r['calls']} | {r['seconds']:.2f} | {r['per_s']:.1f} | "
            f"{r['mean_latency'] * 1000:.0f} ms | {r['ceiling']:.1f} | {r['ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def redis_url() -> tuple[str, RedisServer | None]:
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"], None
    started = RedisServer().start()
    return started.url, started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    progress.add_flag(parser)
    args = parser.parse_args(argv)
    progress.off_by_flag(args)
    random.seed(SEED)
    scale = 0.25 if args.quick else 1.0
    scenarios = [
        Scenario("Rate-bound", concurrency=64, rpm=6000, calls=int(3000 * scale)),
        Scenario("Concurrency-bound", concurrency=16, rpm=60_000, calls=int(3000 * scale)),
    ]
    body = []
    verdicts: list[Verdict] = []
    for scenario in scenarios:
        print(f"{scenario.name}: concurrency {scenario.concurrency}, {scenario.rpm} RPM")
        rows = throughput(scenario, args.quick)
        body.append(throughput_table(scenario, rows))
        verdicts.append(Verdict(f"{scenario.name}: operator ratio", rows[-1]["ratio"], ">=", 0.9))
    url, started = redis_url()
    try:
        cache_md, cache_verdicts = cache_stream(url, quick=args.quick)
        body.append(cache_md)
        verdicts += cache_verdicts
        rules_md, rules_verdicts = rules_path_run(url, quick=args.quick)
        body.append(rules_md)
        verdicts += rules_verdicts
    finally:
        if started is not None:
            started.stop()
    body.append(Verdict.table(verdicts))
    print(Verdict.table(verdicts))
    if not args.no_write:
        path = write_section(
            "llm-layer", "LLM layer: throughput, cache and rules path", command_line(),
            "\n".join(body) + f"\n\nLatency: lognormal, p50 {P50 * 1000:.0f} ms, p99 {P99:.0f} s, "
            f"seed {SEED}. Settings: `{Settings.__name__}` defaults unless stated.\n",
        )  # fmt: skip
        print(f"wrote {path}")
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
