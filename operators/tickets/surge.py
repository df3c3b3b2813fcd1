"""Support sessions for the ticket surge of `operators.surge` (plain Python, no Bytewax import).

A session is one customer (or employee) writing 1-5 messages on one channel:

- `email`: a subject, a customer address as sender, greeting, polite longer text, closing and
  sometimes a signature or the quoted earlier message; follow-ups hours apart;
- `chat`: short, informal, lower case, typos; follow-ups a few minutes apart;
- `it`: internal staff writing to the helpdesk (VPN, password reset, laptop, outage).

Every message has a true route (`schemas.tickets.Route`). Templates per route (in
`data/templates/ticket_*.json`) are filled with the session's order id (`ORD-482913`), product
(from `data/products.csv`), email address, amounts and dates. Follow-ups ask for news ("any update
on this?") or add detail, and keep the session's route; now and then a follow-up turns to another
topic, and its route changes with it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from typing import Any, Optional

from operators.runtime.records import RawRecord
from operators.surge.engine import SURGE_START, Generated, Weighted, iso_utc, run_surge
from operators.surge.templates import TicketTextNeeds, load_ticket_texts
from operators.tickets.parse import PRODUCTS_CSV, load_products

CUSTOMER_ROUTES = Weighted.of(
    {
        "order_status": 22,
        "shipping_delay": 20,
        "refund": 14,
        "damaged_item": 12,
        "billing": 10,
        "account_access": 10,
        "general": 12,
    }
)
STAFF_ROUTES = Weighted.of({"it_incident": 65, "account_access": 25, "general": 10})
CHANNELS = Weighted.of({"email": 40, "chat": 45, "it": 15})
TIERS = Weighted.of({"standard": 75, "gold": 18, "platinum": 7})
SESSION_SIZES = Weighted.of({1: 40, 2: 25, 3: 15, 4: 12, 5: 8})
GAP_SECONDS = {"email": (1200.0, 5 * 3600.0), "chat": (20.0, 360.0), "it": (180.0, 3600.0)}
ORDER_ROUTES = frozenset({"order_status", "refund", "shipping_delay", "damaged_item", "billing"})
PLACEHOLDERS = frozenset(  # the `{names}` that `TicketFlow._values` fills in
    {"me", "email", "order", "product", "amount", "days", "date", "invoice", "name"}
)
TEXT_NEEDS = TicketTextNeeds(
    CUSTOMER_ROUTES.options, STAFF_ROUTES.options, CHANNELS.options, PLACEHOLDERS
)


@dataclass(frozen=True)
class _Message:
    gap: float  # seconds after the previous message of the session (0 for the first)
    route: str
    body: str
    subject: Optional[str] = None


@dataclass
class _Session:
    session_id: str
    channel: str
    sender: str
    tier: str
    messages: list[_Message]
    pos: int = 0


class TicketFlow:
    """Support sessions on email, chat and the internal IT channel, with their true routes."""

    key_field, id_field, time_field, text_field = "session_id", "message_id", "sent_at", "body"
    malformed_kinds = ("wrong_type", "unknown_channel", "empty_body", "huge_body", "unknown_tier")
    has_references = False

    def __init__(self, rng: random.Random, tag: str) -> None:
        self.rng, self.tag = rng, tag
        self.products = load_products()
        if not self.products:
            raise ValueError(f"no product names in {PRODUCTS_CSV}")
        self.texts = load_ticket_texts(TEXT_NEEDS)
        self.sessions, self.messages = count(1), count(1)

    def next_id(self) -> str:
        return f"MSG-{self.tag}-{next(self.messages):09d}"

    def new_entity(self) -> _Session:
        rng, texts = self.rng, self.texts
        channel = CHANNELS.pick(rng)
        first, last = rng.choice(texts.first_names), rng.choice(texts.last_names)
        values = self._values(first, last, channel)
        routes = STAFF_ROUTES if channel == "it" else CUSTOMER_ROUTES
        route = routes.pick(rng)
        opening = self._text(channel, route)
        messages = [self._first(channel, route, opening, values)]
        for _ in range(SESSION_SIZES.pick(rng) - 1):
            switched = rng.random() < 0.06
            route = routes.pick(rng) if switched else route
            messages.append(self._follow_up(channel, route, switched, opening, values, messages[0]))
        sender = values["email"] if channel != "chat" else self._handle(first)
        tier = "standard" if channel == "it" else TIERS.pick(rng)
        session_id = f"SES-{self.tag}-{next(self.sessions):08d}"
        return _Session(session_id, channel, sender, tier, messages)

    def step(self, entity: _Session, at: datetime) -> tuple[dict[str, Any], str, Optional[float]]:
        message = entity.messages[entity.pos]
        entity.pos += 1
        payload = {
            "message_id": self.next_id(),
            "session_id": entity.session_id,
            "channel": entity.channel,
            "sender": entity.sender,
        }
        if message.subject is not None:
            payload["subject"] = message.subject
        payload["body"] = message.body
        payload["sent_at"] = iso_utc(at)
        payload["customer_tier"] = entity.tier
        done = entity.pos >= len(entity.messages)
        return payload, message.route, None if done else entity.messages[entity.pos].gap

    def _values(self, first: str, last: str, channel: str) -> dict[str, str]:
        rng, texts = self.rng, self.texts
        if channel == "it":
            address = f"{first[0]}.{last}@{texts.staff_domain}"
        else:
            address = f"{first}.{last}{rng.randrange(1, 100)}@{rng.choice(texts.mail_domains)}"
        return {
            "me": f"{first} {last}",
            "email": address.lower(),
            "order": f"ORD-{rng.randrange(100_000, 1_000_000)}",
            "product": rng.choice(self.products),
            "amount": f"{rng.randrange(9, 400)}.{rng.randrange(100):02d}",
            "days": str(rng.randint(2, 12)),
            "date": f"{rng.randint(10, 26)} November",
            "invoice": f"INV-{rng.randrange(100_000, 1_000_000)}",
            "name": f"{rng.choice(texts.first_names)} {rng.choice(texts.last_names)}",
        }

    def _handle(self, first: str) -> str:
        if self.rng.random() < 0.3:
            return f"guest-{self.rng.randrange(10_000, 100_000)}"
        return f"{first.lower()}{self.rng.randrange(10, 100)}"

    def _text(self, channel: str, route: str) -> str:
        """A message template for the route, in the channel's register."""
        texts = self.texts
        if channel == "it":
            return self.rng.choice(texts.staff[route])
        if channel == "email":
            return self.rng.choice(texts.customer[route])
        short = route in texts.chat and self.rng.random() < 0.45
        return self._chatty(self.rng.choice(texts.chat[route] if short else texts.customer[route]))

    def _first(self, channel: str, route: str, text: str, values: dict[str, str]) -> _Message:
        subject = None
        if channel == "email" or (channel == "it" and self.rng.random() < 0.6):
            subjects = self.texts.subjects
            subject = self.rng.choice(subjects.get(route, subjects["general"]))
        if channel == "email":
            text = self._email(text)
        elif channel == "it":
            text = self._staff(text)
        return self._message(0.0, route, channel, text, subject, values)

    def _follow_up(
        self,
        channel: str,
        route: str,
        switched: bool,
        opening: str,
        values: dict[str, str],
        first: _Message,
    ) -> _Message:
        rng, texts = self.rng, self.texts
        if switched:
            text = texts.switch_leads[channel] + self._text(channel, route)
        elif rng.random() < 0.55:
            follow_ups = texts.follow_ups if route in ORDER_ROUTES else texts.generic_follow_ups
            text = rng.choice(follow_ups[channel])
        else:
            text = texts.detail_leads[channel] + self._text(channel, route)
        if channel == "email":
            text = self._email(text, quote=opening if rng.random() < 0.3 else None)
        subject = f"Re: {first.subject}" if channel == "email" and first.subject else None
        gap = rng.uniform(*GAP_SECONDS[channel])
        return self._message(gap, route, channel, text, subject, values)

    def _message(
        self,
        gap: float,
        route: str,
        channel: str,
        text: str,
        subject: Optional[str],
        values: dict[str, str],
    ) -> _Message:
        body = text.format_map(values)
        if channel == "chat" and self.rng.random() < 0.04:
            body = body.upper()
        return _Message(gap, route, body, subject.format_map(values) if subject else None)

    def _email(self, text: str, quote: Optional[str] = None) -> str:
        rng, texts = self.rng, self.texts
        context = " " + rng.choice(texts.context) if rng.random() < 0.5 else ""
        greeting, closing = rng.choice(texts.greetings), rng.choice(texts.closings)
        body = f"{greeting}\n\n{text}{context}\n\n{closing}\n" + "{me}"
        if rng.random() < 0.25:
            body += "\n\n" + rng.choice(texts.signatures)
        if quote is not None:
            body += "\n\n" + rng.choice(texts.quote_headers) + quote
        return body

    def _staff(self, text: str) -> str:
        greeting = self.rng.choice(self.texts.staff_greetings)
        thanks = self.rng.choice(self.texts.staff_thanks)
        return greeting + text + thanks

    def _chatty(self, text: str) -> str:
        """Informal chat register: lower case start, no final stop, typos, fillers."""
        rng = self.rng
        text = text.rstrip(".!")
        text = text[0].lower() + text[1:]
        if rng.random() < 0.5:
            text = text.replace("'", "")
        if rng.random() < 0.4:
            text = self._typo(text)
        return rng.choice(self.texts.chat_openers) + text + rng.choice(self.texts.chat_endings)

    def _typo(self, text: str) -> str:
        words = text.split(" ")
        candidates = [i for i, word in enumerate(words) if word.isalpha() and len(word) >= 5]
        if not candidates:
            return text
        i = self.rng.choice(candidates)
        word, j = words[i], self.rng.randrange(1, len(words[i]) - 2)
        if self.rng.random() < 0.5:
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
        else:
            words[i] = word[:j] + word[j + 1 :]
        return " ".join(words)

    def unknown_reference(self, payload: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("tickets carry no reference ids")

    def malformed(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        if kind == "wrong_type":
            return {**payload, "body": rng.randrange(1000, 100_000)}
        if kind == "unknown_channel":
            return {**payload, "channel": rng.choice(("fax", "sms", "carrier_pigeon"))}
        if kind == "empty_body":
            return {**payload, "body": rng.choice(("", "   ", "\n\n"))}
        if kind == "huge_body":
            log = "".join(
                f"12:{i // 60:02d}:{i % 60:02d} ERROR sync failed; retrying\n" for i in range(300)
            )
            return {**payload, "body": "Please see the log below.\n" + log}
        if kind == "unknown_tier":
            return {**payload, "customer_tier": "diamond"}
        raise ValueError(f"unknown malformed kind {kind!r}")


# --- public API -----------------------------------------------------------------------------------


def iter_ticket_surge(
    *,
    seed: int = 7,
    steady_events: int = 2000,
    burst_factor: int = 10,
    start: datetime = SURGE_START,
    topic: str = "tickets.messages",
) -> Iterator[Generated]:
    """Support messages of a surge, each with its kind and true route (see the module docstring)."""
    yield from run_surge(TicketFlow, seed, steady_events, burst_factor, start, topic)


def ticket_surge(
    *,
    seed: int = 7,
    steady_events: int = 2000,
    burst_factor: int = 10,
    start: datetime = SURGE_START,
    topic: str = "tickets.messages",
) -> Iterator[RawRecord]:
    """The records of `iter_ticket_surge`."""
    for generated in iter_ticket_surge(
        seed=seed, steady_events=steady_events, burst_factor=burst_factor, start=start, topic=topic
    ):
        yield generated.record
