"""Polars joins of message batches with the channels."""

import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from operators.runtime.records import Valid
from operators.tickets.domain import EnrichedTicket
from operators.tickets.enrich import enrich_with_channel, join_tickets
from operators.tickets.reference import ChannelReference
from schemas import DeadLetter, SourceRef, TicketMessage

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
SRC = SourceRef(topic="tickets.messages", partition=0, offset=7)


def test_tickets_join_channel_priority(data_dir: Path) -> None:
    ref = ChannelReference.load(data_dir)
    msgs = [
        Valid(
            model=TicketMessage(
                message_id=f"M-{c}",
                session_id="S-1",
                channel=c,
                sender="a@example.com",
                body="hi",
                sent_at=T0,
            ),
            source=SRC,
        )
        for c in ("chat", "email", "it")
    ]
    out = join_tickets(msgs, ref, step="j")
    assert isinstance(out[0], EnrichedTicket) and out[0].base_priority == "high"
    assert isinstance(out[1], EnrichedTicket) and out[1].response_sla_minutes == 240
    assert isinstance(out[2], DeadLetter) and "'it'" in out[2].error
    # built without the dataclass's own __init__, and the same as with it
    own = EnrichedTicket(msgs[0].model, SRC, "high", out[0].response_sla_minutes)
    assert out[0] == own and list(out[0].__dict__) == list(own.__dict__)
    assert pickle.loads(pickle.dumps(out[0])) == own


def _message(n: int, channel: str) -> Valid[TicketMessage]:
    model = TicketMessage(
        message_id=f"M-{n}", session_id=f"S-{n}", channel=channel, sender="a@example.com",
        body="hi", sent_at=T0,
    )  # fmt: skip
    return Valid(model=model, source=SourceRef(topic="tickets.messages", partition=0, offset=n))


def test_the_operator_sends_unknown_channels_and_failures_to_its_dead_letters(
    data_dir: Path,
) -> None:
    """`enrich_with_channel` passes each joined message on and sends the join's own dead letters
    (a channel the reference lacks) and the guard's (a message the join raised on, dead-lettered
    alone) out on `dead_letters`, each once."""

    class _Raising:
        channel = property(lambda self: 1 / 0)
        session_id = "S-P"

    poison = Valid(model=_Raising(), source=SRC)  # type: ignore[type-var]
    items: list[Any] = [_message(1, "chat"), _message(2, "it"), poison, _message(3, "email")]
    enriched: list[EnrichedTicket] = []
    dead: list[DeadLetter] = []
    flow = Dataflow("enrich_test")
    up = op.input("in", flow, TestingSource(items, batch_size=4))
    out = enrich_with_channel("enrich", up, reference=ChannelReference.load(data_dir))
    op.output("ok", out.enriched, TestingSink(enriched))
    op.output("dead", out.dead_letters, TestingSink(dead))
    run_main(flow)
    assert [e.message.message_id for e in enriched] == ["M-1", "M-3"]
    assert all(type(e) is EnrichedTicket for e in enriched)
    assert sorted((d.error_type, d.key) for d in dead) == [
        ("processing_error", "S-P"), ("unknown_reference", "S-2"),
    ]  # fmt: skip
    (failed,) = [d for d in dead if d.error_type == "processing_error"]
    assert "enrich_test.enrich.join" in failed.error and "ZeroDivisionError" in failed.error
    (unknown,) = [d for d in dead if d.error_type == "unknown_reference"]
    assert "'it'" in unknown.error and unknown.source.offset == 2
