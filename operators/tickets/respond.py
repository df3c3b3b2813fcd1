"""The output generator of the tickets flow: shape a drafted reply for its channel (plain Python).

- email: a greeting with the sender's first name, the body, a sign-off;
- chat: one short paragraph of at most `CHAT_MAX_CHARS` characters, no greeting;
- it: ticket style, a reference line with priority and category above the body.

`format_response` wraps the result in the `tickets.responses` contract with a deterministic
`response_id`, so a replayed message produces the same id. A record whose every value already
is what validation would make of it (`already_valid`: always so on the flow's path) is built
without validating it again; any other goes through the model's validation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, Optional, get_args

from operators.tickets.domain import DraftedTicket
from operators.tickets.parse import bound_length, collapse_whitespace
from schemas.common import SCHEMA_VERSION
from schemas.enrichment import Enrichment, combine_enrichments
from schemas.tickets import (
    LAID_OUT_FIELDS,
    Channel,
    Entities,
    Priority,
    Route,
    RouteMethod,
    TicketResponse,
)

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


@lru_cache(maxsize=4096)  # a route's template is the body of many chat replies
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
    return text if len(text) <= REPLY_MAX_CHARS else bound_length(text, REPLY_MAX_CHARS)


def response_id_of(session_id: str, message_id: str) -> str:
    """`deterministic_id(session_id, message_id)`, the two strings joined without a generator."""
    return _digest(f"{session_id}\x1f{message_id}")


def _digest(ids: str) -> str:
    """The response id of the session and message ids joined by a unit separator."""
    digest = _NEW_DIGEST()
    digest.update(ids.encode())
    return digest.hexdigest()


_NEW_DIGEST = hashlib.blake2b(digest_size=16).copy
"""A new 16-byte BLAKE2b, copied from one that has hashed nothing (the state its constructor
would set up from the parameters, without parsing them per response)."""


def format_response(t: DraftedTicket, *, now: datetime) -> TicketResponse:
    """The `tickets.responses` record of a drafted message.

    `response_id` is derived from (session_id, message_id); `responded_at` is `now`, which must be
    timezone-aware; `history_size` counts the earlier turns the agents saw; `escalated` is set
    when the reply policy replaced the drafted reply.
    """
    message, enrichment = t.message, t.enrichment
    session_id, message_id, channel = message.session_id, message.message_id, message.channel
    route, method, priority = t.route, t.route_method, t.priority
    confidence, conflict, entities = t.confidence, t.route_conflict, t.entities
    ids = f"{session_id}\x1f{message_id}"
    digest = _NEW_DIGEST()  # `_digest(ids)`, written out
    digest.update(ids.encode())
    response_id = digest.hexdigest()
    if channel == "email":  # `format_reply(t, response_id)`, written out
        name = first_name(message.sender)  # `format_email`, written out
        greeting = f"Hi {name}," if name else "Hello,"
        reply = f"{greeting}\n\n{t.reply.strip()}\n\n{EMAIL_SIGN_OFF}"
    elif channel == "chat":
        reply = format_chat(t.reply)
    else:
        reply = format_it(
            t.reply, reference=incident_reference(response_id), priority=t.priority,
            category=t.route,
        )  # fmt: skip
    if len(reply) > REPLY_MAX_CHARS:
        reply = bound_length(reply, REPLY_MAX_CHARS)
    received_at = message.sent_at
    route_enrichment = combine_enrichments(t.route_enrichments) if t.route_enrichments else None
    fields: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "response_id": response_id,
        "session_id": session_id,
        "message_id": message_id,
        "channel": channel,
        "route": route,
        "route_method": method,
        "confidence": confidence,
        "route_conflict": conflict,
        "entities": entities,
        "priority": priority,
        "reply": reply,
        "escalated": enrichment.outcome == "policy_blocked",
        "history_size": len(t.history),
        "received_at": received_at,
        "responded_at": now,
        "enrichment": enrichment,
        "route_enrichment": route_enrichment,
    }
    if _valid(
        ids, session_id, message_id, channel, route, method, priority, confidence, conflict,
        reply, entities, enrichment, route_enrichment, received_at, now,
    ):  # fmt: skip
        # `_trusted_response(fields)`, written out, with the one fields set that says the
        # values are laid out as `json_bytes` needs (`fields` is in field order)
        response = _new(TicketResponse)
        _set_dict(response, fields)
        _set_fields_set(response, LAID_OUT_FIELDS)
        _set_extra(response, None)
        _set_private(response, None)
        return response
    del fields["schema_version"]  # left to its default, as the fast path leaves it
    return TicketResponse(**fields)


def format_responses(
    batch: list[DraftedTicket], *, now: Callable[[], datetime]
) -> list[TicketResponse]:
    """`format_response` of every drafted message of a batch, all at one `now()` (one call per
    batch from a flow's step: the batch is formatted at that time)."""
    at = now()
    return [format_response(t, now=at) for t in batch]


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")  # `schemas.common.Id`, 1-64 characters
_IDS = re.compile(f"{_ID.pattern}\x1f{_ID.pattern}")
"""Two `Id`s joined by a unit separator (which no `Id` holds): one match checks both."""
_CHANNELS = frozenset(get_args(Channel))
_ROUTES = frozenset(get_args(Route))
_METHODS = frozenset(get_args(RouteMethod))
_PRIORITIES = frozenset(get_args(Priority))
_ENRICHMENT_TYPES = (Enrichment, type(None))
_FIELDS_SET = frozenset(TicketResponse.model_fields) - {"schema_version"}
_new = object.__new__


def already_valid(fields: dict[str, Any]) -> bool:
    """Whether validating `fields` as a `TicketResponse` would keep every value as it is.

    The response id is 32 hex digits; the rest is checked here: ids that match `Id` (and are
    stripped), the literals, a float probability, bools, a stripped reply within its bound (a
    text Python's `strip` leaves alone pydantic's leaves alone too), `Entities` and `Enrichment`
    records (kept as they are, not revalidated), and UTC timestamps (validation would convert
    any other zone to UTC)."""
    session_id, message_id = fields["session_id"], fields["message_id"]
    return _valid(f"{session_id}\x1f{message_id}", *_CHECKED(fields))


_CHECKED = itemgetter(
    "session_id", "message_id", "channel", "route", "route_method", "priority", "confidence",
    "route_conflict", "reply", "entities", "enrichment", "route_enrichment", "received_at",
    "responded_at",
)  # fmt: skip
"""The values `already_valid` checks, read in one call."""


def _valid(
    ids: str, session_id: object, message_id: object, channel: object, route: object,
    method: object, priority: object, confidence: object, conflict: object, reply: object,
    entities: object, enrichment: object, route_enrichment: object, received_at: object,
    responded_at: object,
) -> bool:  # fmt: skip
    """`already_valid` of the values, given `ids`, the two ids joined by a unit separator (no
    `Id` holds one: one match checks both)."""
    return (
        type(session_id) is str
        and type(message_id) is str
        and _IDS.fullmatch(ids) is not None
        and channel in _CHANNELS
        and route in _ROUTES
        and method in _METHODS
        and priority in _PRIORITIES
        and type(confidence) is float
        and 0.0 <= confidence <= 1.0
        and type(conflict) is bool
        and type(reply) is str
        and len(reply) <= REPLY_MAX_CHARS
        and reply.strip() == reply
        and type(entities) is Entities
        and type(enrichment) is Enrichment
        and type(route_enrichment) in _ENRICHMENT_TYPES
        and type(received_at) is datetime
        and received_at.tzinfo is UTC
        and type(responded_at) is datetime
        and responded_at.tzinfo is UTC
    )


def _trusted_response(fields: dict[str, Any]) -> TicketResponse:
    """The `TicketResponse` validation would build from `fields` (`already_valid`), built as
    pydantic's `model_construct` builds one, without its per-field loop."""
    response = _new(TicketResponse)  # `BaseModel` has no `__new__` of its own
    _set_dict(response, fields)
    _set_fields_set(response, set(_FIELDS_SET))
    _set_extra(response, None)
    _set_private(response, None)
    return response


def _slot_setter(name: str) -> Callable[[object, object], None]:
    """The `__set__` of the descriptor `object.__setattr__(response, name, ...)` calls (the
    first in `TicketResponse`'s MRO: pydantic's slots), called without looking it up."""
    for kind in TicketResponse.__mro__:
        if name in vars(kind):
            setter: Callable[[object, object], None] = vars(kind)[name].__set__
            return setter
    raise LookupError(f"TicketResponse has no {name}")


_set_dict = _slot_setter("__dict__")
_set_fields_set = _slot_setter("__pydantic_fields_set__")
_set_extra = _slot_setter("__pydantic_extra__")
_set_private = _slot_setter("__pydantic_private__")
