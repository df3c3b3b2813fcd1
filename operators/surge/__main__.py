"""Deterministic, seeded Black Friday surges for `shipments.events` and `tickets.messages`.

Plain Python (no Bytewax import). The same arguments give byte-identical output on any machine:
every choice comes from one `random.Random(seed)`, never from the wall clock, `hash()` or set
order. The generators are lazy, so a surge of millions of records never sits in memory.

Stream shape
------------
A run simulates 24 hours from `start` (Black Friday 2025, 00:00 UTC, by default) in two phases:

- steady: `steady_events` records spread evenly over the first 12 simulated hours;
- burst: `steady_events * burst_factor` records over the next 12 hours, i.e. `burst_factor`
  times the event-time rate.

A run yields exactly `steady_events * (1 + burst_factor)` records and `offset` is the 0-based
sequence number of each. Each record slot is filled by the next scan of a shipment (the next
message of a ticket session) that is due, or else by a new shipment (session), so the number of
live keys grows with the rate. Event timestamps trail their slot by up to five minutes of upload
lag, so records come out in event-time order up to a few minutes of disorder. Shipments and
sessions still in flight when the 24 hours end are cut off, as in any window of a real stream.

Kinds (`Generated.kind`)
------------------------
- `valid`: a record that validates against its schema (`ShipmentEvent` / `TicketMessage`).
- `duplicate` (~2%): the exact bytes of an earlier valid record, re-sent 1-15 minutes later.
- `late` (~0.2%): a valid record emitted 2-6 simulated hours after its own timestamp.
- `unknown_reference` (~0.3%, shipments only): schema-valid, but its `carrier_id` or `hub_id` is
  not in `data/carriers.csv` / `data/hubs.csv`.
- `malformed:<what>` (~0.5%): fails validation; `<what>` names the defect. Kinds are dealt in
  shuffled rounds, so every kind shows up once a run has a few dozen malformed records:
  `broken_json`, `json_array`, `empty_bytes`, `null`, `non_utf8`, `extra_field`,
  `naive_timestamp`, `deep_nesting`, `control_chars`, `missing_<key field>`, and per flow
  `wrong_type`, `unknown_scan_type`, `occurred_before_shipped`, `huge_note`, `negative_delay`
  (shipments) or `wrong_type`, `unknown_channel`, `empty_body`, `huge_body`, `unknown_tier`
  (tickets).

`RawRecord.key` is the record's `shipment_id` / `session_id`, as a Kafka producer would set it;
it is None for the records that lack one (`malformed:missing_*`).

Command line: `python -m operators.surge FLOW [--seed N] [--steady N] [--burst N] [--out FILE]`
writes one record value per line of a registered flow's surge (`shipments`, `tickets`: the specs of
`flows.registry`; records that cannot be one line of UTF-8 text are skipped and counted on stderr).
On a terminal, stderr shows a bar of the records generated against the total (`--no-progress` or
`SURGEFLOW_NO_PROGRESS=1` turns it off; redirected or piped, there is none).

Layout: this module holds the command line; `operators.surge.engine` fills the record slots,
`operators.shipments.surge` and `operators.tickets.surge` make up the shipments and sessions (and
hold each flow's public API: `iter_shipment_surge`, `shipment_surge`, `iter_ticket_surge`,
`ticket_surge`), and `operators.surge.templates` loads their text from `data/templates/*.json`.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from operators.runtime import progress
from operators.runtime.flow_spec import Surged, flow_spec, flow_specs

_EVERY = 1000  # records between two moves of the bar

# --- command line --------------------------------------------------------------------------------


def write_jsonl(
    generated: Iterator[Surged], out: Any, bar: Optional[progress.Bar] = None
) -> tuple[Counter[str], int]:
    """Write each record value as one line; skip values that cannot be one line of UTF-8 text.

    Returns the kinds written and the number skipped (not UTF-8, empty, or holding a newline).
    `bar` is advanced by the records generated (written or skipped).
    """
    kinds: Counter[str] = Counter()
    skipped = 0
    for count, item in enumerate(generated, start=1):
        if bar is not None and count % _EVERY == 0:
            bar.advance(_EVERY)
        value = item.record.value
        if not value or b"\n" in value or b"\r" in value or not _is_utf8(value):
            skipped += 1
            continue
        out.write(value + b"\n")
        kinds[item.kind] += 1
    if bar is not None:
        bar.advance((kinds.total() + skipped) % _EVERY)
    return kinds, skipped


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m operators.surge", description="Write a seeded surge as JSON lines."
    )
    parser.add_argument("flow", choices=[n for n, s in flow_specs().items() if s.surge])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--steady", type=int, default=2000, help="events of the steady phase")
    parser.add_argument("--burst", type=int, default=10, help="burst factor (rate multiplier)")
    parser.add_argument("--out", type=Path, help="output file (default: stdout)")
    progress.add_flag(parser)
    args = parser.parse_args(argv)
    generate = flow_spec(args.flow).surge
    if generate is None:  # not among the choices
        parser.error(f"flow {args.flow} has no surge")
    generated = generate(seed=args.seed, steady_events=args.steady, burst_factor=args.burst)
    total = args.steady * (1 + args.burst)  # the engine's exact count
    with progress.progress("generating", total=total, unit="records", off=args.no_progress) as bar:
        if args.out is None:
            kinds, skipped = write_jsonl(generated, sys.stdout.buffer, bar)
            sys.stdout.buffer.flush()
        else:
            with args.out.open("wb") as out:
                kinds, skipped = write_jsonl(generated, out, bar)
    summary = ", ".join(f"{kind}={n}" for kind, n in sorted(kinds.items()))
    print(f"wrote {kinds.total()} records ({summary})", file=sys.stderr)
    print(f"skipped {skipped} records that are not one line of UTF-8 text", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
