"""The pinned outputs of the shipments flow on its rules path, and the program that writes them.

`tests/flows/data/shipments_pinned.jsonl` holds, for every scan of the bundled sample file and of
a small seeded surge (seed 7, 300 steady events, burst factor 10; its poison records included),
what `flows.shipments` answered with no LLM endpoint: one line per output record (decisions and
dead letters), sorted, with the action, trigger, risk (exact `repr` of the float) and number of
scans of a decision, the step and error type of a dead letter, and a sha256 of the record's
exact JSON bytes with its wall-clock stamp (`decided_at` of a decision, `failed_at` of a dead
letter, and the watermark a late scan's reason names) taken out, so any change of a byte of a
decision or a dead letter shows.

Regenerate (only when an output is meant to change, and say why in the commit):

    PYTHONPATH=$PWD python -m tests.flows.shipments_pinned

It was first written by the code of the shipments flow before its decisions were built without
revalidation and its frame was folded into batch steps, so `test_shipments_pinned` proves the
faster code answers exactly as that code did.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from flows.shipments import build_flow
from operators.runtime.records import OutRecord
from tests.flows import pinned
from tests.flows.pinned import ROOT

PINNED = Path(__file__).resolve().parent / "data" / "shipments_pinned.jsonl"
SAMPLE = ROOT / "data" / "samples" / "shipments.sample.jsonl"
SURGE = {"surge_seed": 7, "surge_steady_events": 300, "surge_burst_factor": 10}
WALL_CLOCK = re.compile(rb'"(decided_at|failed_at)":"[^"]*"')
"""The wall-clock stamp of a record's JSON bytes (a decision's or a dead letter's)."""
WATERMARK = re.compile(rb"behind the watermark [^ ]+ by")
"""A late scan's watermark: its largest event time plus the live (wall) time since, so it moves
with the speed of the run."""


def run_pinned() -> list[OutRecord]:
    """Every record `flows.shipments` writes for the pinned input (in process, one worker)."""
    return pinned.run_pinned(
        build_flow, flow="shipments", sample=SAMPLE, key="shipment_id", surge=SURGE
    )


def summary(record: OutRecord) -> dict[str, Any]:
    """What is pinned of one output record: a few fields to read, and the hash of its bytes."""
    value = json.loads(record.value)
    stamps = WALL_CLOCK.findall(record.value)
    assert len(stamps) == 1, f"one wall-clock stamp expected in {record.value[:200]!r}"
    stable = WATERMARK.sub(b"behind the watermark * by", WALL_CLOCK.sub(b'"\\1":""', record.value))
    digest = hashlib.sha256(stable).hexdigest()[:24]
    headers = ",".join(f"{k}={v.decode()}" for k, v in record.headers)
    line: dict[str, Any] = {"topic": record.topic.rsplit(".", 1)[-1], "key": record.key}
    if "decision_id" in value:
        line |= {
            "id": value["decision_id"],
            "action": value["action"],
            "trigger": value["trigger"],
            "risk": repr(value["risk"]),
            "scans": len(value["event_ids"]),
        }
    else:
        line |= {"id": value["dead_letter_id"], "step": value["step"], "error": value["error_type"]}
    return line | {"headers": headers, "sha256": digest}


def pinned_lines(records: list[OutRecord]) -> list[str]:
    return pinned.pinned_lines(records, summary)


def main() -> int:
    return pinned.write_pinned(PINNED, pinned_lines(run_pinned()))


if __name__ == "__main__":
    raise SystemExit(main())
