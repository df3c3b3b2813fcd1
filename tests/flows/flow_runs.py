"""Helpers to run a flow in process on a generated surge and read back what it wrote."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, cluster_main, run_main

from operators.config.settings import Settings
from operators.connectors.sources import GeneratorSource
from operators.runtime.records import OutRecord
from operators.surge.engine import Generated


@dataclass
class FlowRun:
    """Output of one run, split by topic and decoded."""

    records: list[OutRecord]
    by_topic: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))

    def __post_init__(self) -> None:
        for record in self.records:
            self.by_topic[record.topic].append(json.loads(record.value))


def embedded_settings(**overrides: Any) -> Settings:
    """Settings on embedded defaults whatever the environment says about services."""
    services = dict(
        kafka_bootstrap_servers=None, redis_url=None, openai_api_key=None, openai_base_url=None
    )
    return Settings(_env_file=None, **{**services, **overrides})


def surge_for(
    generator: Callable[..., Iterator[Generated]], settings: Settings
) -> Callable[[], Iterator[Generated]]:
    """The labelled surge the settings describe (seed, steady events, burst factor)."""
    return partial(
        generator,
        seed=settings.surge.seed,
        steady_events=settings.surge.steady_events,
        burst_factor=settings.surge.burst_factor,
    )


def run_flow(
    build: Callable[..., Dataflow],
    settings: Settings,
    generated: Callable[[], Iterator[Generated]],
    *,
    workers: int = 1,
) -> FlowRun:
    """Build the flow on `generated` records with a testing sink; run it with `workers` threads."""
    out: list[OutRecord] = []
    source = GeneratorSource(lambda: (g.record for g in generated()), batch_size=100)
    flow = build(settings, source=source, sink=TestingSink(out))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return FlowRun(out)
