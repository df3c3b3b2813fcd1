"""One process of a 2-process Bytewax cluster for `test_exchange.py`: reads its partitions, keys
every item with `route_by_key` or one at a time (`--single`), and prints what it saw as JSON.
With `--enriched` the items are the shipments flow's `EnrichedEvent`s (`enriched(key, n)`), grouped
as the flow groups them (`EnrichedGroup`), and each that reaches its keyed step is compared with
the one that was read; with `--parsed` the same for the tickets flow's `ParsedTicket`s
(`parsed(key, n)`, grouped as `ParsedGroup`s).

`python -m tests.operators.runtime.exchange_procs ADDRESSES PROC_ID [--single] [--enriched]
[--parsed]`
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import cluster_main

from operators.runtime.exchange import WorkerProbe, route_by_key
from operators.runtime.placement import this_worker
from operators.runtime.records import source_ref
from operators.shipments.domain import EnrichedEvent, EnrichedGroup
from operators.tickets.domain import ParsedGroup, ParsedTicket, made
from schemas.dead_letter import SourceRef
from schemas.shipments import ShipmentEvent
from schemas.tickets import Entities, TicketMessage

PARTITIONS = ["p0", "p1", "p2", "p3"]
PER_PARTITION = 400
BATCH = 50


class Counted:
    """An item that counts how often this process pickles it."""

    pickled = 0

    def __init__(self, key: str, n: int) -> None:
        self.key, self.n = key, n

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        Counted.pickled += 1
        return (Counted, (self.key, self.n))


def enriched(key: str, n: int) -> EnrichedEvent:
    """The `EnrichedEvent` number `n` of shipment `key`: a scan with an ETA, a null one or none
    set, a note or none set, and a source with its partition and offset."""
    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC) + timedelta(seconds=n, microseconds=n)
    fields: dict[str, Any] = {
        "event_id": f"EV-{n}", "shipment_id": key, "carrier_id": "CAR-1", "hub_id": f"HUB-{n % 3}",
        "scan_type": "delay" if n % 2 else "arrived_hub", "occurred_at": at,
        "shipped_at": at - timedelta(hours=n % 7), "delay_minutes": n % 50,
    }  # fmt: skip
    if n % 3:  # else left unset
        fields["eta"] = at + timedelta(hours=9) if n % 3 == 1 else None
    if n % 5 == 0:
        fields["note"] = f"note {n}"
    event = ShipmentEvent(**fields)
    source = SourceRef(topic="shipments.events", partition=n % 4, offset=n)
    return EnrichedEvent(
        event, source, "Carrier One", 24.0 + n % 3, 0.9, "north", n % 10 / 10,
        event.shipped_at + timedelta(hours=24),
    )  # fmt: skip


def parsed(key: str, n: int) -> ParsedTicket:
    """The `ParsedTicket` number `n` of session `key`: a message with a subject, a null one or
    none set, a tier or none set, non-ASCII text, and entities of every shape (none named and
    all fields unset, as the parser's shared record; some set; all set)."""
    fields: dict[str, Any] = {
        "message_id": f"M-{n}", "session_id": key, "channel": ("email", "chat", "it")[n % 3],
        "sender": f"Zoë {n}", "body": f"Où est ORD-{100000 + n} ? n°{n}",
        "sent_at": datetime(2026, 11, 27, 10, 0, tzinfo=UTC) + timedelta(seconds=n),
    }  # fmt: skip
    if n % 3:  # else left unset
        fields["subject"] = f"Re: {n}" if n % 3 == 1 else None
    if n % 4 == 0:
        fields["customer_tier"] = "gold"
    message = TicketMessage(**fields)
    shapes = [
        Entities(),
        Entities(order_ids=[f"ORD-{100000 + n}"]),
        Entities(order_ids=[], emails=[f"é{n}@example.com"], products=["AeroBlend 3000"]),
    ]
    return made(
        ParsedTicket, message=message, source=source_ref("tickets.messages", n % 4, n),
        base_priority="normal", response_sla_minutes=30 + n % 5,
        text=message.body if n % 2 else f"{message.subject} {message.body}",
        entities=shapes[n % 3],
    )  # fmt: skip


class _Part(StatefulSourcePartition[Any, None]):
    def __init__(self, part: str) -> None:
        p = PARTITIONS.index(part)
        make: Any = Counted
        if "--enriched" in sys.argv or "--parsed" in sys.argv:
            make = enriched if "--enriched" in sys.argv else parsed
        self.items = [make(f"K-{p}-{i % 37}", p * PER_PARTITION + i) for i in range(PER_PARTITION)]

    def next_batch(self) -> list[Any]:
        if not self.items:
            raise StopIteration()
        batch, self.items = self.items[:BATCH], self.items[BATCH:]
        return batch

    def snapshot(self) -> None:
        return None


class Parts(FixedPartitionedSource[Any, None]):
    def list_parts(self) -> list[str]:
        return PARTITIONS

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[None]) -> _Part:
        return _Part(for_part)


def main(argv: list[str]) -> None:
    addresses, proc_id, single = argv[0].split(";"), int(argv[1]), "--single" in argv
    read: list[tuple[int, int]] = []
    owned: list[tuple[str, int, int]] = []
    unequal: list[int] = []
    if "--enriched" in argv:
        key_of, n_of = _enriched_key, _source_offset
    elif "--parsed" in argv:
        key_of, n_of = _parsed_key, _source_offset
    else:
        key_of, n_of = _counted_key, _counted_n

    flow = Dataflow("exchange_procs")
    op.input("probe", flow, WorkerProbe())
    up = op.input("in", flow, Parts())
    up = op.map("read", up, lambda c: read.append((n_of(c), _index())) or c)
    if single:
        keyed = op.key_on("key", up, key_of)
    elif "--enriched" in argv:
        keyed = route_by_key("key", up, key_of, group=EnrichedGroup)
    elif "--parsed" in argv:
        keyed = route_by_key("key", up, key_of, group=ParsedGroup)
    else:
        keyed = route_by_key("key", up, key_of)

    def count(state: Optional[int], c: Any) -> tuple[int, int]:
        key, n = key_of(c), n_of(c)
        owned.append((key, n, _index()))
        if isinstance(c, EnrichedEvent) and not _same(c, enriched(key, n)):
            unequal.append(n)
        if isinstance(c, ParsedTicket) and not _same_parsed(c, parsed(key, n)):
            unequal.append(n)
        return (state or 0) + 1, n

    op.inspect("seen", op.stateful_map("count", keyed, count), lambda *_: None)
    cluster_main(flow, addresses, proc_id, worker_count_per_proc=1)
    out = {"pickled": Counted.pickled, "read": read, "owned": owned, "unequal": unequal}
    print(json.dumps(out))


def _counted_key(c: Counted) -> str:
    return c.key


def _counted_n(c: Counted) -> int:
    return c.n


def _enriched_key(e: EnrichedEvent) -> str:
    return e.event.shipment_id


def _source_offset(item: EnrichedEvent | ParsedTicket) -> int:
    """The item's number: the offset it was read at."""
    offset = item.source.offset
    assert offset is not None
    return offset


def _same(got: EnrichedEvent, want: EnrichedEvent) -> bool:
    """Equal, with the same fields set on the scan and the source."""
    return (
        got == want
        and got.event.model_fields_set == want.event.model_fields_set
        and got.source.model_fields_set == want.source.model_fields_set
    )


def _parsed_key(t: ParsedTicket) -> str:
    return t.message.session_id


def _same_parsed(got: ParsedTicket, want: ParsedTicket) -> bool:
    """Equal, with the same fields set on the message, the source and the entities."""
    return got == want and all(
        getattr(got, name).model_fields_set == getattr(want, name).model_fields_set
        for name in ("message", "source", "entities")
    )


def _index() -> int:
    worker = this_worker()
    assert worker is not None
    return worker[0]


if __name__ == "__main__":
    main(sys.argv[1:])
