"""What a flow does for its process when it is built: logging, recovery, stop, endpoints, checks.

`start` is what the skeleton (`operators.runtime.skeleton.build`) runs first for every flow:
`prepare_process` (so that everything after it logs with timestamp, level, logger, flow and
worker), the recovery check, the graceful stop, the endpoints, and `preflight` once the source and
sink are known. The generic parts live in `operators.runtime.logs`, `operators.runtime.preflight`,
`operators.runtime.shutdown` and
`operators.connectors.io`; this module maps the settings onto them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from functools import partial
from typing import Any, Optional

from bytewax.inputs import Source
from bytewax.outputs import Sink

from operators.config.settings import Settings
from operators.connectors import io
from operators.connectors.kafka.config import client_config
from operators.connectors.kafka.sink import KafkaRecordSink
from operators.connectors.kafka.source import KafkaRecordSource
from operators.llm.service import DEFAULT_API_KEY
from operators.runtime.flow_spec import AnySpec, FlowTopics
from operators.runtime.logs import configure_logging
from operators.runtime.preflight import (
    Check,
    Finding,
    check_kafka,
    check_llm,
    check_redis,
    run_preflight,
)
from operators.runtime.records import OutRecord, RawRecord
from operators.runtime.recovery import bytewax_run_argv, check_recovery
from operators.runtime.shutdown import StopSignal, on_signals
from operators.runtime.skeleton import Started
from schemas.dead_letter import FlowName


def start(
    spec: AnySpec,
    settings: Settings,
    *,
    source: Optional[Source[RawRecord]],
    sink: Optional[Sink[OutRecord]],
    stop: Optional[StopSignal],
) -> Started:
    """Start the process of flow `spec`: logging, the recovery check, the graceful stop that
    SIGTERM/SIGINT request (unless `stop` is given), the endpoints (unless `source`/`sink` are
    given: tests) and the preflight of the services they use."""
    prepare_process(settings, flow=spec.name)
    check_recovery(settings.recovery)
    topics = spec.topics(settings)
    stop = stop or on_signals(
        settings.recovery.shutdown_grace_seconds, install=bytewax_run_argv() is not None,
        unbounded_input=source is None and settings.kafka.enabled and settings.kafka.tail,
    )  # fmt: skip
    source, sink = io.endpoints(
        settings, flow=spec.name, topic=topics.input, generator=spec.surge_records,
        source=source, sink=sink,
    )  # fmt: skip
    preflight(settings, flow=spec.name, topics=topics, source=source, sink=sink)
    return Started(source=source, sink=sink, stop=stop)


def prepare_process(settings: Settings, *, flow: FlowName) -> None:
    """Configure logging (`SURGEFLOW_LOG_LEVEL`, `SURGEFLOW_LOG_FORMAT`) for a process that
    runs `flow`."""
    process, workers = cluster_position(bytewax_run_argv(), os.environ)
    configure_logging(
        flow,
        level=settings.process.log_level,
        level_given="log_level" in settings.process.model_fields_set,
        fmt=settings.process.log_format,
        process=process,
        workers_per_process=workers,
    )


def cluster_position(argv: Optional[Sequence[str]], env: Any) -> tuple[int, int]:
    """(process index, workers per process) of this `bytewax.run` process: `-i`/`-w`, else
    `BYTEWAX_PROCESS_ID` (or the stateful-set pod ordinal) and `BYTEWAX_WORKERS_PER_PROCESS`."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-i", "--process-id", type=int)
    parser.add_argument("-w", "--workers-per-process", type=int)
    flags, _ = parser.parse_known_args(list(argv or []))
    process = flags.process_id
    if process is None and env.get("BYTEWAX_PROCESS_ID", "").isdigit():
        process = int(env["BYTEWAX_PROCESS_ID"])
    pod, stateful_set = env.get("BYTEWAX_POD_NAME", ""), env.get("BYTEWAX_STATEFULSET_NAME", "")
    if process is None and stateful_set and pod.startswith(f"{stateful_set}-"):
        ordinal = pod.removeprefix(f"{stateful_set}-")
        process = int(ordinal) if ordinal.isdigit() else None
    workers = flags.workers_per_process
    if workers is None and env.get("BYTEWAX_WORKERS_PER_PROCESS", "").isdigit():
        workers = int(env["BYTEWAX_WORKERS_PER_PROCESS"])
    return process or 0, workers or 1


def preflight(
    settings: Settings,
    *,
    flow: FlowName,
    topics: FlowTopics,
    source: object,
    sink: object,
) -> list[Finding]:
    """Check the services this flow will use, unless `SURGEFLOW_PREFLIGHT=false`.

    Kafka is checked when the flow reads (`source`) or writes (`sink`) it: the input topics, and
    the flow's output and dead-letter `topics`. Raises `PreflightError` when Kafka is unreachable
    or a topic is missing; Redis and the LLM endpoint are warned about.
    """
    if not settings.process.preflight:
        return []
    timeout = settings.process.preflight_timeout_seconds
    kafka_topics: dict[str, str] = {}
    if isinstance(source, KafkaRecordSource):
        kafka_topics.update({t: "input" for t in source.topics})
    if isinstance(sink, KafkaRecordSink):
        kafka_topics.update({topics.output: "output", topics.dead_letters: "dead letters"})
    checks: list[Check] = []
    if kafka_topics:
        config = client_config(settings.kafka)
        checks.append(lambda: check_kafka(config, kafka_topics, timeout=timeout))
    if settings.llm.enabled:
        for base, key in settings.llm.endpoints():  # each distinct endpoint once
            checks.append(partial(check_llm, base, key or DEFAULT_API_KEY, timeout=timeout))
        if settings.redis.url is not None:
            url = settings.redis.url.get_secret_value()
            checks.append(lambda: check_redis(url, timeout=timeout))
    return run_preflight(checks, flow=flow)
