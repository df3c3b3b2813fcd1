"""What the pinned-output tests of both flows share: the pinned input (the bundled sample file,
then a small seeded surge) run in process on the rules path, and the file of pinned lines.

Each flow's module (`tests.flows.shipments_pinned`, `tests.flows.tickets_pinned`) says what it
pins of one output record and regenerates its file when run as a program.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Optional

from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink
from bytewax.testing import TestingSink, run_main

from operators.config.settings import Settings
from operators.connectors.kafka.load import file_records, surge_records
from operators.connectors.sources import GeneratorSource
from operators.runtime.records import OutRecord, RawRecord

ROOT = Path(__file__).resolve().parents[2]

BuildFlow = Callable[..., Dataflow]
"""`build_flow(settings, *, source=..., sink=...)` of a flow module."""


def pinned_settings(surge: Mapping[str, int]) -> Settings:
    """Embedded defaults (no Kafka, Redis or LLM endpoint) and the small surge."""
    services = dict(
        kafka_bootstrap_servers=None, redis_url=None, openai_api_key=None, openai_base_url=None
    )
    return Settings(_env_file=None, **services, **surge)


def run_pinned(
    build_flow: BuildFlow,
    *,
    flow: Literal["shipments", "tickets"],
    sample: Path,
    key: str,
    surge: Mapping[str, int],
) -> list[OutRecord]:
    """Every record the flow writes for the sample file's records, then the seeded surge (in
    process, one worker)."""
    settings = pinned_settings(surge)

    def records() -> Iterator[RawRecord]:
        yield from file_records(sample, key)
        yield from surge_records(settings, flow)

    out: list[OutRecord] = []
    source: Source[RawRecord] = GeneratorSource(records, batch_size=100)
    sink: Optional[Sink[OutRecord]] = TestingSink(out)
    run_main(build_flow(settings, source=source, sink=sink))
    return out


def pinned_lines(
    records: list[OutRecord], summary: Callable[[OutRecord], dict[str, Any]]
) -> list[str]:
    """One JSON line per record, sorted (the order across keys is not part of the contract)."""
    return sorted(json.dumps(summary(r), sort_keys=True) for r in records)


def write_pinned(path: Path, lines: list[str]) -> int:
    """Write the pinned file (the programs' `main`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    print(f"wrote {len(lines)} pinned outputs to {path.relative_to(ROOT)}")
    return 0


def assert_matches_pinned(path: Path, got: list[str]) -> None:
    """The lines of a run equal the pinned file's, naming the first that differ."""
    expected = path.read_text(encoding="utf-8").splitlines()
    assert len(got) == len(expected)
    missing = sorted(set(expected) - set(got))
    assert not missing, f"{len(missing)} outputs differ, first: {missing[:3]}"
    assert got == expected


def read_pinned(path: Path) -> list[dict[str, Any]]:
    """The pinned file's lines, parsed."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
