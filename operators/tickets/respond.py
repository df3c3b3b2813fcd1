"""The output generator of the tickets flow: shape a drafted reply for its channel (plain Python).

- email: a greeting with the sender's first name, the body, a sign-off;
- chat: one short paragraph of at most `CHAT_MAX_CHARS` characters, no greeting;
- it: ticket style, a reference line with priority and category above the body.

`format_response` wraps the result in the `tickets.responses` contract with a deterministic
`response_id`, so a replayed message produces the same id.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Optional

from operators.tickets.domain import DraftedTicket
from operators.tickets.parse import bound_length, collapse_whitespace
from schemas.common import deterministic_id
from schemas.enrichment import combine_enrichments
from schemas.tickets import TicketResponse

CHAT_MAX_CHARS = 600
REPLY_MAX_CHARS = 4000  # the bound of `TicketResponse.reply`
EMAIL_SIGN_OFF = "Best regards,\nCustomer Support"
IT_SIGN_OFF = "IT Service Desk"

_ANGLE_ADDRESS = re.compile(r"<[^>]*>")
_NAME_PARTS = re.compile(r"[._+\-\s]+")
_SENTENCE_END = re.compile(r"[.!?](?=\s)")


@lru_cache(maxsize=4096)  # a session's sender writes again
def first_name(sender: str) -> Optional[str]:
    """A first name to greet by: from "Jane Doe", "Jane Doe <j@x.com>" or "jane.doe@x.com"."""
    name = _ANGLE_ADDRESS.sub(" ", sender).strip().strip('"')
    if "@" in name:
        name = name.split("@", 1)[0]
    parts = [part for part in _NAME_PARTS.split(name) if part]
    if not parts or not parts[0].isalpha() or len(parts[0]) < 2:
        return None
    candidate = parts[0]
    return candidate if not candidate.islower() else candidate.capitalize()


def format_email(body: str, sender: str) -> str:
    name = first_name(sender)
    greeting = f"Hi {name}," if name else "Hello,"
    return f"{greeting}\n\n{body.strip()}\n\n{EMAIL_SIGN_OFF}"


def format_chat(body: str, limit: int = CHAT_MAX_CHARS) -> str:
    """One paragraph; a longer text is cut after its last whole sentence within `limit`."""
    text = collapse_whitespace(body)
    if len(text) <= limit:
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text[: limit + 1]) if m.end() <= limit]
    if ends and ends[-1] >= limit // 3:
        return text[: ends[-1]]
    return bound_length(text, limit)


def incident_reference(response_id: str) -> str:
    """A short, stable ticket reference such as `INC-3F9A0C21B7`."""
    return f"INC-{response_id[:10].upper()}"


def format_it(body: str, *, reference: str, priority: str, category: str) -> str:
    header = f"Reference: {reference} | Priority: {priority} | Category: {category}"
    return f"{header}\n\n{body.strip()}\n\n{IT_SIGN_OFF}"


def format_reply(t: DraftedTicket, response_id: str) -> str:
    """The drafted body shaped for the message's channel, within the output bound."""
    channel = t.message.channel
    if channel == "email":
        text = format_email(t.reply, t.message.sender)
    elif channel == "chat":
        text = format_chat(t.reply)
    else:
        text = format_it(
            t.reply,
            reference=incident_reference(response_id),
            priority=t.priority,
            category=t.route,
        )
    return bound_length(text, REPLY_MAX_CHARS)


def format_response(t: DraftedTicket, *, now: datetime) -> TicketResponse:
    """The `tickets.responses` record of a drafted message.

    `response_id` is derived from (session_id, message_id); `responded_at` is `now`, which must be
    timezone-aware; `history_size` counts the earlier turns the agents saw; `escalated` is set
    when the reply policy replaced the drafted reply.
    """
    message = t.message
    response_id = deterministic_id(message.session_id, message.message_id)
    return TicketResponse(
        response_id=response_id,
        session_id=message.session_id,
        message_id=message.message_id,
        channel=message.channel,
        route=t.route,
        route_method=t.route_method,
        confidence=t.confidence,
        route_conflict=t.route_conflict,
        entities=t.entities,
        priority=t.priority,
        reply=format_reply(t, response_id),
        escalated=t.enrichment.outcome == "policy_blocked",
        history_size=len(t.history),
        received_at=message.sent_at,
        responded_at=now,
        enrichment=t.enrichment,
        route_enrichment=combine_enrichments(t.route_enrichments),
    )
