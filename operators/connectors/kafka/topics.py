"""Create the flows' topics with the partition counts from the settings (Python and command).

    python -m operators.connectors.kafka.topics                 # every topic of every flow
    python -m operators.connectors.kafka.topics --flow tickets  # tickets.messages, .responses, .dlq

The flows are those of the registry (`flows.registry`, see `operators.runtime.flow_spec`).

Input and output topics of a flow get `SURGEFLOW_TOPIC_PARTITIONS` partitions (the same count,
so a key's input partition and output partition have the same number) and
`SURGEFLOW_TOPIC_REPLICATION_FACTOR` replicas. A topic that already exists is left as it is and
reported with its partition count. Every admin call is bounded by `SURGEFLOW_KAFKA_TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from operators.config.settings import Settings
from operators.connectors.kafka.config import client_config
from operators.errors import SurgeflowError
from operators.runtime.flow_spec import AnySpec, flow_spec, flow_specs

ALL = "all"
"""Every registered flow."""
AdminFactory = Callable[[dict[str, Any]], AdminClient]


class TopicNotFound(SurgeflowError, RuntimeError):
    """A topic does not exist on the cluster (or has no partitions)."""


@dataclass(frozen=True)
class TopicState:
    """What `create_topics` found or did for one topic."""

    topic: str
    created: bool
    partitions: int


def flow_topics(settings: Settings, flow: Union[str, AnySpec] = ALL) -> list[str]:
    """The input, output and dead-letter topics of `flow` (a spec or a registered flow's name),
    or of every registered flow (`all`)."""
    specs = flow_specs().values() if flow == ALL else [flow_spec(flow)]
    return [topic for spec in specs for topic in spec.topics(settings)]


def create_topics(
    settings: Settings,
    topics: Optional[Sequence[str]] = None,
    *,
    partitions: Optional[int] = None,
    admin_factory: AdminFactory = AdminClient,
) -> list[TopicState]:
    """Create the missing `topics` (default: every flow's); report every topic's partitions."""
    names = list(dict.fromkeys(topics if topics is not None else flow_topics(settings)))
    count = partitions or settings.topics.partitions
    admin = admin_factory(client_config(settings.kafka))
    timeout = settings.kafka.timeout_seconds
    new = [NewTopic(t, count, settings.topics.replication_factor) for t in names]
    futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
    created = {t for t, future in futures.items() if _created(t, future, timeout)}
    return [
        TopicState(topic=t, created=t in created, partitions=len(partitions_of(admin, t, timeout)))
        for t in names
    ]


def partitions_of(admin: AdminClient, topic: str, timeout: float) -> list[int]:
    """The partition ids of `topic`, waiting up to `timeout` for a new topic's metadata.

    A topic created a moment ago may not be in the broker's metadata yet; an unknown topic is
    asked for again until the deadline. Raises `TopicNotFound` naming the topic helper.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = max(deadline - time.monotonic(), 0.1)
        metadata = admin.list_topics(topic, timeout=left).topics.get(topic)
        if metadata is not None and metadata.error is None and metadata.partitions:
            return sorted(metadata.partitions)
        if time.monotonic() >= deadline:
            reason = metadata.error.str() if metadata and metadata.error else "no partitions"
            raise TopicNotFound(
                f"Kafka topic {topic!r} is not readable ({reason}); "
                "create it with `python -m operators.connectors.kafka.topics`"
            )
        time.sleep(0.1)


def _created(topic: str, future: Any, timeout: float) -> bool:
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise RuntimeError(f"could not create Kafka topic {topic!r}: {error.str()}") from exc
    return True


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Create Surgeflow's Kafka topics.")
    parser.add_argument("--flow", choices=[*flow_specs(), ALL], default=ALL)
    parser.add_argument("--partitions", type=int, default=None, help="default: settings")
    args = parser.parse_args(argv)
    settings = Settings()
    if not settings.kafka.enabled:
        print("KAFKA_BOOTSTRAP_SERVERS is not set", file=sys.stderr)
        return 2
    topics = flow_topics(settings, args.flow)
    for state in create_topics(settings, topics, partitions=args.partitions):
        verb = "created" if state.created else "exists "
        print(f"{verb} {state.topic} ({state.partitions} partitions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
