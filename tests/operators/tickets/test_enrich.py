"""Polars joins of message batches with the channels."""

import pickle
from datetime import UTC, datetime
from pathlib import Path

from operators.runtime.records import Valid
from operators.tickets.domain import EnrichedTicket
from operators.tickets.enrich import join_tickets
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
