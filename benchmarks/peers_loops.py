"""The plain confluent-kafka contenders of `benchmarks.peers`, and its paced producer.

    python -m benchmarks.peers_loops bare shipments IN OUT DLQ [--tail]
    python -m benchmarks.peers_loops hand shipments IN OUT DLQ [--tail]
    python -m benchmarks.peers_loops pass shipments IN OUT DLQ [--tail]
    python -m benchmarks.peers_loops produce shipments TOPIC --rate R --count N --steady S

`bare` is the I/O ceiling: it consumes every record of IN and produces its key and value to OUT,
nothing else. `hand` is the same loop running the project's own domain code, as a team would
write it by hand without a stream processor: parse and validate (`parse_record`), the batch join
with the reference data, the per-key state machine (shipment decision windows with their timers,
or ticket sessions), the rules and the agents on the rules path (`AgentRunner.answer_now`), the
end-of-input flush, and dead letters for what fails. `pass` is the bare loop with the work every
runtime-only contender does (`pass_through`: each record parsed as JSON, its flow key read, the
value produced unchanged under that key). All three read all four partitions with one
consumer configured like the flows' source (no consumer group, batches of
`SURGEFLOW_IO_BATCH_SIZE`) and write with the flows' delivery-checked idempotent producer,
flushed per batch like the flows' sink. Without `--tail` they stop at the end of every
partition; with it they run until SIGTERM (the latency runs).

`produce` writes the surge of a flow to TOPIC at a steady rate from a process of its own.
"""

from __future__ import annotations

import argparse
import heapq
import signal
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Optional, Union

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from operators.config.settings import Settings
from operators.connectors.kafka.config import client_config, producer_config
from operators.connectors.kafka.sink import DeliveryCheckedProducer
from operators.connectors.kafka.topics import partitions_of
from operators.runtime.clock import LiveClock
from operators.runtime.records import OutRecord, RawRecord, to_out_record
from operators.runtime.validate import Limits, parse_record
from schemas.common import utc_now
from schemas.dead_letter import DeadLetter

Emitted = list[OutRecord]


class Loop:
    """One consumer over every partition of a topic and one delivery-checked producer."""

    def __init__(self, settings: Settings, topic: str, *, tail: bool) -> None:
        from confluent_kafka.admin import AdminClient

        kafka = settings.kafka
        admin = AdminClient(client_config(kafka))
        self.parts = partitions_of(admin, topic, kafka.timeout_seconds)
        self.consumer = Consumer(
            {
                **client_config(kafka),
                "group.id": "surgeflow-peers-ignored",
                "enable.auto.commit": "false",
                "enable.partition.eof": "true",
            }
        )
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.parts])
        self.producer = DeliveryCheckedProducer.from_settings(
            kafka, flow="peers", client_id="surgeflow-peers"
        )
        self.batch_size = settings.io.batch_size
        self.tail = tail
        self.topic = topic
        self.stopped = False
        self.high: dict[int, int] = {}
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, *_: Any) -> None:
        self.stopped = True

    def batches(self) -> Iterator[list[RawRecord]]:
        """Batches of records until every partition reached its end (or SIGTERM with tail)."""
        at_end: set[int] = set()
        wait = 0.001
        while not self.stopped:
            # Bytewax's Kafka source waits 1 ms for a batch; a loop that found nothing waits 10.
            messages = self.consumer.consume(self.batch_size, wait)
            wait = 0.001 if messages else 0.01
            batch = []
            for m in messages:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(m.partition() or 0)
                        continue
                    batch.append(
                        RawRecord(value=m.value() or b"", topic=self.topic, error=err.str())
                    )
                    continue
                key = m.key()
                batch.append(
                    RawRecord(
                        value=m.value() or b"",
                        key=None if key is None else key.decode("utf-8", "replace"),
                        topic=self.topic,
                        partition=m.partition(),
                        offset=m.offset(),
                        error_type="validation_error",
                    )
                )
            if batch:
                yield batch
            if not self.tail and len(at_end) == len(self.parts):
                return

    def lagging(self, threshold: int) -> bool:
        """Whether a partition is more than `threshold` records behind its end (cached)."""
        behind = False
        for tp in self.consumer.position(
            [TopicPartition(self.topic, p) for p in self.parts]
        ):  # local positions, no round trip
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0 and high - tp.offset > threshold:
                behind = True
        return behind

    def send(self, records: list[OutRecord]) -> None:
        if records:
            self.producer.send(records)

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()


def bare(settings: Settings, topic: str, out: str, _dlq: str, *, tail: bool) -> None:
    """Consume → produce, key and value unchanged."""
    loop = Loop(settings, topic, tail=tail)
    for batch in loop.batches():
        loop.send([OutRecord(topic=out, key=r.key, value=r.value) for r in batch])
    loop.close()


def pass_through(out: str, value: bytes, key_field: str = "shipment_id") -> OutRecord:
    """The work of a runtime-only contender (`benchmarks.peers --runtimes`), the same in each:
    `value` parsed as JSON and its flow key read, then produced to `out` unchanged under that key
    (no key when the record is not a JSON object with a string `key_field`)."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        obj = None
    key = obj.get(key_field) if isinstance(obj, dict) else None
    return OutRecord(topic=out, key=key if isinstance(key, str) else None, value=value)


def passing(settings: Settings, topic: str, out: str, _dlq: str, *, tail: bool) -> None:
    """Consume → `pass_through` → produce: the plain loop's own cost with the domain work out."""
    loop = Loop(settings, topic, tail=tail)
    for batch in loop.batches():
        loop.send([pass_through(out, r.value) for r in batch])
    loop.close()


def _dead(dlq: str, letter: DeadLetter, keep: Any) -> OutRecord:
    return to_out_record(dlq, letter.key, letter.kept(keep))


class ShipmentsLogic:
    """The shipments flow's steps after validation, as plain Python: the reference join, one
    `ShipmentWindows` per shipment with its timers, the agent on the rules path, dead letters.
    Used by the hand-written loop (a batch at a time) and by the Quix Streams app (one record at
    a time)."""

    def __init__(self, settings: Settings, out: str, dlq: str) -> None:
        from flows.registry import SHIPMENTS
        from operators.llm.agent import AgentRunner
        from operators.llm.service import build_service
        from operators.runtime.clock import StreamClock
        from operators.shipments.agent import ShipmentAgent
        from operators.shipments.decision_state import WindowParams

        self.reference = SHIPMENTS.reference()
        self.params = WindowParams.from_settings(settings.shipments)
        self.limits = Limits.from_settings(settings.io)
        self.runner = AgentRunner(
            ShipmentAgent(settings.llm), build_service(settings, flow="shipments")
        )
        self.keep = settings.io.dead_letter_raw or SHIPMENTS.dead_letter_raw
        self.clock, self.stream_clock = LiveClock(), StreamClock()
        self.threshold = settings.shipments.catch_up_lag_records
        self.out, self.dlq = out, dlq
        self.windows: dict[str, Any] = {}
        self.timers: list[tuple[datetime, str]] = []  # (deadline, shipment); stale ones skipped

    def validate(self, raw: RawRecord, now: datetime, records: Emitted) -> Optional[Any]:
        """`Valid[ShipmentEvent]`, or None after adding its dead letter to `records`."""
        from schemas.shipments import ShipmentEvent

        parsed = parse_record(
            raw, ShipmentEvent, key_field="shipment_id", flow="shipments",
            step="shipments.validate", limits=self.limits, now=now,
        )  # fmt: skip
        if isinstance(parsed, DeadLetter):
            records.append(_dead(self.dlq, parsed, self.keep))
            return None
        return parsed

    def enrich_batch(self, valid: list[Any], records: Emitted) -> list[Any]:
        """The flows' polars join of a batch; unknown references dead-lettered."""
        from operators.shipments.enrich import join_shipments

        enriched = []
        for item in join_shipments(valid, self.reference, step="shipments.enrich"):
            if isinstance(item, DeadLetter):
                records.append(_dead(self.dlq, item, self.keep))
            else:
                enriched.append(item)
        return enriched

    def add(self, item: Any, records: Emitted) -> None:
        """One enriched scan into its shipment's windows."""
        from operators.shipments.decisions import ShipmentWindows

        key = item.event.shipment_id
        self.stream_clock.observe(item.event.occurred_at)
        state = self.windows.get(key)
        if state is None:
            state = self.windows[key] = ShipmentWindows(self.params)
        self._emit(state.on_event(item, self.clock.read()), records)
        self._settle(key, state)

    def fire_timers(self, records: Emitted) -> None:
        """The window closes and stuck timers that are due by now."""
        reading = self.clock.read()
        timers = self.timers
        while timers and timers[0][0] <= reading.wall:
            _, key = heapq.heappop(timers)
            state = self.windows.get(key)
            if state is None or (state.next_deadline(reading) or reading.wall) > reading.wall:
                continue
            self._emit(state.on_timer(reading), records)
            self._settle(key, state)

    def end_of_input(self, records: Emitted) -> None:
        """Every open window closes (`end_of_input`)."""
        reading = self.clock.read()
        for state in self.windows.values():
            self._emit(state.on_eof(reading, self.stream_clock.max_event_time), records)
        self.windows.clear()

    def _emit(self, emitted: Any, records: Emitted) -> None:
        from operators.shipments.late_events import late_event_dead_letter

        for decision in emitted.decisions:
            enriched = self.runner.answer_now(decision)
            assert enriched is not None, "the rules path answers without a call"
            records.append(to_out_record(self.out, enriched.shipment_id, enriched))
        for late in emitted.late:
            letter = late_event_dead_letter(late, step="shipments.late_events")
            records.append(_dead(self.dlq, letter, self.keep))

    def _settle(self, key: str, state: Any) -> None:
        if state.is_finished:
            self.windows.pop(key, None)
            return
        deadline = state.next_deadline(self.clock.read())
        if deadline is not None:
            heapq.heappush(self.timers, (deadline, key))


def hand_shipments(settings: Settings, topic: str, out: str, dlq: str, *, tail: bool) -> None:
    """The shipments flow's domain code in a plain loop."""
    loop = Loop(settings, topic, tail=tail)
    logic = ShipmentsLogic(settings, out, dlq)
    for batch in loop.batches():
        records: Emitted = []
        now = utc_now()
        valid = [v for raw in batch if (v := logic.validate(raw, now, records)) is not None]
        logic.clock.report("all", loop.lagging(logic.threshold))
        for item in logic.enrich_batch(valid, records):
            logic.add(item, records)
        logic.fire_timers(records)
        loop.send(records)
    if not loop.stopped:  # the end of the input: every window closes
        records = []
        logic.end_of_input(records)
        loop.send(records)
    loop.close()


def hand_tickets(settings: Settings, topic: str, out: str, dlq: str, *, tail: bool) -> None:
    """The tickets flow's domain code in a plain loop."""
    from flows.registry import TICKETS
    from operators.llm.agent import AgentRunner
    from operators.llm.service import build_service
    from operators.tickets.domain import ContextTicket, EnrichedTicket
    from operators.tickets.enrich import join_tickets
    from operators.tickets.parse import parse_ticket
    from operators.tickets.respond import format_response
    from operators.tickets.router import RouterAgent
    from operators.tickets.sessions import SessionHistory, SessionParams, turn_of
    from operators.tickets.workers import ReplyAgent
    from schemas.tickets import TicketMessage

    loop = Loop(settings, topic, tail=tail)
    reference = TICKETS.reference()
    limits = Limits.from_settings(settings.io)
    service = build_service(settings, flow="tickets")
    router = AgentRunner(RouterAgent(reference.intents, settings.llm, settings.tickets), service)
    worker = AgentRunner(ReplyAgent(settings.llm), service)
    params = SessionParams.from_settings(settings.tickets)
    keep = settings.io.dead_letter_raw or TICKETS.dead_letter_raw
    sessions: dict[str, SessionHistory] = {}
    expiries: list[tuple[datetime, str]] = []

    for batch in loop.batches():
        records: Emitted = []
        now = utc_now()
        valid = []
        for raw in batch:
            parsed = parse_record(
                raw, TicketMessage, key_field="session_id", flow="tickets",
                step="tickets.validate", limits=limits, now=now,
            )  # fmt: skip
            if isinstance(parsed, DeadLetter):
                records.append(_dead(dlq, parsed, keep))
            else:
                valid.append(parsed)
        for item in join_tickets(valid, reference.channels, step="tickets.enrich_with_channel"):
            if isinstance(item, DeadLetter):
                records.append(_dead(dlq, item, keep))
                continue
            assert isinstance(item, EnrichedTicket)
            ticket = parse_ticket(item, products=reference.products)
            key = ticket.message.session_id
            history = sessions.get(key)
            if history is None:
                history = SessionHistory(max_messages=params.max_messages, ttl=params.ttl)
                sessions[key] = history
            turn = turn_of(ticket)
            first = history.history_before(turn.message_id)
            if first is not None:
                context = ContextTicket.from_parsed(ticket, first, replay=True)
            else:
                context = ContextTicket.from_parsed(ticket, history.record(turn, utc_now()))
                expiry = history.expires_at()
                if expiry is not None:
                    heapq.heappush(expiries, (expiry, key))
            routed = router.answer_now(context)
            assert routed is not None, "the rules path answers without a call"
            drafted = worker.answer_now(routed)
            assert drafted is not None, "the rules path answers without a call"
            response = format_response(drafted, now=utc_now())
            records.append(to_out_record(out, key, response))
        wall = utc_now()
        while expiries and expiries[0][0] <= wall:
            _, key = heapq.heappop(expiries)
            history = sessions.get(key)
            if history is not None and history.is_expired(wall):
                del sessions[key]
        loop.send(records)
    loop.close()


def produce(settings: Settings, flow: str, topic: str, rate: float, count: int, steady: int) -> int:
    """Write `count` records of the flow's surge to `topic` at `rate` per second."""
    from flows.registry import SPECS

    producer = Producer({**producer_config(settings.kafka), "client.id": "surgeflow-peers-paced"})
    records = SPECS[flow].surge_records(
        seed=settings.surge.seed, steady_events=steady, burst_factor=10
    )
    started, sent = time.monotonic(), 0
    for record in records:
        if sent >= count:
            break
        due = started + sent / rate
        pause = due - time.monotonic()
        if pause > 0:
            producer.poll(pause)
        key = None if record.key is None else record.key.encode()
        producer.produce(topic, record.value, key)
        producer.poll(0)
        sent += 1
    left = producer.flush(60)
    return sent - left


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["bare", "hand", "pass", "produce"])
    parser.add_argument("flow", choices=["shipments", "tickets"])
    parser.add_argument("topics", nargs="+")
    parser.add_argument("--tail", action="store_true")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--steady", type=int, default=2000)
    args = parser.parse_args(argv)
    settings = Settings()
    if args.what == "produce":
        sent = produce(settings, args.flow, args.topics[0], args.rate, args.count, args.steady)
        print(sent)
        return 0 if sent == args.count else 1
    run: Union[Any, None]
    if args.what == "bare":
        run = bare
    elif args.what == "pass":
        run = passing
    else:
        run = hand_shipments if args.flow == "shipments" else hand_tickets
    topic, out, dlq = args.topics
    run(settings, topic, out, dlq, tail=args.tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
