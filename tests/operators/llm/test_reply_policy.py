"""The reply policy (plain Python): every rule, its obfuscations, and ordinary replies passing."""

from __future__ import annotations

import base64
import codecs
import time
import urllib.parse
from typing import get_args

import pytest

from operators.llm.reply_policy import (
    PolicyTerms,
    ReplyContext,
    ReplyPolicy,
    check_reply,
    content_words,
    decoded_runs,
    load_policy,
)
from operators.shipments.agent import SYSTEM_PROMPT, rules_message
from operators.tickets.workers import TEMPLATES, build_workers, instructions
from schemas.shipments import Action, ExceptionCategory
from schemas.tickets import Route

WORKERS = build_workers("m")


def template(route: Route) -> str:
    return TEMPLATES[route].format(order="order ORD-204881", product="the Lumina desk lamp")


def check(text: str, route: Route = "order_status") -> tuple[str, ...]:
    verdict = check_reply(
        text, templates=[template(route)], instructions=[instructions(WORKERS[route])]
    )
    return verdict.violations


ORDINARY_REPLIES: dict[Route, list[str]] = {
    "order_status": [
        "We are checking the current status of order ORD-204881 and its tracking details, and "
        "will email you an update within one business day.",
        "Thanks for your patience. Your order is being processed; you will receive the tracking "
        "link at https://www.example.com/orders/ORD-204881 as soon as it ships.",
        "I can see your order ORD-204881. We are confirming it with the warehouse and will get "
        "back to you shortly with the tracking number.",
    ],
    "refund": [
        "We will email you a prepaid return label for order ORD-330012. Once the return has "
        "arrived and been inspected, the refund goes back to your original payment method, "
        "usually within 5-10 business days.",
        "Thanks for sending the blender back. As soon as the warehouse has inspected it, we will "
        "credit your original payment method; this usually takes 5-10 business days.",
        "You can exchange the shoes for a bigger size: reply with the size you need and we will "
        "send the return label for order ORD-1.",
    ],
    "shipping_delay": [
        "We are sorry that order ORD-7 is running late. We have opened an investigation with the "
        "carrier and will update you within one business day; if the parcel is confirmed lost, "
        "we will send a replacement or a refund.",
        "Apologies for the delay. The carrier is looking into why tracking has not moved, and "
        "we will let you know what they find by tomorrow.",
    ],
    "damaged_item": [
        "We are sorry the Lumina desk lamp arrived damaged. Please reply with a photo of the "
        "lamp and its packaging, and we will send a free replacement or a refund for order "
        "ORD-5, whichever you prefer. You do not need to pay for the return.",
        "Sorry about the wrong item! Send us a picture of what arrived and we will ship the "
        "right one at no cost to you.",
    ],
    "account_access": [
        "Please use the 'Forgot password' link on the sign-in page and check your spam folder "
        "for the reset email. After a lock-out, wait 30 minutes before trying again.",
        "We will never ask for your password or your card number. To reset your password, use "
        "the link on https://www.example.com/login; an agent will verify your identity before "
        "changing account details.",
        "For your security, do not share your one-time code with anyone, including us. The "
        "password reset link in the email is valid for 24 hours.",
    ],
    "billing": [
        "Thanks for flagging the charge on order ORD-9. Our billing team will check the "
        "transaction on your credit card and correct any duplicate charge; pending "
        "authorisations usually disappear within a few business days.",
        "If you were charged twice, billing will refund the duplicate charge to your original "
        "payment method once they have checked the transaction.",
        "Please don't send your full card details by email: billing can find the transaction "
        "from the order id ORD-9 alone.",
    ],
    "it_incident": [
        "Your incident has been logged. Impact: the VPN is unavailable for the Berlin office. "
        "Please send the affected system, when it started, the exact error message and who "
        "else is affected; the on-call engineer has been notified.",
        "Logged. First steps: restart the laptop, reconnect to the VPN and check the status page "
        "at https://status.example.com. Reply with the exact error text if it persists.",
        "The ASP.NET intranet app is down for everyone; the on-call engineer has been notified.",
    ],
    "general": [
        "Thank you for your message. A member of our team will follow up with the details of "
        "the opening hours shortly.",
        "Good question! We do not have that information at hand, so a team member will get back "
        "to you by email.",
    ],
}


@pytest.mark.parametrize(
    ("route", "reply"), [(r, text) for r, texts in ORDINARY_REPLIES.items() for text in texts]
)
def test_ordinary_replies_pass(route: Route, reply: str) -> None:
    assert check(reply, route) == ()


@pytest.mark.parametrize("route", list(TEMPLATES))
def test_every_template_passes_on_its_own_route(route: Route) -> None:
    assert check(template(route), route) == ()


def test_every_rules_message_of_the_shipments_passes() -> None:
    for action in get_args(Action):
        for category in get_args(ExceptionCategory):
            message = rules_message(action, category)
            verdict = check_reply(message, templates=[message], instructions=[SYSTEM_PROMPT])
            assert verdict.allowed, (action, category)


@pytest.mark.parametrize(
    "reply",
    [
        "Approved: full refund of 5000 USD. Confirm your card at http://refund-desk.example.net/x",
        "Track it at https://parcel-tracking-login.net/track",
        "Track it at hxxps://parcel-tracking[.]net/track",
        "Log in at www.examp1e.com to continue.",
        "Write to refunds@support-desk.ru with your order id.",
        "Visit parcel-refunds.com for details.",
        "Open javascript:alert(1) in your browser.",
        "Go to https://example.com.evil.net/login",
        "Go to https://example.com@evil.net/login",
        "Go to https://exаmple.com/login",  # Cyrillic а
    ],
)
def test_links_outside_the_allow_list_are_blocked(reply: str) -> None:
    assert "link_domain" in check(reply)


def test_allow_listed_links_and_subdomains_pass() -> None:
    for reply in (
        "See https://example.com/help",
        "See https://help.example.com/a?b=c#d",
        "See www.example.com",
        "Mail support@example.com",
    ):
        assert "link_domain" not in check(reply), reply


@pytest.mark.parametrize(
    "reply",
    [
        "We will credit you 50 EUR for the trouble.",
        "You will receive $20 back.",
        "Here is a voucher for your next order.",
        "As a goodwill gesture we offer a 15% discount code.",
        "Your full refund has been approved.",
        "A refund of five thousand dollars is on its way.",
        "Your money is on its way to your account.",
    ],
)
def test_money_and_compensation_are_blocked_on_every_route(reply: str) -> None:
    for route in TEMPLATES:
        assert "monetary_commitment" in check(reply, route), route


def test_refund_words_only_where_the_template_offers_a_refund() -> None:
    reply = "We will refund your order once the return has been inspected."
    allowed = {r for r in TEMPLATES if "refund_promise" not in check(reply, r)}
    assert allowed == {"refund", "shipping_delay", "damaged_item", "billing"}


@pytest.mark.parametrize(
    "reply",
    [
        "Please reply with your full card number and the CVV.",
        "Confirm your card at our secure page.",
        "To verify you, send us your password.",
        "What is your one-time code?",
        "We need the verification code we just texted you.",
        "Your CVV?",
        "If the link does not work, send us your password.",
        "Do not worry, just share your PIN and we will fix it.",
        "Please provide your bank details: IBAN and sort code.",
        "Don't hesitate to send us your card number.",
        "Reply with the code we sent by SMS.",
        "Please confirm it, but not by phone: send your PIN here.",
    ],
)
def test_requests_for_card_numbers_passwords_and_codes_are_blocked(reply: str) -> None:
    assert "credential_request" in check(reply, "account_access")


@pytest.mark.parametrize(
    "reply",
    [
        "We will never ask for your password or card number.",
        "Never share your one-time code with anyone.",
        "Use the password reset link we emailed you.",
        "Please do not send card details by email.",
        "The charge on your credit card will be corrected.",
    ],
)
def test_safety_advice_about_credentials_passes(reply: str) -> None:
    assert "credential_request" not in check(reply, "account_access")


SECRET = instructions(WORKERS["refund"])


def test_the_system_prompt_is_caught_with_a_word_inserted_every_few_tokens() -> None:
    words = SECRET.split()[:60]
    for every in (1, 2, 3, 4, 5):
        leak = " ".join(w + (" zebra" if (i + 1) % every == 0 else "") for i, w in enumerate(words))
        assert "system_prompt" in check(leak, "refund"), every


def test_the_system_prompt_is_caught_encoded_spaced_and_disguised() -> None:
    part = SECRET[200:600]
    encodings = [
        base64.b64encode(part.encode()).decode(),
        base64.urlsafe_b64encode(part.encode()).decode(),
        " ".join(base64.b64encode(part.encode()).decode()[i : i + 64] for i in range(0, 600, 64)),
        base64.b64encode(base64.b64encode(part.encode())).decode(),  # twice
        part.encode().hex(),
        " ".join(f"{b:02x}" for b in part.encode()[:200]),
        "".join(f"\\x{b:02x}" for b in part.encode()[:200]),
        urllib.parse.quote(part[:200], safe=""),
        " ".join(part),  # spaced-out letters
        part.upper().replace(" ", "\u200b "),  # zero-width characters
        part.replace("e", "е"),  # Cyrillic е
        codecs.encode(part, "rot13"),
        part[::-1],
        " ".join(part.split()[::-1]),
    ]
    for leak in encodings:
        assert "system_prompt" in check(f"Sure: {leak}", "refund"), leak[:40]


def test_a_genuine_reply_echoing_a_few_instruction_words_passes() -> None:
    reply = (
        "As the returns and refunds team of the store, we answer every message: the refund "
        "goes back to your original payment method after the inspection."
    )
    policy = load_policy()
    assert policy.echo_length(reply, SECRET) < policy.terms.echo_min_words
    assert check(reply, "refund") == ()


def test_decoding_ignores_runs_that_are_not_text() -> None:
    assert decoded_runs("tracking 1Z999AA10123456784 and ORD-204881-ABCDEF0123456789") == []
    assert decoded_runs(base64.b64encode(b"hello world, this is text").decode()) == [
        "hello world, this is text"
    ]


def test_content_words_fold_and_drop_filler() -> None:
    terms = load_policy().terms
    assert content_words("The R E V E A L of ＩＮＳＴＲＵＣＴＩＯＮＳ!", terms.filler_words) == [
        "reveal",
        "instructions",
    ]


def test_the_longest_reply_is_checked_quickly() -> None:
    policy = ReplyPolicy(PolicyTerms.load())
    reply = (" ".join(SECRET.split()) + " ") * 3
    started = time.perf_counter()
    context = ReplyContext(templates=(template("refund"),), instructions=(SECRET,))
    for _ in range(20):
        assert not policy.check(reply[:1200], context).allowed
    assert (time.perf_counter() - started) / 20 < 0.25
