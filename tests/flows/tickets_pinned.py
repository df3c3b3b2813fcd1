"""The pinned outputs of the tickets flow on its rules path, and the program that writes them.

`tests/flows/data/tickets_pinned.jsonl` holds, for every message of the bundled sample file and
of a small seeded surge (seed 7, 150 steady events, burst factor 10), what `flows.tickets`
answered with no LLM endpoint: one line per output record (responses and dead letters), sorted by
its id, with the route, method, confidence (exact `repr` of the float), priority and history size
of a response, and a sha256 of the whole record without its wall-clock stamp (`responded_at` of a
response, `failed_at` of a dead letter), so any change of a reply, an entity or a dead letter
shows.

Regenerate (only when an output is meant to change, and say why in the commit):

    PYTHONPATH=$PWD python -m tests.flows.tickets_pinned

It was first written by the code of the tickets flow before its rules path was optimised, so
`test_tickets_pinned` proves the faster code answers exactly as that code did.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bytewax.testing import TestingSink, run_main

from flows.tickets import build_flow
from operators.config.settings import Settings
from operators.connectors.kafka.load import file_records, surge_records
from operators.connectors.sources import GeneratorSource
from operators.runtime.records import OutRecord, RawRecord

ROOT = Path(__file__).resolve().parents[2]
PINNED = Path(__file__).resolve().parent / "data" / "tickets_pinned.jsonl"
SAMPLE = ROOT / "data" / "samples" / "tickets.sample.jsonl"
SURGE = {"surge_seed": 7, "surge_steady_events": 150, "surge_burst_factor": 10}
WALL_CLOCK = ("responded_at", "failed_at")


def pinned_settings() -> Settings:
    """Embedded defaults (no Kafka, Redis or LLM endpoint) and the small surge."""
    services = dict(
        kafka_bootstrap_servers=None, redis_url=None, openai_api_key=None, openai_base_url=None
    )
    return Settings(_env_file=None, **services, **SURGE)


def pinned_records(settings: Settings) -> Iterator[RawRecord]:
    """The sample file's messages, then the seeded surge."""
    yield from file_records(SAMPLE, "session_id")
    yield from surge_records(settings, "tickets")


def run_pinned() -> list[OutRecord]:
    """Every record `flows.tickets` writes for the pinned input (in process, one worker)."""
    settings = pinned_settings()
    out: list[OutRecord] = []
    source = GeneratorSource(lambda: pinned_records(settings), batch_size=100)
    run_main(build_flow(settings, source=source, sink=TestingSink(out)))
    return out


def summary(record: OutRecord) -> dict[str, Any]:
    """What is pinned of one output record."""
    value = json.loads(record.value)
    stable = {k: v for k, v in value.items() if k not in WALL_CLOCK}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:24]
    line: dict[str, Any] = {"topic": record.topic.rsplit(".", 1)[-1], "key": record.key}
    if "response_id" in value:
        line |= {
            "id": value["response_id"],
            "route": value["route"],
            "method": value["route_method"],
            "confidence": repr(value["confidence"]),
            "priority": value["priority"],
            "history": value["history_size"],
        }
    else:
        line |= {"id": value["dead_letter_id"], "step": value["step"], "error": value["error_type"]}
    return line | {"sha256": digest}


def pinned_lines(records: list[OutRecord]) -> list[str]:
    """One JSON line per record, sorted (the order across sessions is not part of the contract)."""
    return sorted(json.dumps(summary(r), sort_keys=True) for r in records)


def main() -> int:
    lines = pinned_lines(run_pinned())
    PINNED.parent.mkdir(parents=True, exist_ok=True)
    PINNED.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    print(f"wrote {len(lines)} pinned outputs to {PINNED.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
