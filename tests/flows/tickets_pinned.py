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
from pathlib import Path
from typing import Any

from flows.tickets import build_flow
from operators.runtime.records import OutRecord
from tests.flows import pinned
from tests.flows.pinned import ROOT

PINNED = Path(__file__).resolve().parent / "data" / "tickets_pinned.jsonl"
SAMPLE = ROOT / "data" / "samples" / "tickets.sample.jsonl"
SURGE = {"surge_seed": 7, "surge_steady_events": 150, "surge_burst_factor": 10}
WALL_CLOCK = ("responded_at", "failed_at")


def run_pinned() -> list[OutRecord]:
    """Every record `flows.tickets` writes for the pinned input (in process, one worker)."""
    return pinned.run_pinned(
        build_flow, flow="tickets", sample=SAMPLE, key="session_id", surge=SURGE
    )


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
    return pinned.pinned_lines(records, summary)


def main() -> int:
    return pinned.write_pinned(PINNED, pinned_lines(run_pinned()))


if __name__ == "__main__":
    raise SystemExit(main())
