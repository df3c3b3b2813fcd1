"""The output generator: channel formats and the tickets.responses record."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from operators.tickets.domain import DraftedTicket, Turn
from operators.tickets.respond import (
    CHAT_MAX_CHARS,
    first_name,
    format_chat,
    format_response,
    format_responses,
    incident_reference,
)
from schemas import Enrichment, Entities, SourceRef, TicketMessage, TicketResponse, deterministic_id
from schemas.tickets import Channel

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=3)
BODY = "We are sorry that order ORD-123456 is running late. We will update you within one day."


def drafted(channel: Channel = "email", reply: str = BODY, sender: str = "jane.doe@example.com"):
    message = TicketMessage(
        message_id="M-2",
        session_id="S-9",
        channel=channel,
        sender=sender,
        body="where is ORD-123456?",
        sent_at=T0,
    )
    return DraftedTicket(
        message=message,
        source=SourceRef(topic="tickets.messages", partition=0, offset=3),
        base_priority="normal",
        response_sla_minutes=240,
        text="where is ORD-123456?",
        entities=Entities(order_ids=["ORD-123456"]),
        history=(Turn("M-1", "my parcel is late", T0 - timedelta(minutes=5)),),
        route="shipping_delay",
        route_method="embedding",
        confidence=0.74,
        route_enrichments=(),
        priority="high",
        reply=reply,
        enrichment=Enrichment(source="rules", prompt_version="shipping_delay.v1"),
        prompt_version="shipping_delay.v1",
    )


@pytest.mark.parametrize(
    ("sender", "name"),
    [
        ("jane.doe@example.com", "Jane"),
        ("Jane Doe <jd@example.com>", "Jane"),
        ('"McKenzie, Ann" <a@x.example>', None),
        ("Bob", "Bob"),
        ("x7@example.com", None),
        ("visitor-4821", "Visitor"),
    ],
)
def test_first_name(sender: str, name: str | None) -> None:
    assert first_name(sender) == name


def test_email_has_greeting_body_and_sign_off() -> None:
    reply = format_response(drafted("email"), now=NOW).reply
    greeting, body, sign_off = reply.split("\n\n")
    assert greeting == "Hi Jane,"
    assert body == BODY
    assert sign_off.startswith("Best regards,")
    assert format_response(drafted("email", sender="42"), now=NOW).reply.startswith("Hello,\n\n")


def test_chat_is_one_short_paragraph() -> None:
    reply = format_response(drafted("chat", reply="Line one.\n\nLine two."), now=NOW).reply
    assert reply == "Line one. Line two."
    long_reply = " ".join(f"Sentence number {n} is here." for n in range(60))
    text = format_response(drafted("chat", reply=long_reply), now=NOW).reply
    assert len(text) <= CHAT_MAX_CHARS and "\n" not in text
    assert text.endswith("is here.")


def test_chat_without_sentence_ends_is_cut_at_a_word() -> None:
    text = format_chat("word " * 300)
    assert len(text) <= CHAT_MAX_CHARS and text.endswith("word…")


def test_it_is_ticket_style_with_a_reference_line() -> None:
    response = format_response(drafted("it"), now=NOW)
    header, body, footer = response.reply.split("\n\n")
    assert header == (
        f"Reference: {incident_reference(response.response_id)} | Priority: high"
        " | Category: shipping_delay"
    )
    assert header.startswith("Reference: INC-")
    assert body == BODY and footer == "IT Service Desk"


def test_response_record_fields() -> None:
    t = drafted("email")
    response = format_response(t, now=NOW)
    assert response.response_id == deterministic_id("S-9", "M-2")
    assert response.response_id == format_response(t, now=NOW + timedelta(hours=1)).response_id
    assert (response.session_id, response.message_id, response.channel) == ("S-9", "M-2", "email")
    assert (response.route, response.route_method, response.confidence) == (
        "shipping_delay",
        "embedding",
        0.74,
    )
    assert response.entities.order_ids == ["ORD-123456"]
    assert response.priority == "high"
    assert response.history_size == 1
    assert response.received_at == T0
    assert response.responded_at == NOW and response.responded_at.tzinfo is not None
    assert response.enrichment.source == "rules"
    assert TicketResponse.model_validate_json(response.model_dump_json()) == response


def test_responded_at_is_utc_and_naive_now_is_rejected() -> None:
    plus_two = timezone(timedelta(hours=2))
    response = format_response(drafted(), now=NOW.astimezone(plus_two))
    assert response.responded_at.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError):
        format_response(drafted(), now=datetime(2026, 11, 27, 9, 0))


def test_a_batch_is_stamped_with_one_reading_of_the_clock() -> None:
    reads: list[datetime] = []

    def clock() -> datetime:
        reads.append(NOW + timedelta(seconds=len(reads)))
        return reads[-1]

    batch = [drafted(channel) for channel in ("email", "chat", "it")]
    responses = format_responses(batch, now=clock)
    assert reads == [NOW]
    assert [r.responded_at for r in responses] == [NOW] * 3
    assert responses == [format_response(t, now=NOW) for t in batch]
    assert format_responses([], now=clock) == []


def test_reply_is_bounded_to_the_contract() -> None:
    response = format_response(drafted("email", reply="x " * 3000), now=NOW)
    assert len(response.reply) <= 4000
