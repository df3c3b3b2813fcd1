"""Support sessions for the ticket surge of `operators.surge` (plain Python, no Bytewax import).

A session is one customer (or employee) writing 1-5 messages on one channel:

- `email`: a subject, a customer address as sender, greeting, polite longer text, closing and
  sometimes a signature or the quoted earlier message; follow-ups hours apart;
- `chat`: short, informal, lower case, typos; follow-ups a few minutes apart;
- `it`: internal staff writing to the helpdesk (VPN, password reset, laptop, outage).

Every message has a true route (`schemas.tickets.Route`). Templates per route are filled with the
session's order id (`ORD-482913`), product (from `data/products.csv`), email address, amounts and
dates. Follow-ups ask for news ("any update on this?") or add detail, and keep the session's route;
now and then a follow-up turns to another topic, and its route changes with it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from typing import Any, Optional

from operators.parse import PRODUCTS_CSV, load_products

CUSTOMER_ROUTES = {
    "order_status": 22,
    "shipping_delay": 20,
    "refund": 14,
    "damaged_item": 12,
    "billing": 10,
    "account_access": 10,
    "general": 12,
}
STAFF_ROUTES = {"it_incident": 65, "account_access": 25, "general": 10}
CHANNELS = {"email": 40, "chat": 45, "it": 15}
TIERS = {"standard": 75, "gold": 18, "platinum": 7}
SESSION_SIZES = {1: 40, 2: 25, 3: 15, 4: 12, 5: 8}
GAP_SECONDS = {"email": (1200.0, 5 * 3600.0), "chat": (20.0, 360.0), "it": (180.0, 3600.0)}

CUSTOMER_TEXT: dict[str, tuple[str, ...]] = {
    "order_status": (
        "Could you tell me where my order {order} is? I have no tracking information yet.",
        "I placed order {order} for the {product} on {date}. What is its current status?",
        "What is the status of my order {order}?",
        "I ordered a {product} last week and the order page still says 'processing'.",
        "Has order {order} been dispatched yet? I need to know when to expect it.",
        "Can you give me the tracking number for order {order}?",
        "The tracking link for {order} shows nothing yet. Has the package left your warehouse?",
        "I'm checking in on order {order} - when will it arrive?",
        "I got the order confirmation for the {product}, but I can't tell whether it has shipped.",
        "Is there an estimated delivery date for {order}?",
        "Could you confirm that my order {order} was received and is being prepared?",
        "I want to track my {product} order, the number is {order}.",
    ),
    "refund": (
        "I returned the {product} two weeks ago and still have no refund for order {order}.",
        "Please refund order {order}, I cancelled it before it shipped.",
        "I'd like a refund for the {product}, it's not what I expected.",
        "When will the refund for {order} be credited back to my card?",
        "I was told I would get my money back for {order} but nothing has arrived in my account.",
        "Can I return the {product} and get a full refund?",
        "I want my money back for order {order}. The item doesn't do what the listing promised.",
        "How long does a refund usually take? I sent back order {order} on {date}.",
        "Your portal says my refund for {order} is approved, but the {amount} EUR never came.",
        "I changed my mind about the {product} and would like to return it for a refund.",
        "Please process the refund for the returned {product} (order {order}).",
        "I got a partial refund for {order} instead of the full {amount} EUR. Please fix that.",
    ),
    "shipping_delay": (
        "My package for order {order} was supposed to arrive on {date} and it is still not here.",
        "The delivery of my {product} is late. The tracking hasn't moved for {days} days.",
        "Order {order} has been stuck 'in transit' for {days} days. Why is it taking so long?",
        "The estimated delivery date for {order} keeps getting pushed back.",
        "I paid for express shipping on {order} but it is already {days} days late.",
        "Tracking says my parcel is held at the hub and delayed. When will it be delivered?",
        "The courier missed the delivery window for {order} again.",
        "My {product} is a birthday present and the shipment is delayed. Can you speed it up?",
        "Why is my delivery delayed? Order {order} shows 'exception' in the tracking.",
        "It's been {days} days past the promised delivery date for {order}.",
        "Shipment {order} has said 'out for delivery' since yesterday and nothing arrived.",
        "The carrier says my parcel is late because of the weather. New delivery date for {order}?",
    ),
    "damaged_item": (
        "The {product} from order {order} arrived broken.",
        "My package arrived damaged - the box was crushed and the {product} is cracked.",
        "I received the {product} today but it has a deep scratch across the front.",
        "The {product} I got in order {order} is defective and won't turn on.",
        "Half of the items in order {order} were smashed when the parcel arrived.",
        "The glass part of my {product} was shattered on arrival.",
        "My {product} came with missing parts and a dented casing.",
        "The parcel was soaking wet and the {product} inside is ruined.",
        "I'd like a replacement, the {product} from {order} arrived damaged.",
        "Opened the box and the {product} was in pieces. Very disappointed.",
        "The {product} is leaking, it must have been damaged during shipping.",
        "Received order {order} in a torn package and the {product} is faulty.",
    ),
    "account_access": (
        "I can't log in to my account, it says my password is wrong.",
        "I forgot my password and the reset email never arrives at {email}.",
        "My account has been locked after too many login attempts.",
        "I'm not receiving the two-factor authentication code, so I can't sign in.",
        "How do I change the email address on my account? It is still {email}.",
        "The password reset link says it has expired. Can you help me get into my account?",
        "Someone changed my account password, I think my account was hacked.",
        "I can't access my account to check my orders. Login keeps failing.",
        "I get an 'account disabled' error when signing in with {email}.",
        "My login worked yesterday but today it says the user does not exist.",
        "Please unlock my account, the username is {email}.",
        "Sign in with Google no longer works for my account.",
    ),
    "billing": (
        "I was charged twice for order {order}.",
        "There is a charge of {amount} EUR on my credit card that I don't recognise.",
        "Can you send me an invoice for order {order}? I need it for my company.",
        "The price I paid for the {product} is higher than the price shown at checkout.",
        "My payment was declined but the money was still taken from my bank account.",
        "Please update the billing address on invoice {invoice}.",
        "I used a discount code but it was not applied to order {order}.",
        "Why was I charged a {amount} EUR subscription fee? I never signed up for that.",
        "The VAT on invoice {invoice} is wrong.",
        "I'd like to change the payment method saved on my account.",
        "I got billed {amount} EUR for shipping although the site said shipping is free.",
        "Can you explain the extra charge on my last statement for {order}?",
    ),
    "general": (
        "What are your opening hours for customer service?",
        "Do you ship to Norway?",
        "Is the {product} compatible with a European plug?",
        "Do you offer gift wrapping?",
        "I'd like to give some feedback about your website.",
        "Are there any Black Friday deals on the {product}?",
        "How can I unsubscribe from your newsletter?",
        "Do you have a physical store where I can see the {product}?",
        "What is the warranty period for the {product}?",
        "Can I choose a different colour for an item before ordering?",
        "Do you sell gift cards?",
        "Is the {product} going to be back in stock soon?",
    ),
}

CHAT_TEXT: dict[str, tuple[str, ...]] = {
    "order_status": (
        "wheres my order {order}",
        "order status?? {order}",
        "has my {product} shipped yet",
        "when does {order} arrive",
        "track order {order} pls",
        "did u send my order",
    ),
    "refund": (
        "i want a refund",
        "refund for {order} pls",
        "still no refund for my {product}",
        "money back pls, returned it already",
        "where is my refund",
        "how do i get a refund",
    ),
    "shipping_delay": (
        "my package is late",
        "{order} still not delivered",
        "delivery delayed again??",
        "tracking hasnt moved in {days} days",
        "why is shipping so slow",
        "parcel stuck in transit",
    ),
    "damaged_item": (
        "my {product} came broken",
        "item arrived damaged",
        "box was crushed and {product} is cracked",
        "got a broken {product}",
        "{product} doesnt work out of the box",
        "package damaged",
    ),
    "account_access": (
        "cant log in",
        "password reset not working",
        "locked out of my account",
        "not getting the login code",
        "account locked pls help",
        "forgot password",
    ),
    "billing": (
        "charged twice??",
        "why was i charged {amount}",
        "need an invoice for {order}",
        "discount code didnt work",
        "wrong price charged",
        "unknown charge on my card",
    ),
    "general": (
        "do u ship to canada",
        "are u open on sunday",
        "any deals on the {product}",
        "is the {product} in stock",
        "gift cards?",
        "how long is the warranty",
    ),
}

STAFF_TEXT: dict[str, tuple[str, ...]] = {
    "it_incident": (
        "The VPN keeps disconnecting every few minutes, I can't reach the warehouse dashboard.",
        "My laptop won't boot, it's stuck on the BIOS screen.",
        "Is the order management system down? I get a 502 error on every page.",
        "Outlook crashes every time I open a calendar invite.",
        "The label printer in packing station 3 is offline.",
        "The shared drive is not mounting since this morning.",
        "VPN client says 'authentication server unreachable'.",
        "My laptop screen is flickering and the keyboard stopped working.",
        "Slack and email are both unreachable from the office network - is there an outage?",
        "The barcode scanners at dock 2 lost their Wi-Fi connection.",
        "Video calls drop after a minute on my work laptop.",
        "The reporting dashboard shows no data since the last deployment.",
        "Getting a certificate error when connecting to the VPN gateway.",
        "Warehouse handheld terminal keeps rebooting.",
    ),
    "account_access": (
        "Please reset my password, I'm locked out of my workstation.",
        "My MFA token was on my old phone, I need it re-enrolled.",
        "I can't log in to SSO, it says my account is disabled.",
        "New starter {name} needs access to the shipping portal.",
        "My password expired while I was on holiday and now I can't sign in.",
        "Access denied when logging in to the admin console with {email}.",
        "I need my Active Directory account unlocked.",
        "Password reset for the ERP system please, user {email}.",
    ),
    "general": (
        "Can I get a second monitor for my desk?",
        "How do I request a software licence for the diagram tool?",
        "Where can I find the IT onboarding guide?",
        "Can you install the new version of the spreadsheet app on my laptop?",
        "Is there a policy for using personal devices at work?",
        "When is the next scheduled maintenance window?",
    ),
}

SUBJECTS: dict[str, tuple[str, ...]] = {
    "order_status": (
        "Order status {order}",
        "Where is my order?",
        "Question about order {order}",
        "Tracking information",
        "Has my order shipped?",
    ),
    "refund": (
        "Refund request - {order}",
        "Refund not received",
        "Return and refund",
        "Money back for {order}",
        "Refund status",
    ),
    "shipping_delay": (
        "Late delivery - {order}",
        "Delivery delayed",
        "Package still not arrived",
        "Shipment stuck in transit",
        "Delayed parcel",
    ),
    "damaged_item": (
        "Damaged item received",
        "Broken {product}",
        "Order {order} arrived damaged",
        "Defective product",
        "Replacement needed",
    ),
    "account_access": (
        "Cannot log in",
        "Password reset",
        "Account locked",
        "Login problem",
        "2FA code not received",
    ),
    "billing": (
        "Double charge",
        "Invoice request {order}",
        "Billing question",
        "Incorrect charge",
        "Payment issue",
    ),
    "general": (
        "Question",
        "Product question",
        "General enquiry",
        "Feedback",
        "Information request",
    ),
    "it_incident": (
        "VPN issue",
        "Laptop problem",
        "System outage?",
        "Printer offline",
        "Urgent: cannot work",
    ),
}

FOLLOW_UPS: dict[str, tuple[str, ...]] = {
    "email": (
        "I am following up on my previous email about {order}. Is there any update on this?",
        "Any update on this?",
        "I still haven't heard back from you. Could someone please look into this?",
        "It has been {days} days since I first contacted you and I still have no answer.",
        "Could you please escalate this? I need a resolution soon.",
        "Just checking in again - any news regarding my request?",
        "Please reply, this is the third time I am writing about this.",
    ),
    "chat": (
        "any update?",
        "hello??",
        "still waiting...",
        "r u there",
        "so whats happening with {order}",
        "can i talk to a human pls",
        "??",
        "ok and now?",
    ),
    "it": (
        "Any update on this ticket?",
        "Still not working, this is blocking my work.",
        "Is there an ETA for a fix?",
        "Could someone take a look please? Still broken.",
        "Following up - any news?",
    ),
}

GENERIC_FOLLOW_UPS = {
    channel: tuple(text for text in texts if "{order}" not in text)
    for channel, texts in FOLLOW_UPS.items()
}
ORDER_ROUTES = frozenset({"order_status", "refund", "shipping_delay", "damaged_item", "billing"})

GREETINGS = (
    "Hello,",
    "Hi,",
    "Dear Customer Service,",
    "Hi team,",
    "Good morning,",
    "Good afternoon,",
    "To whom it may concern,",
)
CONTEXT = (
    "My account email is {email}.",
    "I would appreciate a quick reply.",
    "Thank you for your help.",
    "Thanks for looking into this.",
    "I hope you can help me with this.",
)
QUOTE_HEADERS = (
    "On Friday, {me} <{email}> wrote:\n> ",
    "-----Original Message-----\nFrom: {me} <{email}>\n\n",
)
CLOSINGS = (
    "Kind regards,",
    "Best regards,",
    "Thanks in advance,",
    "Many thanks,",
    "Best,",
    "Sincerely,",
)
SIGNATURES = (
    "Sent from my iPhone",
    "Sent from Outlook for Android",
    "--\nThis email and any attachments are confidential.",
)
FIRST_NAMES = (
    "Anna",
    "Ben",
    "Chloe",
    "Daniel",
    "Elif",
    "Farid",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Kavya",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Umar",
    "Vera",
    "Wei",
    "Yara",
)
LAST_NAMES = (
    "Jansen",
    "Okafor",
    "Schmidt",
    "Rossi",
    "Kowalski",
    "Nguyen",
    "Garcia",
    "Dubois",
    "Haddad",
    "Larsen",
    "Tanaka",
    "Moreau",
    "Silva",
    "Novak",
    "Murphy",
    "Costa",
    "Fischer",
    "Ahmed",
    "Berg",
    "Lopez",
)
MAIL_DOMAINS = ("mailbox.example", "inbox.example.com", "post.example.net", "webmail.example.org")
STAFF_DOMAIN = "staff.example.org"
CHAT_OPENERS = ("", "", "", "hi ", "hey ", "hello, ", "hi there ")
CHAT_ENDINGS = ("", "", "", " pls", " ??", " asap", " thx", "!!")
SWITCH_LEADS = {"email": "One more thing: ", "chat": "also ", "it": "Another issue: "}
DETAIL_LEADS = {"email": "To add to my previous message: ", "chat": "", "it": "More detail: "}


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pick(rng: random.Random, weights: dict[Any, int]) -> Any:
    return rng.choices(tuple(weights), tuple(weights.values()))[0]


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
        self.sessions, self.messages = count(1), count(1)

    def next_id(self) -> str:
        return f"MSG-{self.tag}-{next(self.messages):09d}"

    def new_entity(self) -> _Session:
        rng = self.rng
        channel = _pick(rng, CHANNELS)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        values = self._values(first, last, channel)
        routes = STAFF_ROUTES if channel == "it" else CUSTOMER_ROUTES
        route = _pick(rng, routes)
        opening = self._text(channel, route)
        messages = [self._first(channel, route, opening, values)]
        for _ in range(_pick(rng, SESSION_SIZES) - 1):
            switched = rng.random() < 0.06
            route = _pick(rng, routes) if switched else route
            messages.append(self._follow_up(channel, route, switched, opening, values, messages[0]))
        sender = values["email"] if channel != "chat" else self._handle(first)
        tier = "standard" if channel == "it" else _pick(rng, TIERS)
        session_id = f"SES-{self.tag}-{next(self.sessions):08d}"
        return _Session(session_id, channel, sender, tier, messages)

    def step(self, entity: _Session, at: datetime) -> tuple[dict, str, Optional[float]]:
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
        payload["sent_at"] = _iso(at)
        payload["customer_tier"] = entity.tier
        done = entity.pos >= len(entity.messages)
        return payload, message.route, None if done else entity.messages[entity.pos].gap

    def _values(self, first: str, last: str, channel: str) -> dict[str, str]:
        rng = self.rng
        if channel == "it":
            address = f"{first[0]}.{last}@{STAFF_DOMAIN}"
        else:
            address = f"{first}.{last}{rng.randrange(1, 100)}@{rng.choice(MAIL_DOMAINS)}"
        return {
            "me": f"{first} {last}",
            "email": address.lower(),
            "order": f"ORD-{rng.randrange(100_000, 1_000_000)}",
            "product": rng.choice(self.products),
            "amount": f"{rng.randrange(9, 400)}.{rng.randrange(100):02d}",
            "days": str(rng.randint(2, 12)),
            "date": f"{rng.randint(10, 26)} November",
            "invoice": f"INV-{rng.randrange(100_000, 1_000_000)}",
            "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
        }

    def _handle(self, first: str) -> str:
        if self.rng.random() < 0.3:
            return f"guest-{self.rng.randrange(10_000, 100_000)}"
        return f"{first.lower()}{self.rng.randrange(10, 100)}"

    def _text(self, channel: str, route: str) -> str:
        """A message template for the route, in the channel's register."""
        if channel == "it":
            return self.rng.choice(STAFF_TEXT[route])
        if channel == "email":
            return self.rng.choice(CUSTOMER_TEXT[route])
        short = route in CHAT_TEXT and self.rng.random() < 0.45
        return self._chatty(self.rng.choice(CHAT_TEXT[route] if short else CUSTOMER_TEXT[route]))

    def _first(self, channel: str, route: str, text: str, values: dict[str, str]) -> _Message:
        subject = None
        if channel == "email" or (channel == "it" and self.rng.random() < 0.6):
            subject = self.rng.choice(SUBJECTS.get(route, SUBJECTS["general"]))
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
        rng = self.rng
        if switched:
            text = SWITCH_LEADS[channel] + self._text(channel, route)
        elif rng.random() < 0.55:
            text = rng.choice(
                FOLLOW_UPS[channel] if route in ORDER_ROUTES else GENERIC_FOLLOW_UPS[channel]
            )
        else:
            text = DETAIL_LEADS[channel] + self._text(channel, route)
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
        rng = self.rng
        context = " " + rng.choice(CONTEXT) if rng.random() < 0.5 else ""
        body = f"{rng.choice(GREETINGS)}\n\n{text}{context}\n\n{rng.choice(CLOSINGS)}\n" + "{me}"
        if rng.random() < 0.25:
            body += "\n\n" + rng.choice(SIGNATURES)
        if quote is not None:
            body += "\n\n" + rng.choice(QUOTE_HEADERS) + quote
        return body

    def _staff(self, text: str) -> str:
        greeting = self.rng.choice(("Hi IT, ", "Hello helpdesk, ", "Hi, ", ""))
        thanks = self.rng.choice(("", " Thanks!", " Thanks, {me}"))
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
        return rng.choice(CHAT_OPENERS) + text + rng.choice(CHAT_ENDINGS)

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

    def unknown_reference(self, payload: dict) -> dict:
        raise ValueError("tickets carry no reference ids")

    def malformed(self, kind: str, payload: dict) -> dict:
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
