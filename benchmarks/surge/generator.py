"""The paced load generator of the surge benchmark, run in a process of its own.

    python -m benchmarks.surge.generator FLOW TOPIC --phases '[[rate, seconds], ...]' --status FILE

Produces the flow's seeded surge (`operators.surge`, through the flow registry) to `TOPIC`, keyed
by the flow key with the flows' partitioner, at `rate` records per second for `seconds`, phase
after phase. The records come from surges of seeds `seed`, `seed + 1`, ... chained, so a long run
never runs out. Every 0.25 s, and at the end, it writes `{"phase", "sent", "delivered", "at"}` to
`FILE` (replaced atomically). Needs `KAFKA_BOOTSTRAP_SERVERS`.

Running it apart keeps its CPU (serialising, producing) out of the process that measures and out
of the flow's processes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any, Optional

from confluent_kafka import Producer

from operators.config.settings import Settings
from operators.connectors.kafka.config import client_config
from operators.runtime.flow_spec import flow_spec
from operators.runtime.records import RawRecord

STATUS_EVERY = 0.25


def records(flow: str, seed: int, steady: int, burst: int) -> Iterator[RawRecord]:
    """The flow's surges of seeds `seed`, `seed + 1`, ..., one after the other."""
    spec = flow_spec(flow)
    for n in count(seed):
        yield from spec.surge_records(seed=n, steady_events=steady, burst_factor=burst)


def write_status(path: Path, **status: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, path)


def run(
    settings: Settings,
    source: Iterator[RawRecord],
    topic: str,
    phases: list[tuple[float, float]],
    status: Path,
) -> int:
    """Produce `source` to `topic` at each phase's rate for its seconds; records produced."""
    producer = Producer(
        {**client_config(settings.kafka), "partitioner": "murmur2_random", "linger.ms": 5}
    )
    delivered = [0]

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is None:
            delivered[0] += 1

    sent, last_status = 0, 0.0
    write_status(status, phase=0, sent=0, delivered=0, at=time.time())  # the clock starts now
    for index, (rate, seconds) in enumerate(phases):
        started, made = time.monotonic(), 0
        end = started + seconds
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int((now - started) * rate)
            while made < due:
                record = next(source)
                key: Optional[bytes] = None if record.key is None else record.key.encode()
                while True:
                    try:
                        producer.produce(topic, record.value, key, on_delivery=on_delivery)
                        break
                    except BufferError:  # the local queue is full: let it drain
                        producer.poll(0.05)
                made += 1
                sent += 1
            producer.poll(0)
            if now - last_status >= STATUS_EVERY:
                write_status(status, phase=index, sent=sent, delivered=delivered[0], at=time.time())
                last_status = now
            time.sleep(0.002)
    producer.flush(60)
    write_status(status, phase=len(phases), sent=sent, delivered=delivered[0], at=time.time())
    return sent


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.surge.generator")
    parser.add_argument("flow")
    parser.add_argument("topic")
    parser.add_argument("--phases", required=True, help="JSON list of [rate, seconds]")
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--steady", type=int, default=2000)
    parser.add_argument("--burst", type=int, default=10)
    args = parser.parse_args(argv)
    phases = [(float(r), float(s)) for r, s in json.loads(args.phases)]
    settings = Settings()
    source = records(args.flow, args.seed, args.steady, args.burst)
    run(settings, source, args.topic, phases, args.status)


if __name__ == "__main__":
    main()
