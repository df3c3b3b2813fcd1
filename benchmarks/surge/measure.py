"""What the surge benchmark samples while a flow runs, from outside the flow's processes.

- `Offsets`: the high watermarks of the input, output and dead-letter topics (records appended).
- `scrape`: one flow process's `/metrics` (the dataflow API on a port of its own), summed into
  the figures the report uses: consumer lag, LLM calls by outcome, fallbacks by reason, tokens,
  cost and the cost the cache saved.
- `ProcStats`: RSS and CPU seconds of a process, from `/proc`.
- `Latencies`: reads the input and output topics and pairs each output with the input record that
  produced it, by the records' broker timestamps: a ticket response with its message, a shipment
  decision with the scan that closed its window (the shipment's first later scan whose event time
  is past the window's end plus the allowed lateness; decisions closed by a timer, with no such
  scan before them, have none).
"""

from __future__ import annotations

import os
import time
import urllib.request
import uuid
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from operators.config.settings import Settings
from operators.connectors.kafka.config import client_config

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Offsets:
    """Records appended to topics so far (the sum of the partitions' high watermarks)."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        metadata = AdminClient(client_config(settings.kafka)).list_topics(timeout=10).topics
        self._partitions = {t: list(metadata[t].partitions) for t in topics}
        self._consumer = Consumer(
            {**client_config(settings.kafka), "group.id": f"surge-offsets-{uuid.uuid4().hex}"}
        )

    def appended(self, topic: str) -> int:
        total = 0
        for partition in self._partitions[topic]:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=5, cached=False
            )
            total += max(high, 0)
        return total

    def close(self) -> None:
        self._consumer.close()


@dataclass
class Scraped:
    """The figures of one or more processes' `/metrics`, summed."""

    up: int = 0
    lag: float = 0.0
    records_in: float = 0.0
    pending: float = 0.0  # items in the LLM steps, read and not yet emitted
    calls: dict[str, float] = field(default_factory=dict)  # by outcome
    fallbacks: dict[str, float] = field(default_factory=dict)  # by reason
    tokens_in: float = 0.0
    tokens_out: float = 0.0
    cost: float = 0.0
    cost_saved: float = 0.0

    def add(self, other: Scraped) -> Scraped:
        merged = Scraped(
            up=self.up + other.up,
            lag=self.lag + other.lag,
            records_in=self.records_in + other.records_in,
            pending=self.pending + other.pending,
            tokens_in=self.tokens_in + other.tokens_in,
            tokens_out=self.tokens_out + other.tokens_out,
            cost=self.cost + other.cost,
            cost_saved=self.cost_saved + other.cost_saved,
        )
        for mine, theirs, into in (
            (self.calls, other.calls, merged.calls),
            (self.fallbacks, other.fallbacks, merged.fallbacks),
        ):
            for key in {*mine, *theirs}:
                into[key] = mine.get(key, 0.0) + theirs.get(key, 0.0)
        return merged

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_metrics(text: str) -> Scraped:
    """The figures of one `/metrics` page (Prometheus text format)."""
    out = Scraped(up=1)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name == "bytewax_kafka_consumer_lag":
                out.lag += value
            elif name == "surgeflow_records_in_total":
                out.records_in += value
            elif name == "surgeflow_llm_pending":
                out.pending += value
            elif name == "surgeflow_llm_calls_total":
                outcome = labels.get("outcome", "")
                out.calls[outcome] = out.calls.get(outcome, 0.0) + value
            elif name == "surgeflow_llm_fallbacks_total":
                reason = labels.get("reason", "")
                out.fallbacks[reason] = out.fallbacks.get(reason, 0.0) + value
            elif name == "gen_ai_client_token_usage_sum":
                if labels.get("gen_ai_token_type") == "input":
                    out.tokens_in += value
                else:
                    out.tokens_out += value
            elif name == "surgeflow_llm_cost_usd_total":
                out.cost += value
            elif name == "surgeflow_llm_cost_saved_usd_total":
                out.cost_saved += value
    return out


def scrape(port: int, timeout: float = 2.0) -> Optional[Scraped]:
    """The figures of the process serving the dataflow API on `port`; None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as page:
            return parse_metrics(page.read().decode())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class ProcStats:
    rss_bytes: int
    cpu_seconds: float


def proc_stats(pid: int) -> Optional[ProcStats]:
    """RSS and CPU seconds (user + system) of process `pid`; None once it has ended."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return ProcStats(rss_bytes=pages * os.sysconf("SC_PAGE_SIZE"), cpu_seconds=cpu)


def _parse_time(text: Any) -> Optional[datetime]:
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None  # a naive time is a dead letter


SETTLE = 3.0
"""Seconds after its write an output is paired (its input, written before it, has been read)."""


@dataclass
class _Scans:
    """One shipment's scans in input order: event times, input times, index of each event id."""

    times: list[datetime] = field(default_factory=list)
    ats: list[float] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)


class Latencies:
    """Follows the input and output topics and pairs outputs with the inputs that produced them."""

    def __init__(
        self,
        settings: Settings,
        flow: str,
        input_topic: str,
        output_topic: str,
        lateness: timedelta,
    ) -> None:
        metadata = AdminClient(client_config(settings.kafka)).list_topics(timeout=10).topics
        self._consumer = Consumer(
            {
                **client_config(settings.kafka),
                "group.id": f"surge-latency-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
            }
        )
        self._consumer.assign(
            [
                TopicPartition(topic, p, OFFSET_BEGINNING)
                for topic in (input_topic, output_topic)
                for p in metadata[topic].partitions
            ]
        )
        self._flow, self._input, self._lateness = flow, input_topic, lateness
        self._message_at: dict[str, float] = {}  # tickets: message_id -> input time
        self._scans: dict[str, _Scans] = defaultdict(_Scans)  # shipments, by shipment_id
        self._waiting: list[tuple[float, dict[str, Any]]] = []
        self.pairs: list[tuple[float, float]] = []  # (output time, latency seconds)
        self.outputs = 0
        self.unpaired = 0  # outputs no input produced (windows closed by a timer)
        self.sources: Counter[str] = Counter()  # outputs by enrichment source
        self.reasons: Counter[str] = Counter()  # outputs by fallback reason
        self.output_cost = 0.0  # USD the outputs carry (enrichment and routing calls)

    def poll(self, seconds: float = 0.0) -> None:
        """Read what has arrived; pair the outputs whose inputs have been read."""
        for msg in self._consumer.consume(5000, seconds):
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"reading {msg.topic()}: {error.str()}")
                continue
            at = msg.timestamp()[1] / 1000.0
            try:
                value = orjson.loads(msg.value() or b"null")
            except orjson.JSONDecodeError:
                continue
            if not isinstance(value, dict):
                continue
            if msg.topic() == self._input:
                self._add_input(value, at)
            else:
                self.outputs += 1
                self._count(value)
                self._waiting.append((at, value))
        self._pair()

    def _count(self, value: dict[str, Any]) -> None:
        enrichment = value.get("enrichment")
        if isinstance(enrichment, dict):
            self.sources[str(enrichment.get("source"))] += 1
            if enrichment.get("fallback_reason"):
                self.reasons[str(enrichment["fallback_reason"])] += 1
            self.output_cost += float(enrichment.get("cost_usd") or 0.0)
        routing = value.get("route_enrichment")
        if isinstance(routing, dict):
            self.output_cost += float(routing.get("cost_usd") or 0.0)

    def _add_input(self, value: dict[str, Any], at: float) -> None:
        if self._flow == "tickets":
            if isinstance(value.get("message_id"), str):
                self._message_at.setdefault(value["message_id"], at)
            return
        occurred = _parse_time(value.get("occurred_at"))
        key, event_id = value.get("shipment_id"), value.get("event_id")
        if occurred is not None and isinstance(key, str) and isinstance(event_id, str):
            scans = self._scans[key]
            scans.index.setdefault(event_id, len(scans.times))
            scans.times.append(occurred)
            scans.ats.append(at)

    def flush(self) -> None:
        """Pair every output read so far (at the end of a run, once the inputs are read)."""
        self._pair(settle=0.0)

    def _pair(self, settle: float = SETTLE) -> None:
        """Pair the outputs written more than `settle` s ago (their inputs have been read)."""
        settled = time.time() - settle
        waiting = []
        for at, value in self._waiting:
            if at > settled:
                waiting.append((at, value))
                continue
            found = self._input_of(value, at)
            if found is None:
                self.unpaired += 1
            else:
                self.pairs.append((at, max(at - found, 0.0)))
        self._waiting = waiting

    def _input_of(self, value: dict[str, Any], output_at: float) -> Optional[float]:
        """The input time of the record that produced `value`, if there is one."""
        if self._flow == "tickets":
            return self._message_at.get(str(value.get("message_id")))
        if value.get("trigger") != "window_closed":
            return None
        end = _parse_time(value.get("window_end"))
        scans = self._scans.get(str(value.get("shipment_id")))
        if end is None or scans is None:
            return None
        covered = [scans.index.get(str(e), -1) for e in value.get("event_ids") or []]
        closes = end + self._lateness
        before_output = bisect_right(scans.ats, output_at)
        for index in range(max(covered, default=-1) + 1, before_output):
            if scans.times[index] >= closes:
                return scans.ats[index]
        return None

    def close(self) -> None:
        self._consumer.close()
