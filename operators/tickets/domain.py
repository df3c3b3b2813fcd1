"""Plain data passed between the agents of the tickets flow (no Bytewax import).

Each step adds to what the previous one produced, so every type extends the one before it:

`ParsedTicket` (cleaned text, entities) → `ContextTicket` (+ the session's earlier turns) →
`RoutedTicket` (+ route, method, confidence) → `DraftedTicket` (+ priority, reply, enrichment).

All are frozen dataclasses of picklable values and keep the original `TicketMessage` and its
`SourceRef`, so any later step can still dead-letter a record with its topic, partition and offset.

About half of all `ParsedTicket`s cross to the process of the worker that owns their session
(`operators.runtime.exchange.route_by_key`), in groups. The flow's groups are `ParsedGroup`s: one
pickles as flat lists of its items' values and unpickles, through one call, as a plain list of the
same pairs, the models rebuilt without validation (`_parsed_group`). Pydantic's own pickle of a
message and of its entities writes four state entries each and rebuilds them through
`__setstate__` (`python -m benchmarks.crossing --flow tickets --micro` gives the figures of both
forms).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, Literal, Optional, Protocol, TypeVar

from schemas.common import (
    FieldsMask,
    _set_dict,
    _set_extra,
    _set_fields_set,
    _set_private,
    is_plain,
    trusted,
)
from schemas.dead_letter import SourceRef
from schemas.enrichment import Enrichment
from schemas.tickets import Entities, Route, RouteMethod, TicketMessage

Priority = Literal["low", "normal", "high", "urgent"]
_T = TypeVar("_T")


@dataclass(frozen=True)
class EnrichedTicket:
    """A support message joined with its channel's priority and response target."""

    message: TicketMessage
    source: SourceRef
    base_priority: Priority
    response_sla_minutes: int


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_new = object.__new__
"""The stage records of the one exact type are built as `_extended` builds them: the previous
record's dict copied, then each new field set by item (keyword arguments to `dict.update` would
build a second dict first)."""


def _extended(record: object, kind: type, cls: type[_T], **more: Any) -> _T:
    """A `cls` (a subtype of `kind`) holding the `kind` fields of `record` and `more`.

    The generated `__init__` of a frozen dataclass sets each field through `object.__setattr__`;
    when `record` is exactly a `kind`, its attributes are copied in one step instead (the same
    instance dict, pickled and compared the same way).
    """
    if type(record) is not kind:
        return cls(**_fields_of(record, kind), **more)
    extended = object.__new__(cls)
    extended.__dict__.update(record.__dict__)
    extended.__dict__.update(more)
    return extended


def made(cls: type[_T], **values: Any) -> _T:
    """`cls(**values)` for a frozen dataclass of this module given every field in declaration
    order, with the values set in one step instead of one `object.__setattr__` per field (the
    same instance dict, pickled and compared the same way)."""
    record = object.__new__(cls)
    record.__dict__.update(values)
    return record


def _fields_of(record: object, kind: type) -> dict[str, Any]:
    """The fields `kind` declares, read from `record`, as keyword arguments for a subtype."""
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(kind))
    return {name: getattr(record, name) for name in names}


@dataclass(frozen=True)
class ParsedTicket:
    """A message after the input parser: cleaned text and extracted entities."""

    message: TicketMessage
    source: SourceRef
    base_priority: Priority
    response_sla_minutes: int
    text: str
    entities: Entities


_MESSAGE_FIELDS = FieldsMask(TicketMessage)
_ENTITIES_FIELDS = FieldsMask(Entities)
_SOURCE_SET = frozenset(("topic", "partition", "offset"))
FLAT_WIDTH = 16
"""Values in the flat form of one `ParsedTicket`."""
ENTITIES_WIDTH = 4
"""Values in the flat form of one `Entities`."""
_MESSAGE_WIDTH = len(_MESSAGE_FIELDS.names)
_set_parsed: Callable[[object, dict[str, Any]], None] = vars(ParsedTicket)["__dict__"].__set__
"""Sets a `ParsedTicket`'s `__dict__` (what `made` fills in), called directly."""


class ParsedGroup(list[tuple[str, ParsedTicket]]):
    """`(session, ParsedTicket)` pairs bound for one worker (`route_by_key(..., group=...)`),
    pickled, when they cross to another process, as their keys, one flat list of every item's
    values and one of the values of their distinct entities: one call to unpickle the group, not
    one per item (and none per model). They unpickle as a plain list of the same pairs. A group
    holding an item with no flat form pickles as a list.

    An item's flat form (`FLAT_WIDTH` values): its message's values and fields-set mask, its
    source's three values, its own, with its text written as `None` when it equals the message's
    body (as it does for most messages) and its entities as their index among the group's. The
    parser hands every message that names nothing the same `Entities`: each distinct one (by
    identity) is written once (`ENTITIES_WIDTH` values: the three lists and the fields-set mask)
    and rebuilt once, shared as before. An item has no flat form when it is of
    another class, when its message, source or entities are of a subclass, hold extra or private
    values or lack a field's value (`model_construct`), or when its source has not all three
    fields set."""

    __slots__ = ()

    def __reduce__(self) -> Any:
        keys: list[str] = []
        flat: list[Any] = []
        shared: list[Any] = []
        index: dict[int, int] = {}
        add, more = flat.extend, keys.append
        for key, item in self:
            if type(item) is not ParsedTicket:
                return (list, (list(self),))
            v = item.__dict__
            message, source, entities, text = v["message"], v["source"], v["entities"], v["text"]
            known = index.get(id(entities))
            if known is None:
                values = _flat_entities(entities)
                if values is None:
                    return (list, (list(self),))
                known = index[id(entities)] = len(index)
                shared.extend(values)
            if not (
                is_plain(message, TicketMessage)
                and is_plain(source, SourceRef)
                and source.__pydantic_fields_set__ == _SOURCE_SET
                and type(text) is str
            ):
                return (list, (list(self),))
            message_mask = _MESSAGE_FIELDS.mask(message.__pydantic_fields_set__)
            m, r = message.__dict__, source.__dict__
            if message_mask is None or len(m) != _MESSAGE_WIDTH:
                return (list, (list(self),))
            try:
                body = m["body"]
                values = (
                    m["message_id"], m["session_id"], m["channel"], m["sender"], m["subject"],
                    body, m["sent_at"], m["customer_tier"], message_mask, r["topic"],
                    r["partition"], r["offset"], v["base_priority"], v["response_sla_minutes"],
                    None if text == body and type(body) is str else text, known,
                )  # fmt: skip
            except KeyError:  # a message built without some of its fields (`model_construct`)
                return (list, (list(self),))
            more(key)
            add(values)
        return (_parsed_group, (keys, flat, shared))


def _flat_entities(entities: Entities) -> Optional[tuple[Any, ...]]:
    """The `ENTITIES_WIDTH` values of `entities`' flat form, `None` when it has none."""
    if not is_plain(entities, Entities):
        return None
    mask = _ENTITIES_FIELDS.mask(entities.__pydantic_fields_set__)
    e = entities.__dict__
    if mask is None or len(e) != 3:
        return None
    try:
        return (e["order_ids"], e["emails"], e["products"], mask)
    except KeyError:
        return None


def _parsed_group(
    keys: Sequence[str], flat: Sequence[Any], shared: Sequence[Any]
) -> list[tuple[str, ParsedTicket]]:
    """The pairs of a `ParsedGroup` unpickled from its keys, its items' flat values
    (`FLAT_WIDTH` each) and its entities' (`ENTITIES_WIDTH` each): they were valid when they
    were pickled, so each model is rebuilt without validation."""
    entities = [
        trusted(
            Entities,
            {"order_ids": order_ids, "emails": emails, "products": products},
            _ENTITIES_FIELDS.fields_set(mask),
        )
        for order_ids, emails, products, mask in zip(*[iter(shared)] * ENTITIES_WIDTH, strict=True)
    ]
    out: list[tuple[str, ParsedTicket]] = []
    append = out.append
    values = iter(flat)
    message_sets, source_set = _MESSAGE_FIELDS.fields_set, _SOURCE_SET
    for key, (
        message_id, session_id, channel, sender, subject, body, sent_at, customer_tier,
        message_mask, topic, partition, offset, base_priority, response_sla_minutes, text,
        known,
    ) in zip(keys, zip(*[values] * FLAT_WIDTH, strict=True), strict=True):  # fmt: skip
        message = _new(TicketMessage)  # `trusted`, written out
        _set_dict(
            message,
            {
                "message_id": message_id, "session_id": session_id, "channel": channel,
                "sender": sender, "subject": subject, "body": body, "sent_at": sent_at,
                "customer_tier": customer_tier,
            },
        )  # fmt: skip
        _set_fields_set(message, message_sets(message_mask))
        _set_extra(message, None)
        _set_private(message, None)
        source = _new(SourceRef)
        _set_dict(source, {"topic": topic, "partition": partition, "offset": offset})
        _set_fields_set(source, set(source_set))
        _set_extra(source, None)
        _set_private(source, None)
        item = _new(ParsedTicket)
        _set_parsed(
            item,
            {
                "message": message, "source": source, "base_priority": base_priority,
                "response_sla_minutes": response_sla_minutes,
                "text": body if text is None else text, "entities": entities[known],
            },
        )  # fmt: skip
        append((key, item))
    return out


@dataclass(frozen=True)
class Turn:
    """One earlier message of a session, as the session history keeps it."""

    message_id: str
    text: str
    sent_at: datetime


@dataclass(frozen=True)
class ContextTicket(ParsedTicket):
    """A parsed message with the session's earlier turns (oldest first, this one excluded).

    `replay` is set when the session still holds this `message_id` (a re-sent message); its
    history is then the turns that precede the first delivery, so later steps reproduce that
    delivery's output (and its deterministic ids) as long as none of those turns was evicted.
    """

    history: tuple[Turn, ...]
    replay: bool = field(default=False, kw_only=True)

    @classmethod
    def from_parsed(
        cls, parsed: ParsedTicket, history: tuple[Turn, ...], *, replay: bool = False
    ) -> ContextTicket:
        if type(parsed) is not ParsedTicket or cls is not ContextTicket:
            return _extended(parsed, ParsedTicket, cls, history=history, replay=replay)
        extended = _new(cls)  # `_extended`, written out for the one exact type
        values = extended.__dict__
        values.update(parsed.__dict__)
        values["history"] = history
        values["replay"] = replay
        return extended


@dataclass(frozen=True)
class RoutedTicket(ContextTicket):
    """A message with the route chosen for it.

    `route_enrichments` holds the provenance and cost of every LLM call the router made for this
    message (embedding and/or chat); it is empty when the lexical scorer decided. When the LLM
    chose the route, `scored_route` is the route the embedding scores put first and
    `route_conflict` says whether they clearly argued against the LLM's choice.
    """

    route: Route
    route_method: RouteMethod
    confidence: float
    route_enrichments: tuple[Enrichment, ...]
    scored_route: Optional[Route] = field(default=None, kw_only=True)
    route_conflict: bool = field(default=False, kw_only=True)

    @classmethod
    def from_context(
        cls,
        context: ContextTicket,
        *,
        route: Route,
        route_method: RouteMethod,
        confidence: float,
        route_enrichments: tuple[Enrichment, ...] = (),
        scored_route: Optional[Route] = None,
        route_conflict: bool = False,
    ) -> RoutedTicket:
        if not (type(confidence) is float and 0.0 < confidence < 1.0):
            confidence = min(1.0, max(0.0, confidence))  # a float strictly inside is kept as is
        if type(context) is not ContextTicket or cls is not RoutedTicket:
            return _extended(
                context,
                ContextTicket,
                cls,
                route=route,
                route_method=route_method,
                confidence=confidence,
                route_enrichments=route_enrichments,
                scored_route=scored_route,
                route_conflict=route_conflict,
            )
        extended = _new(cls)  # `_extended`, written out for the one exact type
        values = extended.__dict__
        values.update(context.__dict__)
        values["route"] = route
        values["route_method"] = route_method
        values["confidence"] = confidence
        values["route_enrichments"] = route_enrichments
        values["scored_route"] = scored_route
        values["route_conflict"] = route_conflict
        return extended


@dataclass(frozen=True)
class DraftedTicket(RoutedTicket):
    """A routed message with the worker's priority and drafted reply body."""

    priority: Priority
    reply: str
    enrichment: Enrichment
    prompt_version: str

    @classmethod
    def from_routed(
        cls,
        routed: RoutedTicket,
        *,
        priority: Priority,
        reply: str,
        enrichment: Enrichment,
        prompt_version: str,
    ) -> DraftedTicket:
        if type(routed) is not RoutedTicket or cls is not DraftedTicket:
            return _extended(
                routed,
                RoutedTicket,
                cls,
                priority=priority,
                reply=reply,
                enrichment=enrichment,
                prompt_version=prompt_version,
            )
        extended = _new(cls)  # `_extended`, written out for the one exact type
        values = extended.__dict__
        values.update(routed.__dict__)
        values["priority"] = priority
        values["reply"] = reply
        values["enrichment"] = enrichment
        values["prompt_version"] = prompt_version
        return extended


class InSession(Protocol):
    """A ticket at any step from `EnrichedTicket` on: its message and where it came from."""

    @property
    def message(self) -> TicketMessage: ...

    @property
    def source(self) -> SourceRef: ...


session_of: Callable[[InSession], str] = attrgetter("message.session_id")
"""The stream key of a ticket at any step: its session (`ticket.message.session_id`, read in C:
the flow keys every message by it)."""

source_of: Callable[[InSession], SourceRef] = attrgetter("source")
"""Where a ticket at any step came from, for its dead letters (`ticket.source`)."""
