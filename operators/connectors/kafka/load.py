"""Put input on a flow's Kafka topic: the seeded surge, or a JSON-lines file.

    python -m operators.connectors.kafka.load shipments                  # the surge of the settings
    python -m operators.connectors.kafka.load tickets --file msgs.jsonl  # one record value per line

On a terminal a bar counts the records acknowledged against the total (`--no-progress` or
`SURGEFLOW_NO_PROGRESS=1` turns it off; piped or redirected, there is none); the last line is
the same either way: `produced N records to TOPIC in S s`.

Records are keyed by the flow key (`shipment_id` / `session_id`) like a real producer would key
them, sent through the same delivery-checked idempotent producer as the flows' output, in chunks.
The flows are those of the registry (`flows.registry`, see `operators.runtime.flow_spec`).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Optional, Union

import orjson

from operators.config.settings import Settings
from operators.connectors.kafka.sink import Delivered, DeliveryCheckedProducer
from operators.runtime import progress
from operators.runtime.flow_spec import AnySpec, flow_spec, flow_specs
from operators.runtime.records import OutRecord, RawRecord

CHUNK = 5000


def load_records(
    settings: Settings,
    topic: str,
    records: Iterable[RawRecord],
    *,
    flow: str,
    on_delivered: Optional[Delivered] = None,
    on_chunk: Optional[Callable[[int], None]] = None,
) -> int:
    """Produce `records` (value and key) of `flow`'s input to `topic`; returns how many were
    acknowledged.

    `on_chunk` is called with the count of each chunk once all of it is acknowledged."""
    producer = DeliveryCheckedProducer.from_settings(settings.kafka, flow=flow)
    out = (OutRecord(topic=topic, key=r.key, value=r.value) for r in records)
    sent = 0
    while chunk := list(itertools.islice(out, CHUNK)):
        done = producer.send(chunk, on_delivered)
        sent += done
        if on_chunk is not None:
            on_chunk(done)
    return sent


def load_with_progress(
    settings: Settings,
    topic: str,
    records: Iterable[RawRecord],
    *,
    flow: str,
    total: Optional[int] = None,
    off: bool = False,
) -> int:
    """`load_records` under a bar of the records acknowledged (`operators.runtime.progress`:
    drawn only on a terminal)."""
    with progress.progress("producing", total=total, off=off) as bar:
        return load_records(settings, topic, records, flow=flow, on_chunk=bar.advance)


def surge_records(settings: Settings, flow: Union[str, AnySpec]) -> Iterator[RawRecord]:
    """The surge the settings describe (seed, steady events, burst factor) for `flow` (a spec or
    a registered flow's name)."""
    return flow_spec(flow).surge_records(
        seed=settings.surge.seed,
        steady_events=settings.surge.steady_events,
        burst_factor=settings.surge.burst_factor,
    )


def surge_size(settings: Settings, flow: Union[str, AnySpec]) -> Optional[int]:
    """How many records `surge_records` yields: `steady_events * (1 + burst_factor)` (see
    `operators.surge`); None for a flow without a surge."""
    if flow_spec(flow).surge is None:
        return None
    return settings.surge.steady_events * (1 + settings.surge.burst_factor)


def file_lines(path: Path) -> int:
    """How many records `file_records` yields from `path` (its non-blank lines)."""
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.strip())


def file_records(path: Path, key_field: str) -> Iterator[RawRecord]:
    """One record per non-blank line of `path`, keyed by its `key_field` when it has one.

    Lines that are not JSON objects are sent unkeyed: the flow dead-letters them with a reason.
    """
    with path.open("rb") as lines:
        for line in lines:
            value = line.rstrip(b"\r\n")
            if value.strip():
                yield RawRecord(value=value, key=_key_of(value, key_field))


def _key_of(value: bytes, key_field: str) -> Optional[str]:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    key = obj.get(key_field) if isinstance(obj, dict) else None
    return key if isinstance(key, str) else None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Produce a flow's input to Kafka.")
    parser.add_argument("flow", choices=list(flow_specs()))
    parser.add_argument("--file", type=Path, help="JSON lines to send instead of the surge")
    progress.add_flag(parser)
    args = parser.parse_args(argv)
    settings = Settings()
    if not settings.kafka.enabled:
        print("KAFKA_BOOTSTRAP_SERVERS is not set", file=sys.stderr)
        return 2
    spec = flow_spec(args.flow)
    topic = spec.topics(settings).input
    if args.file:
        shown = progress.wanted(off=args.no_progress)  # counting the lines is a pass of its own
        records = file_records(args.file, spec.key_field)
        total = file_lines(args.file) if shown else None
    else:
        records, total = surge_records(settings, spec), surge_size(settings, spec)
    started = time.perf_counter()
    sent = load_with_progress(
        settings, topic, records, flow=spec.name, total=total, off=args.no_progress
    )
    print(f"produced {sent} records to {topic} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
