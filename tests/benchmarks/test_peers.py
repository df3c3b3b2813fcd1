"""`python -m benchmarks.peers --quick` against the real broker: every contender runs, and every
contender of a flow writes the same outputs and dead letters (the bare loop: every record)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from benchmarks.peers import PARTITIONS, latency_of

ROOT = Path(__file__).resolve().parents[2]
ROUND = re.compile(
    r"^round 1/1  (?P<flow>\w+): (?P<name>.+?)\s+\d+\.\d+ s .* outputs (?P<out>[\d,]+)  "
    r"dead letters (?P<dead>[\d,]+)$"
)
LOADED = re.compile(r"^(?P<flow>\w+): (?P<events>[\d,]+) events on ")


def _n(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.mark.kafka
@pytest.mark.timeout(900)
def test_quick_run_every_contender_writes_the_same_outputs(kafka_bootstrap: str, tmp_path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers", "--quick", "--doc", str(doc)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=880,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    events = {m["flow"]: _n(m["events"]) for line in lines if (m := LOADED.match(line))}
    assert set(events) == {"shipments", "tickets"}
    runs = [m for line in lines if (m := ROUND.match(line))]
    names = {(m["flow"], m["name"]) for m in runs}
    for flow in events:  # one progress line per run of each contender
        assert {n for f, n in names if f == flow} == {
            "bare loop", "hand-written loop", "Surgeflow 1 worker", "Surgeflow -w 2",
            "Surgeflow 2 processes",
        }  # fmt: skip
    for flow, count in events.items():
        mine = [m for m in runs if m["flow"] == flow]
        bare = [m for m in mine if m["name"] == "bare loop"]
        assert [(_n(m["out"]), _n(m["dead"])) for m in bare] == [(count + PARTITIONS, 0)]
        rest = {(_n(m["out"]), _n(m["dead"])) for m in mine if m["name"] != "bare loop"}
        assert len(rest) == 1, f"{flow}: contenders disagree: {rest}"
        ((outputs, dead),) = rest
        assert outputs > count // 2 and dead >= PARTITIONS  # decisions; the probes dead-lettered
    text = doc.read_text()
    assert "<!-- begin peers -->" in text and "Output counts: equal" in text
    assert "| shipments: Surgeflow 1 worker |" in text and "| tickets: hand-written loop |" in text
    assert (tmp_path / "peers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


RUNTIMES = re.compile(
    r"^round 1/1  shipments: (?P<name>.+?)\s+\d+\.\d+ s .* cpu\s+(?P<cpu>-?\d+\.\d+) s/1k .* "
    r"outputs (?P<out>[\d,]+)  dead letters (?P<dead>[\d,]+)$"
)


@pytest.mark.kafka
@pytest.mark.timeout(600)
def test_quick_runtimes_run_passes_every_record_and_writes_its_section(
    kafka_bootstrap: str, tmp_path
) -> None:
    """`--quick --runtimes`: the runtime-only contenders (the plain loop and Surgeflow's
    `benchmarks.peers_runtime` flow) pass every record on, the contenders with domain code agree,
    and the run writes the `peers-runtimes` section (not the main one) with both tables."""
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("<!-- begin peers -->\nkept\n<!-- end peers -->\n")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers", "--quick", "--runtimes", "--doc", str(doc)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=580,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    events = {m["flow"]: _n(m["events"]) for line in lines if (m := LOADED.match(line))}
    assert list(events) == ["shipments"]
    count = events["shipments"]
    runs = {m["name"]: m for line in lines if (m := RUNTIMES.match(line))}
    assert set(runs) == {
        "bare loop", "bare loop, runtime only", "Surgeflow 1 worker, runtime only",
        "Surgeflow 1 worker, runtime only + keyed step",
        "Surgeflow 1 worker, runtime only + state per lane", "hand-written loop",
        "Surgeflow 1 worker",
    }  # fmt: skip
    passing = [n for n in runs if n.startswith("bare loop") or "runtime only" in n]
    for name in passing:
        assert (_n(runs[name]["out"]), _n(runs[name]["dead"])) == (count + PARTITIONS, 0), name
    hand, surgeflow = runs["hand-written loop"], runs["Surgeflow 1 worker"]
    assert (hand["out"], hand["dead"]) == (surgeflow["out"], surgeflow["dead"])
    assert count // 2 < _n(hand["out"]) < count
    text = doc.read_text()
    assert "<!-- begin peers -->\nkept\n<!-- end peers -->" in text
    assert "<!-- begin peers-runtimes -->" in text and "Output counts: as expected" in text
    assert "| shipments: Surgeflow 1 worker, runtime only |" in text
    assert "| Surgeflow 1 worker | " in text and "| plain loop | " in text
    assert "| Surgeflow 1 worker + keyed step | " in text
    assert not (tmp_path / "peers.png").exists()


def _scan(event_id: str, shipment: str, at: str) -> bytes:
    return orjson.dumps({"event_id": event_id, "shipment_id": shipment, "occurred_at": at})


def test_latency_runs_from_the_scan_that_closed_the_window() -> None:
    inputs = [
        (1_000, _scan("E1", "S1", "2025-11-28T10:05:00Z")),
        (1_100, _scan("E2", "S1", "2025-11-28T11:10:00Z")),  # before end + lateness: no close
        (1_200, _scan("E3", "S2", "2025-11-28T12:00:00Z")),
        (1_300, _scan("E4", "S1", "2025-11-28T11:20:00Z")),  # closes S1's 10:00-11:00 window
        (1_400, b"[1, 2]"),
    ]
    decision = {
        "shipment_id": "S1", "trigger": "window_closed", "window_end": "2025-11-28T11:00:00Z",
    }  # fmt: skip
    eof = {**decision, "trigger": "end_of_input", "window_end": "2025-11-28T12:00:00Z"}
    outputs = [(1_350, orjson.dumps(decision)), (1_500, orjson.dumps(eof))]
    lateness = timedelta(minutes=15)
    found = latency_of("shipments", "surgeflow", inputs, outputs, since_ms=0, lateness=lateness)
    assert found == [50.0]
    assert latency_of("shipments", "hand", inputs, outputs, since_ms=1_301, lateness=lateness) == []
    passed = [(1_010, inputs[0][1]), (1_250, inputs[2][1]), (1_450, b"[1, 2]")]
    assert latency_of("shipments", "bare", inputs, passed, since_ms=0, lateness=lateness) == [
        10.0, 50.0,
    ]  # fmt: skip


def test_pass_through_reads_the_key_and_keeps_the_value() -> None:
    from benchmarks.peers_loops import pass_through

    value = _scan("E1", "S1", "2025-11-28T10:05:00Z")
    record = pass_through("out", value)
    assert (record.topic, record.key, record.value) == ("out", "S1", value)
    for other in (b"{not json", b"[1, 2]", b'{"shipment_id": 7}', b""):
        record = pass_through("out", other)
        assert (record.key, record.value) == (None, other)
