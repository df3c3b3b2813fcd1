"""Run both flows on embedded defaults and print what came out.

Each flow runs as `python -m bytewax.run flows.<name>` (the command a user runs), reading the
bundled seeded surge and writing JSON lines to stdout; this script keeps that output in
`out/<name>.jsonl`, prints sample records and the counts per topic, action, route and source.
Any environment setting (SURGEFLOW_*, OPENAI_BASE_URL, ...) is passed through.

On a terminal a bar counts each flow's records out as they are written (`--no-progress` or
`SURGEFLOW_NO_PROGRESS=1` turns it off; piped or redirected, there is none and the output is the
same plain lines).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from operators.config.settings import Settings  # noqa: E402
from operators.runtime import progress  # noqa: E402

OUT = ROOT / "out"
SAMPLES = 5


class LineCount:
    """The lines a growing file holds so far, read on from where the last call stopped."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._read = 0
        self._lines = 0

    def __call__(self) -> int:
        with self._path.open("rb") as grown:
            grown.seek(self._read)
            chunk = grown.read()
        self._read += len(chunk)
        self._lines += chunk.count(b"\n")
        return self._lines


def run_flow(
    name: str,
    *,
    no_progress: bool = False,
    out: Path = OUT,
    env: dict[str, str] | None = None,
) -> tuple[list[dict], float]:
    """Run one flow to completion, its output kept in `out/<name>.jsonl` (`env`: the flow's
    environment, default this one's); return its output lines and the wall time it took."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.jsonl"
    started = time.perf_counter()
    with (
        target.open("wb") as written,
        progress.progress(f"flows.{name}", unit="records out", off=no_progress) as bar,
    ):
        code = progress.run_counting(
            [sys.executable, "-m", "bytewax.run", f"flows.{name}"],
            bar,
            LineCount(target),
            cwd=ROOT,
            stdout=written,
            env=env if env is not None else {**os.environ, "PYTHONPATH": str(ROOT)},
        )
    elapsed = time.perf_counter() - started
    if code != 0:
        sys.exit(f"flows.{name} exited with {code}")
    lines = [json.loads(line) for line in target.read_text().splitlines() if line.strip()]
    return lines, elapsed


def print_counts(title: str, counts: Counter) -> None:
    """One indented line `title: key=count, ...`, most common first."""
    body = ", ".join(f"{k}={v}" for k, v in counts.most_common())
    print(f"  {title}: {body or '-'}")


def _one_line(record: dict, field: str) -> str:
    key = record.get("shipment_id") or record.get("session_id")
    text = record.get("reasons") or [record.get("reply", "")]
    detail = "; ".join(text)
    return f"  {key:<22} {field}={record[field]:<16} {detail[:90]}"


def summarise(name: str, lines: list[dict], elapsed: float, main_topic: str, field: str) -> None:
    print(f"\n== flows.{name}: {len(lines)} records out in {elapsed:.1f}s -> out/{name}.jsonl")
    print_records(lines, main_topic, field)


def print_records(lines: list[dict], main_topic: str, field: str) -> None:
    """A sample output, a few one-liners, a dead letter and the counts, from `{"topic",
    "key", "value"}` lines (the flows' stdout form; `scripts/demo_kafka.py` builds them from
    Kafka records)."""
    main = [r["value"] for r in lines if r["topic"] == main_topic]
    dead = [r["value"] for r in lines if r["topic"].endswith(".dlq")]
    interesting = [r for r in main if r.get("action", "reply") != "ok"]
    print(json.dumps(interesting[0], indent=2))
    for record in interesting[1 : 1 + SAMPLES]:
        print(_one_line(record, field))
    if dead:
        print(
            f"  dead letter: {dead[0]['error_type']} at offset {dead[0]['source']['offset']}: "
            f"{dead[0]['error'][:120]}"
        )
    print_counts("by topic", Counter(r["topic"] for r in lines))
    print_counts(f"by {field}", Counter(r[field] for r in main))
    print_counts("by enrichment source", Counter(r["enrichment"]["source"] for r in main))
    print_counts("dead letters by reason", Counter(d["error_type"] for d in dead))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    progress.add_flag(parser)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    settings = Settings()
    shipments, t_shipments = run_flow("shipments", no_progress=args.no_progress)
    summarise("shipments", shipments, t_shipments, settings.topics.shipments_decisions, "action")
    tickets, t_tickets = run_flow("tickets", no_progress=args.no_progress)
    summarise("tickets", tickets, t_tickets, settings.topics.tickets_responses, "route")
    print(f"\ndemo finished in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
