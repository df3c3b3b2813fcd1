"""Put input on a flow's Kafka topic: the seeded surge, or a JSON-lines file.

    python -m operators.connectors.kafka.load shipments                  # the surge of the settings
    python -m operators.connectors.kafka.load tickets --file msgs.jsonl  # one record value per line

Records are keyed by the flow key (`shipment_id` / `session_id`) like a real producer would key
them, sent through the same delivery-checked idempotent producer as the flows' output, in chunks.
The flows are those of the registry (`flows.registry`, see `operators.runtime.flow_spec`).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Optional, Union

import orjson

from operators.config.settings import Settings
from operators.connectors.kafka.sink import Delivered, DeliveryCheckedProducer
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
) -> int:
    """Produce `records` (value and key) of `flow`'s input to `topic`; returns how many were
    acknowledged."""
    producer = DeliveryCheckedProducer.from_settings(settings.kafka, flow=flow)
    out = (OutRecord(topic=topic, key=r.key, value=r.value) for r in records)
    sent = 0
    while chunk := list(itertools.islice(out, CHUNK)):
        sent += producer.send(chunk, on_delivered)
    return sent


def surge_records(settings: Settings, flow: Union[str, AnySpec]) -> Iterator[RawRecord]:
    """The surge the settings describe (seed, steady events, burst factor) for `flow` (a spec or
    a registered flow's name)."""
    return flow_spec(flow).surge_records(
        seed=settings.surge.seed,
        steady_events=settings.surge.steady_events,
        burst_factor=settings.surge.burst_factor,
    )


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
    args = parser.parse_args(argv)
    settings = Settings()
    if not settings.kafka.enabled:
        print("KAFKA_BOOTSTRAP_SERVERS is not set", file=sys.stderr)
        return 2
    spec = flow_spec(args.flow)
    topic = spec.topics(settings).input
    records = (
        file_records(args.file, spec.key_field) if args.file else surge_records(settings, spec)
    )
    started = time.perf_counter()
    sent = load_records(settings, topic, records, flow=spec.name)
    print(f"produced {sent} records to {topic} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
