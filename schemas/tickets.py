"""Contracts of the tickets flow: `tickets.messages` in, `tickets.responses` out."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Optional, get_args

import orjson
from pydantic import AfterValidator, AwareDatetime, Field, ValidationInfo

from schemas.common import (
    SCHEMA_VERSION,
    Id,
    NonNegativeInt,
    Probability,
    Record,
    ShortText,
    Text,
    TimeBounds,
    UtcDatetime,
    _new,
    _not_ahead,
    _set_dict,
    _set_extra,
    _set_fields_set,
    _set_private,
    _to_utc,
    _within_bounds,
)
from schemas.enrichment import Enrichment, EnrichmentJson


def _event_time(value: datetime, info: ValidationInfo) -> datetime:
    """`EventTime`'s three checks in one validator call, in its order (the first that fails
    raises, with its own message)."""
    return _not_ahead(_within_bounds(_to_utc(value), info), info)


SentAt = Annotated[AwareDatetime, AfterValidator(_event_time)]
"""`schemas.common.EventTime` with its validators folded into one (the same values and errors,
two Python calls fewer per message)."""

Channel = Literal["email", "chat", "it"]
CustomerTier = Literal["standard", "gold", "platinum"]
Route = Literal[
    "order_status",
    "refund",
    "shipping_delay",
    "damaged_item",
    "account_access",
    "billing",
    "it_incident",
    "general",
]
RouteMethod = Literal["embedding", "lexical", "llm"]
Priority = Literal["low", "normal", "high", "urgent"]


class TicketMessage(Record):
    """One inbound support message (topic `tickets.messages`, key `session_id`)."""

    message_id: Id
    session_id: Id
    channel: Channel
    sender: ShortText
    subject: Optional[ShortText] = None
    body: str = Field(min_length=1, max_length=8000)
    sent_at: SentAt
    customer_tier: CustomerTier = "standard"

    @classmethod
    def from_common_shape(cls, obj: dict[str, Any], bounds: TimeBounds) -> Optional[TicketMessage]:
        """The message of the parsed JSON object `obj`, equal to `model_validate(obj,
        context=bounds.context())`, built without pydantic when `obj` has the common
        well-formed shape; `None` for anything else, which `model_validate` decides (see
        `message_from_common_shape`). A subclass, which may add validators, always gets `None`."""
        return message_from_common_shape(obj, bounds) if cls is TicketMessage else None


_MESSAGE_KEYS: frozenset[str] = frozenset(TicketMessage.model_fields)
_MESSAGE_REQUIRED: frozenset[str] = frozenset(
    name for name, info in TicketMessage.model_fields.items() if info.is_required()
)
_CHANNELS: frozenset[str] = frozenset(get_args(Channel))
_TIERS: frozenset[str] = frozenset(get_args(CustomerTier))
_UTC_TEXT = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)"
"""`is_utc_text`'s pattern."""
_ID_TEXT = r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}"
"""An `Id` that stripping leaves as it is."""


def _one_of(values: frozenset[str]) -> str:
    return "(?:" + "|".join(re.escape(value) for value in sorted(values)) + ")"


is_common_codes = re.compile(
    rf"{_ID_TEXT}\x1f{_ID_TEXT}\x1f{_one_of(_CHANNELS)}\x1f{_one_of(_TIERS)}\x1f" + _UTC_TEXT
).fullmatch
"""`message_id`, `session_id`, `channel`, `customer_tier` and `sent_at` joined by a unit separator
(which none of them holds when it matches): two `Id`s that stripping leaves as they are, a known
channel and tier, and a timestamp in the common form (`is_utc_text`), in one match."""


def message_from_common_shape(obj: dict[str, Any], bounds: TimeBounds) -> Optional[TicketMessage]:
    """`TicketMessage.model_validate(obj, context=bounds.context())` without pydantic, for a
    message of the common well-formed shape; `None` when `obj` is anything else.

    `obj` is parsed JSON (orjson's: its strings hold no lone surrogates). The shape: known fields
    only, the required ones present; identifiers that match `Id` as they are; a known channel and
    tier; `sender`, `subject` (or null) and `body` text within their lengths that stripping
    leaves as it is; `sent_at` written `YYYY-MM-DDTHH:MM:SS[.ffffff]` and `Z` or `+00:00`, within
    `bounds` and not too far ahead of its wall clock. Anything else, valid or not, goes to full
    validation (which normalises it or says why it fails). Python's `str.strip` removes every
    character pydantic's stripping does (and a few more), so text it leaves alone is kept.
    """
    fields = set(obj)  # its fields set, when it is of the common shape
    if not (fields == _MESSAGE_KEYS or (fields <= _MESSAGE_KEYS and fields >= _MESSAGE_REQUIRED)):
        return None
    message_id, session_id, channel = obj["message_id"], obj["session_id"], obj["channel"]
    sender, body, sent = obj["sender"], obj["body"], obj["sent_at"]
    subject, tier = obj.get("subject"), obj.get("customer_tier", "standard")
    if not (
        type(message_id) is str
        and type(session_id) is str
        and type(channel) is str
        and type(tier) is str
        and type(sent) is str
        and is_common_codes(f"{message_id}\x1f{session_id}\x1f{channel}\x1f{tier}\x1f{sent}")
        is not None
        and type(sender) is str
        and 0 < len(sender) <= 200
        and sender == sender.strip()
        and type(body) is str
        and 0 < len(body) <= 8000
        and body == body.strip()
        and (
            subject is None
            or (type(subject) is str and 0 < len(subject) <= 200 and subject == subject.strip())
        )
    ):
        return None
    try:
        sent_at = datetime.fromisoformat(sent)
    except ValueError:  # such as a 30th of February: validation says why
        return None
    if not bounds.earliest <= sent_at <= bounds.latest:
        return None
    now, ahead = bounds.now, bounds.max_ahead
    if now is not None and ahead is not None and sent_at - now > ahead:
        return None
    message = _new(TicketMessage)  # `trusted`, inline
    _set_dict(
        message,
        {
            "message_id": message_id, "session_id": session_id, "channel": channel,
            "sender": sender, "subject": subject, "body": body, "sent_at": sent_at,
            "customer_tier": tier,
        },
    )  # fmt: skip
    _set_fields_set(message, fields)
    _set_extra(message, None)
    _set_private(message, None)
    return message


class Entities(Record):
    """What the parser extracted from a message."""

    order_ids: list[str] = Field(default_factory=list, max_length=20)
    emails: list[str] = Field(default_factory=list, max_length=20)
    products: list[str] = Field(default_factory=list, max_length=20)


class TicketResponse(Record):
    """The drafted reply to one message (topic `tickets.responses`).

    `response_id` is deterministic (session, message): replays reproduce it.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    response_id: Id = Field(
        description="Deterministic id of the response: a hash of session_id and message_id. A "
        "replay after a crash or a restart, or the same message sent twice, gives the same id "
        "(delivery is at-least-once): keep the first record per id and drop the rest. Copies "
        "answer the same message; responded_at and the enrichment (its source, latency and "
        "cost, and the reply when a call fell back to the rules the first time) may differ."
    )
    session_id: Id
    message_id: Id
    channel: Channel
    route: Route
    route_method: RouteMethod
    confidence: Probability = Field(
        description="How sure the router is of the route, from its own scores: the embedding or "
        "lexical weight of the route; for route_method llm, the model's stated confidence capped "
        "by the embedding weight of the route it chose."
    )
    route_conflict: bool = Field(
        default=False,
        description="The LLM router chose a route the embedding scores clearly argue against "
        "(its weight below SURGEFLOW_ROUTER_CONFLICT_RATIO times the best route's).",
    )
    entities: Entities
    priority: Priority = Field(
        description="Set by rules: the channel's base priority, customer tier, the route's "
        "boost and urgency words. When the LLM router chose the route, never above the priority "
        "of the route the embedding scores put first: the model may lower it, not raise it."
    )
    reply: Text
    escalated: bool = Field(
        default=False,
        description="A person should take this message over: the drafted reply broke the reply "
        "policy and the route's template was sent instead (enrichment.outcome policy_blocked, "
        "enrichment.policy_violations). Follows the enrichment, so copies of one response_id "
        "may differ in it as they may in the enrichment.",
    )
    history_size: NonNegativeInt
    received_at: UtcDatetime
    responded_at: UtcDatetime
    enrichment: Enrichment
    route_enrichment: Optional[Enrichment] = None
    """Provenance and cost of the router's LLM calls (embeddings, fallback); null when lexical."""

    def json_bytes(self) -> bytes:
        """`self.model_dump_json().encode()`, made by orjson from the response's values
        (`response_json` is this method).

        orjson writes what pydantic writes for the values a response holds (strings, ints,
        floats, bools, lists and tuples of strings, None, UTC datetimes with `Z`); the values are
        taken in field order, each enrichment is encoded once (`_enrichment_json`), and the bytes
        are copied to their exact size (orjson's buffer is several KB). A response of a subclass,
        with extra values, with values or nested models laid out otherwise, a number of another
        type than its field's (pydantic writes an int in a float field as a float), a timestamp
        not in UTC, or a value orjson cannot encode, is serialised by pydantic as before. A
        response whose fields set is `LAID_OUT_FIELDS` (one `format_response` built on its fast
        path, which checked all that of its values) is not checked again; its entities are.
        """
        values = self.__dict__
        if not (
            (
                self.__pydantic_fields_set__ is LAID_OUT_FIELDS
                or (
                    type(self) is TicketResponse
                    and self.__pydantic_extra__ is None
                    and tuple(values) == _RESPONSE_FIELDS
                    and type(values["confidence"]) is float
                    and type(values["history_size"]) is int
                    and type(values["received_at"]) is datetime
                    and values["received_at"].tzinfo is UTC
                    and type(values["responded_at"]) is datetime
                    and values["responded_at"].tzinfo is UTC
                    and type(values["enrichment"]) is Enrichment
                    and type(values["route_enrichment"]) in _ROUTE_ENRICHMENT_TYPES
                )
            )
            and type(values["entities"]) is Entities
        ):
            return _serialise(self)
        try:  # the nested records by `_nested`
            made = _dumps(values, default=_nested, option=_UTC_Z)
        except TypeError:  # a value orjson does not encode
            return _serialise(self)
        return memoryview(made).tobytes()


response_json = TicketResponse.json_bytes
"""`response.json_bytes()`: its JSON, byte for byte what `model_dump_json()` encodes (the
method itself, so a record's serialisation is one call)."""

LAID_OUT_FIELDS: set[str] = set(TicketResponse.model_fields) - {"schema_version"}
"""The fields set shared by the responses `format_response` builds on its fast path: values
validation would keep as they are, in field order, of their fields' types, timestamps in UTC
(`TicketResponse.json_bytes` trusts that of a response holding this very set). One object, never
changed in place: a frozen model refuses assignment, `model_copy` and pickling give a response a
set of its own (which no longer vouches for it)."""
_RESPONSE_FIELDS: tuple[str, ...] = tuple(TicketResponse.model_fields)
_ENTITIES_FIELDS: tuple[str, ...] = tuple(Entities.model_fields)
_enrichment_json = EnrichmentJson(Enrichment)
"""The JSON of the enrichments serialised last: one per route and reason on the rules path."""
_held_json = _enrichment_json.held
_ROUTE_ENRICHMENT_TYPES = (Enrichment, type(None))


def _nested(value: Any) -> Any:
    """orjson's `default` for a response's nested records: the values of `Entities` laid out as
    validation lays them out, the JSON of an `Enrichment` (`_enrichment_json`, its memo read
    here first); anything else raises `TypeError` (the response then goes to pydantic)."""
    if type(value) is Entities:
        if value.__pydantic_extra__ is None and tuple(value.__dict__) == _ENTITIES_FIELDS:
            return value.__dict__
        raise TypeError("entities laid out otherwise")
    held = _held_json.get(id(value))
    if held is not None and held[0] is value:
        return held[1]
    fragment = _enrichment_json(value)
    if fragment is None:
        raise TypeError(f"no JSON of {type(value).__name__} here")
    return fragment


_serialise = TicketResponse.__pydantic_serializer__.to_json
_dumps = orjson.dumps
_UTC_Z = orjson.OPT_UTC_Z
