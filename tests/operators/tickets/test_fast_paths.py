"""The shortcuts of the tickets rules path give exactly what the plain code gives.

The parser, the lexical scorer and the urgency check rule patterns out before trying them, walk a
term table instead of taking a cosine per route, and keep memos. Each `reference_*` below is the
plain code they replaced, kept here as the specification; hypothesis compares the two on texts
mixed from the characters and words that matter (order ids, emails, numbers, product names,
urgency words, control and format characters, non-ASCII letters that fold to ASCII ones).
"""

from __future__ import annotations

import copy
import dataclasses
import html
import itertools
import json
import math
import pickle
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import FrozenInstanceError, dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Optional
from unittest import mock

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import schemas.tickets as tickets_schema
from operators.runtime.records import Valid
from operators.runtime.validate import Limits
from operators.tickets import domain, lexical, parse, respond, router, workers
from operators.tickets.domain import (
    ContextTicket,
    DraftedTicket,
    EnrichedTicket,
    ParsedTicket,
    Turn,
)
from operators.tickets.enrich import join_tickets
from operators.tickets.intents import IntentIndex
from operators.tickets.lexical import ROUTES, LexicalScorer, RouteScores, stem
from operators.tickets.parse import load_products, product_aliases
from operators.tickets.reference import ChannelReference
from schemas import (
    DeadLetter,
    Enrichment,
    Entities,
    SourceRef,
    TicketMessage,
    TicketResponse,
    deterministic_id,
)
from schemas.common import EventTime
from schemas.tickets import LAID_OUT_FIELDS

ROOT = Path(__file__).resolve().parents[3]
PRODUCTS = load_products()
INDEX = IntentIndex.from_file()

# --- the plain code (as it was before the shortcuts) ------------------------------------------

_WHITESPACE = re.compile(r"\s+")
_ORDER_ID = re.compile(r"\bORD[-_ ]?(\d{4,12})\b", re.IGNORECASE)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}\b")
_IDENTIFIERS = re.compile(r"\bORD[-_ ]?\d+\b|\S+@\S+|\b\d+(?:[.,]\d+)?\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")


def reference_remove_control_characters(text: str) -> str:
    def visible(ch: str) -> bool:
        return ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf")

    return "".join(" " if ch.isspace() else ch for ch in text if visible(ch))


def reference_collapse_whitespace(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))[:20]


def reference_order_ids(text: str) -> list[str]:
    return _unique([f"ORD-{m.group(1)}" for m in _ORDER_ID.finditer(text)])


def reference_emails(text: str) -> list[str]:
    return _unique([m.group(0).lower() for m in _EMAIL.finditer(text)])


def reference_products(text: str, products: Sequence[str]) -> list[str]:
    canonical: dict[str, str] = {}
    for product in (p.strip() for p in products):
        for alias in product_aliases(product) if product else ():
            canonical.setdefault(alias.lower(), product)
    if not canonical:
        return []
    alternatives = "|".join(re.escape(a) for a in sorted(canonical, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
    return _unique([canonical[m.group(0).lower()] for m in pattern.finditer(text)])


_BLOCK_PATTERNS = (
    re.compile(r"^\s*(on\b.{0,300}\bwrote:|-{2,}\s*original message\s*-{2,})", re.IGNORECASE),
    re.compile(r"^\s*on\s.+", re.IGNORECASE),
    re.compile(r"^\s*from:\s", re.IGNORECASE),
    re.compile(r"^\s*(sent|date|to):\s", re.IGNORECASE),
    re.compile(r"^\s*(--\s*$|__+\s*$|sent from my\b|get outlook for\b)", re.IGNORECASE),
)


def reference_strip_quotes_and_signature(text: str) -> str:
    quote, wrapped, forward, forward_next, signature = _BLOCK_PATTERNS
    lines = text.splitlines()
    kept: list[str] = []
    for index, line in enumerate(lines):
        next_line = lines[index + 1] if index + 1 < len(lines) else ""
        header = (
            bool(quote.match(line))
            or bool(forward.match(line) and forward_next.match(next_line))
            or (bool(wrapped.match(line)) and next_line.strip().lower().endswith("wrote:"))
        )
        if header or signature.match(line):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    return "\n".join(kept)


def reference_decide(scores: RouteScores, temperature: float) -> tuple[str, float]:
    best = max(ROUTES, key=lambda route: scores.get(route, 0.0))
    if scores.get(best, 0.0) <= 0.0:
        return "general", 1.0 / len(ROUTES)
    top = scores[best]
    weights = {r: math.exp((scores.get(r, 0.0) - top) / temperature) for r in ROUTES}
    return best, weights[best] / sum(weights.values())


def reference_terms(text: str) -> list[str]:
    plain = _IDENTIFIERS.sub(" ", text).lower().replace("'", "")
    words = [stem(w) for w in _WORD.findall(plain) if w not in lexical._STOP_WORDS]
    return words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]


def _normalise(vector: dict[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(v * v for v in vector.values()))
    return {k: v / norm for k, v in vector.items()} if norm else {}


def _dot(a: dict[str, float], b: dict[str, float]) -> float:
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return sum(v * large.get(k, 0.0) for k, v in small.items())


def reference_scores(scorer: LexicalScorer, text: str) -> RouteScores:
    idf = scorer._idf
    counts = Counter(t for t in reference_terms(text) if t in idf)
    query = _normalise({t: (1 + math.log(c)) * idf[t] for t, c in counts.items()})
    return {route: _dot(query, c) for route, c in scorer._centroids.items()}


# --- texts ------------------------------------------------------------------------------------

PIECES = [
    "ORD-482913", "ord 123456", "Ord_99999", "ORD12", "order", "ord", "12", "3.5", "4,000", "x2",
    "jane.doe@example.com", "a@b", "@", "AeroBlend 3000", "aeroblend 3000 blender",
    "Trailrunner X2 shoes", "trailrunner", "URGENT", "asap", "a.s.a.p", "is down", "went down",
    "outages", "critical", "refund", "my", "the", "package", "delayed", "charged twice", "it's",
    "wrote:", "On Monday, Jane wrote:", "On Mon", "-----Original Message-----", "From: a",
    "Sent: b", "To: c", "--", "__", "Sent from my phone", "\u017fent from my", "Get Outlook for",
    "> quoted", "\r\n",
    "\t", "\n", "\x0b", "\x1c", "\x00", "\x7f", "\u200b", "\u202e", "\xa0", "\u2028",
    "é", "É", "\u212a", "\u017f", "\u0130", "ı", "ß", "—", "…", "_", "-", ".", ",", "'", "(", ")",
]  # fmt: skip
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=30).map(
    lambda parts: " ".join(parts) if len(parts) % 2 else "".join(parts)
)


@settings(max_examples=400, deadline=None)
@given(texts)
@example("Re: ORD-123456 is DOWN asap\u212a")
@example("AeroBlend 3000 blender and the aeroblend 3000, x2")
@example("thanks\n\u017fent from my phone")
@example("see below\n  On Mon, 3 Nov 2026, Jane\n wrote:\n> old")
@example("x\nFrom: Jane\nSent: Monday\nold text")
@example("x\n-----Original Message-----\nold")
@example("x\n__\nsig")
@example("x\n --  \nsig")
@example("x\nget outlook FOR ios")
def test_parser_shortcuts_match_the_plain_code(text: str) -> None:
    assert parse.remove_control_characters(text) == reference_remove_control_characters(text)
    assert parse.collapse_whitespace(text) == reference_collapse_whitespace(text)
    assert parse.strip_quotes_and_signature(text) == reference_strip_quotes_and_signature(text)
    assert parse.find_order_ids(text) == reference_order_ids(text)
    assert parse.find_emails(text) == reference_emails(text)
    assert parse.find_products(text, PRODUCTS) == reference_products(text, PRODUCTS)
    assert parse.visible_line(text) == reference_collapse_whitespace(
        reference_remove_control_characters(text)
    )
    entities = parse.extract_entities(text, PRODUCTS)
    assert entities.order_ids == reference_order_ids(text)
    assert entities.products == reference_products(text, PRODUCTS)
    if entities is not parse._NO_ENTITIES:  # built without validation: what validation gives
        validated = Entities(
            order_ids=entities.order_ids, emails=entities.emails, products=entities.products
        )
        assert entities == validated
        assert entities.model_fields_set == validated.model_fields_set
        assert entities.model_dump_json() == validated.model_dump_json()


ORDER_PIECES = [
    "ord",
    "ORD",
    "Ord",
    "order",
    "w",
    "_",
    "-",
    " ",
    "12",
    "1234",
    "123456789",
    "ſ",
    "\u212a",
]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(ORDER_PIECES), max_size=16).map("".join))
@example("word1234 ord-ord1234 xord12345 ord_1234 ord 12345678901234 ORD1234")
@example("ord12345ord6789 _ord1234 -ord1234")
def test_order_ids_of_lower_case_text_match_the_plain_pattern(text: str) -> None:
    """Texts dense in `ord`, digits and the characters around them, where `\\b` decides."""
    assert parse.find_order_ids(text) == reference_order_ids(text)
    lowered = text.lower() if text.isascii() else None
    assert parse.find_order_ids(text, lowered) == reference_order_ids(text)


PRODUCT_PIECES = [
    "AeroBlend", "aeroblend", "AEROBLEND", "3000", "blender", "Blender", "Trailrunner", "X2",
    "x2", "shoes", "Pro", "pro", "desk", "Desk", "lamp", "Lumina", "lumina", "Max", "max",
    " ", "  ", "_", "-", ".", "x", "9", "'",
]  # fmt: skip
OVERLAPPING_PRODUCTS = (
    "AeroBlend 3000 blender", "Blender Max", "3000 Blender", "Lumina Pro desk lamp",
    "Pro Desk lamp", "Desk Max", "Trailrunner X2 shoes", "X2 Pro",
)  # fmt: skip
"""Products whose aliases start inside one another ("Pro Desk" within "Lumina Pro desk
lamp"), where a match the word before rules out must not hide a later one."""


@settings(max_examples=600, deadline=None)
@given(
    st.lists(st.sampled_from(PRODUCT_PIECES), max_size=14).map(" ".join)
    | st.lists(st.sampled_from(PRODUCT_PIECES), max_size=14).map("".join),
    st.sampled_from([PRODUCTS, OVERLAPPING_PRODUCTS]),
)
@example("xAeroBlend 3000 blender AeroBlend 3000", PRODUCTS)
@example("Lumina Pro Desk Max", OVERLAPPING_PRODUCTS)
@example("_Pro Desk lamp 3000 Blender Max", OVERLAPPING_PRODUCTS)
@example("x3000 blender max 3000", OVERLAPPING_PRODUCTS)
def test_products_in_ascii_text_match_the_plain_pattern(
    text: str, products: tuple[str, ...]
) -> None:
    """ASCII texts dense in product words, in any case, where `(?<!\\w)` and `(?!\\w)` decide."""
    assert parse.find_products(text, products) == reference_products(text, products)
    lowered = text.lower() if text.isascii() else None
    assert parse.find_products(text, products, lowered) == reference_products(text, products)


def test_the_last_product_matcher_is_only_reused_for_the_same_tuple() -> None:
    """The matcher of the last tuple of products is found by identity; a list (which may change
    between calls) and another tuple are looked up by their names."""
    text = "my AeroBlend 3000 and the Only Product broke; ORD-123456 and ORD-123456 twice"
    names = ["Only Product"]
    assert parse.find_products(text, PRODUCTS) == reference_products(text, PRODUCTS)
    assert parse.find_products(text, names) == ["Only Product"]
    names[0] = "Other Product"
    assert parse.find_products(text, names) == []
    assert parse.find_products(text, ("Only Product",)) == ["Only Product"]
    assert parse.find_products(text, PRODUCTS) == reference_products(text, PRODUCTS)
    assert parse.find_products(text, ()) == []
    assert parse.find_order_ids(text) == reference_order_ids(text) == ["ORD-123456"]


@settings(max_examples=400, deadline=None)
@given(texts)
@example("ORD-1 12.5@x.com 3,5 it's")
def test_lexical_shortcuts_match_the_plain_code_to_the_bit(text: str) -> None:
    assert lexical.terms(text) == reference_terms(text)
    scorer = INDEX.lexical_scorer
    expected = reference_scores(scorer, text)
    for _ in range(2):  # computed, then from the memo
        got = scorer.scores(text)
        assert list(got) == list(ROUTES)
        # the same floats to the last bit (a route nothing scored may be 0 or 0.0 in either)
        assert [repr(float(got[r])) for r in ROUTES] == [repr(float(expected[r])) for r in ROUTES]


URGENT_WORDS = [
    "urgent", "Urgently", "ASAP", "A.S.A.P", "emergency", "IMMEDIATELY", "critical", "outage",
    "Outages", "is down", "are down", "WENT down", "goes Down",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(ROUTES),
        st.one_of(
            st.just(0),
            st.sampled_from([0.0, 0.3, 0.30000000000000004, 1.0, -0.2]),
            st.floats(min_value=-1, max_value=2, allow_nan=False),
        ),
    ),
    st.sampled_from([lexical.LEXICAL_TEMPERATURE, 0.05]),
)
def test_decide_matches_the_plain_code(scores: RouteScores, temperature: float) -> None:
    route, confidence = lexical.decide(scores, temperature)
    expected_route, expected_confidence = reference_decide(scores, temperature)
    assert (route, repr(confidence)) == (expected_route, repr(expected_confidence))


SCORE_VALUES = st.one_of(
    st.just(0), st.sampled_from([0.0, 0.1, 0.30000000000000004, -0.2]),
    st.floats(min_value=-1, max_value=2, allow_nan=False),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(SCORE_VALUES, min_size=len(ROUTES), max_size=len(ROUTES)),
    st.lists(SCORE_VALUES, min_size=len(ROUTES), max_size=len(ROUTES)),
    st.sampled_from([lexical.CONTEXT_WEIGHT, 0.35]),
)
def test_blend_and_decide_of_tuples_match_the_dicts(
    current: list[float], context: list[float], weight: float
) -> None:
    """`blend_values` and `decide_values` (taken in C with `map`) give the floats and the route
    `blend` and `decide` give on the same scores as dicts."""
    as_dict = lambda values: dict(zip(ROUTES, values, strict=True))  # noqa: E731
    blended = lexical.blend_values(current, context, weight)
    expected = lexical.blend(as_dict(current), as_dict(context), weight)
    assert [repr(v) for v in blended] == [repr(expected[r]) for r in ROUTES]
    route, confidence = lexical.decide_values(blended, lexical.LEXICAL_TEMPERATURE)
    expected_route, expected_confidence = reference_decide(expected, lexical.LEXICAL_TEMPERATURE)
    assert (route, repr(confidence)) == (expected_route, repr(expected_confidence))
    with pytest.raises(ValueError):
        lexical.blend_values(current, context[1:], weight)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_urgency_shortcut_matches_the_pattern(text: str) -> None:
    assert workers.is_urgent(text) == (workers.URGENCY.search(text) is not None)


def test_every_urgency_word_is_still_found() -> None:
    for word in URGENT_WORDS:
        for text in (word, f"the VPN: {word}!", f"x{word}"):
            assert workers.is_urgent(text) == (workers.URGENCY.search(text) is not None), text
        assert workers.is_urgent(f"please, {word} now")


def distinct_keys(count: int) -> list[str]:
    """`count` texts of as many keys: `n` in binary, 1 a known word, 0 an unknown one."""
    return [" ".join("parcel" if bit == "1" else "qzx" for bit in f"{n:b}") for n in range(count)]


def test_the_score_memo_is_bounded() -> None:
    scorer = LexicalScorer(INDEX.intents)
    texts = distinct_keys(LexicalScorer.SCORE_CACHE + 10)
    for text in texts:
        scorer.scores(text)
    assert len({scorer.key(text) for text in texts}) == len(texts)
    assert len(scorer._scores) <= LexicalScorer.SCORE_CACHE
    assert len(scorer._keys) <= LexicalScorer.SCORE_CACHE


def test_the_word_table_is_bounded() -> None:
    scorer = LexicalScorer(INDEX.intents)
    for n in range(LexicalScorer.WORD_CACHE + 10):
        scorer.scores(f"parcel w{n:x}q late")
    assert len(scorer._word_tokens) <= LexicalScorer.WORD_CACHE


NAMES = ["Rosa Rossi", "Daniel", "ORD-482913", "jane.doe@example.com", "4 days", "zqx wvv", ""]


@settings(max_examples=300, deadline=None)
@given(texts, st.sampled_from(NAMES), st.sampled_from(NAMES), st.sampled_from(["", "refund"]))
@example("late ", "Rosa Rossi", "Daniel", "parcel")
@example("the parcel ", "ORD-482913", "4 days", "late")
def test_texts_of_one_key_score_as_the_plain_code_scores_each(
    text: str, name: str, other: str, tail: str
) -> None:
    """The memos are per key: texts that differ in what the key leaves out (names, ids,
    numbers, stop words) share an entry, and each still gets its own plain-code scores."""
    scorer = LexicalScorer(INDEX.intents)
    first, second = f"{text} {name} {tail}", f"{text} {other} {tail}"
    for sample in (first, second, first):
        expected = reference_scores(scorer, sample)
        got = scorer.scores(sample)
        assert [repr(float(got[r])) for r in ROUTES] == [repr(float(expected[r])) for r in ROUTES]
        assert scorer.route(sample) == lexical.decide(expected, lexical.LEXICAL_TEMPERATURE)


def reference_key(scorer: LexicalScorer, text: str) -> str:
    """`Key` by its definition: the words of `reference_terms`, stop words left out, each as its
    stem when a centroid knows it, else `|`, each followed by a space."""
    plain = _IDENTIFIERS.sub(" ", text).lower().replace("'", "")
    words = [w for w in _WORD.findall(plain) if w not in lexical._STOP_WORDS]
    return "".join(f"{stem(w) if stem(w) in scorer._idf else '|'} " for w in words)


SCORER = LexicalScorer(INDEX.intents)
_BIGRAM_WORDS = next(t for t in SCORER._idf if "_" in t).split("_")
KEY_PIECES = [
    *_BIGRAM_WORDS, "ord", "ORD", "order", "12", "1234", "3.5", "4,000", "x2", "5x", "_", "-",
    " ", " ", ".", ",", "'", "@", "a@b.c", "é", "\u212a", "the", "qzxv", "ſ",
]  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(
    texts
    | st.lists(st.sampled_from(KEY_PIECES), max_size=14).map("".join)
    | st.lists(st.sampled_from(KEY_PIECES), max_size=14).map(" ".join)
)
@example(f"{_BIGRAM_WORDS[0]} x_12 {_BIGRAM_WORDS[1]}")
@example(f"{_BIGRAM_WORDS[0]}'{_BIGRAM_WORDS[1]} a'12")
@example(f"{_BIGRAM_WORDS[0]} 12 {_BIGRAM_WORDS[1]} word 123 ord-99 xord-1 é12 it's 7")
def test_keys_are_their_definition(text: str) -> None:
    """Numbers, order ids and the characters that decide what the identifier patterns take
    (`_`, `'`, `@`, non-ASCII letters), next to the words of a known bigram."""
    scorer = LexicalScorer(INDEX.intents)
    assert scorer._key(text) == reference_key(scorer, text)
    assert SCORER._key(text) == reference_key(SCORER, text)  # with the word table warm


def test_a_key_keeps_what_makes_a_bigram() -> None:
    """An unknown word between two known ones parts them (no bigram), a stop word does not."""
    scorer = LexicalScorer(INDEX.intents)
    bigram = next(t for t in scorer._idf if "_" in t)
    first, second = bigram.split("_")
    joined, parted = f"{first} {second}", f"{first} qzxv {second}"
    assert scorer.key(joined) != scorer.key(parted)
    assert scorer.key(f"{first} the {second}") == scorer.key(joined)
    assert scorer.scores(joined) != scorer.scores(parted)


def test_html_entities_still_decode_before_cleaning() -> None:
    """The translate table works on the text after HTML is reduced (unchanged order)."""
    body = "<p>Hello&nbsp;there\x00</p><div>ORD-123456</div>"
    assert parse.clean_text(body) == reference_collapse_whitespace(
        reference_remove_control_characters(html.unescape("Hello&nbsp;there\x00 ORD-123456"))
    )


# --- routing a ticket with tuples of scores, and the parse memo ---------------------------------

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def context_ticket(text: str, history: Sequence[str]) -> ContextTicket:
    message = TicketMessage(
        message_id="M-9", session_id="S-1", channel="chat", sender="visitor", body="x",
        sent_at=T0,
    )  # fmt: skip
    return ContextTicket(
        message=message,
        source=SourceRef(topic="tickets.messages", partition=0, offset=9),
        base_priority="normal",
        response_sla_minutes=5,
        text=text,
        entities=Entities(),
        history=tuple(Turn(f"M-{n}", h, T0) for n, h in enumerate(history)),
    )


def reference_route_lexically(t: ContextTicket, index: IntentIndex) -> tuple[str, float]:
    """`router.route_lexically` as it was: dicts of scores, `context_text`, `blend`, `decide`."""
    scores = index.lexical_scores(t.text)
    earlier = router.context_text(t, scores)
    if earlier:
        scores = lexical.blend(scores, index.lexical_scores(earlier))
    return lexical.decide(scores, lexical.LEXICAL_TEMPERATURE)


FOLLOW_UPS = ["any update?", "??", "still waiting...", "ok and now?", "thanks", ""]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(texts, st.sampled_from(FOLLOW_UPS)),
    st.lists(st.one_of(texts, st.sampled_from(PIECES)), max_size=4),
)
@example("any update?", ["my parcel ORD-123456 is late", "still nothing"])
@example("please reply, third time I write about it", ["I was charged twice"])
@example("", [])
def test_routing_with_tuples_matches_the_dicts(text: str, history: list[str]) -> None:
    t = context_ticket(text, history)
    for _ in range(2):  # computed, then from the memos
        routed = router.route_lexically(t, INDEX)
        expected_route, expected_confidence = reference_route_lexically(t, INDEX)
        assert (routed.route, repr(routed.confidence)) == (
            expected_route, repr(min(1.0, max(0.0, expected_confidence)))
        )  # fmt: skip
        assert INDEX.lexical(text) == lexical.decide(
            INDEX.lexical_scores(text), lexical.LEXICAL_TEMPERATURE
        )


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["a", "why", "ORD-1", "é"]),
            st.sampled_from(list(" \t\n\x1c\u2003\u3000")),
        ),
        max_size=30,
    )
)
@example(["w "] * 8)
@example(["w "] * 9)
@example(["w "] * 8 + ["\u2003\t "])
def test_a_short_text_has_at_most_the_follow_up_words(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert router._is_short(text) == (len(text.split()) <= router.FOLLOW_UP_MAX_WORDS)


def test_the_route_memo_is_bounded() -> None:
    scorer = LexicalScorer(INDEX.intents)
    for text in distinct_keys(LexicalScorer.SCORE_CACHE + 10):
        scorer.route(text)
    assert len(scorer._route_names) <= LexicalScorer.SCORE_CACHE
    assert len(scorer._confidences) <= LexicalScorer.SCORE_CACHE


def enriched(body: str, subject: Optional[str]) -> EnrichedTicket:
    message = TicketMessage(
        message_id="M-1", session_id="S-1", channel="email", sender="a@example.com",
        subject=subject, body=body, sent_at=T0,
    )  # fmt: skip
    return EnrichedTicket(message, SourceRef(topic="t", partition=0, offset=1), "normal", 60)


@settings(max_examples=300, deadline=None)
@given(
    texts.filter(lambda b: b.strip() != ""),
    st.one_of(st.none(), st.sampled_from(["Re: order", "Fwd: RE: ORD-123456", "AeroBlend 3000"])),
)
@example("any update?", None)
@example("My AeroBlend 3000 broke, ORD-123456, jane@example.com", "Re: broken")
def test_the_parse_memo_gives_what_parsing_gives(body: str, subject: Optional[str]) -> None:
    t = enriched(body, subject)
    for products in (PRODUCTS, list(PRODUCTS), ()):
        text, entities = parse.parse_text(body, subject, products)
        for _ in range(2):  # parsed, then from the memo
            parsed = parse.parse_ticket(t, products=products)
            assert (parsed.text, parsed.entities) == (text, entities)
            assert parsed.text == parse.clean_text(body, subject)
            assert parsed.entities == parse.extract_entities(text, products)


def test_the_parse_memo_is_bounded_and_per_product_list() -> None:
    memo = parse._parses(PRODUCTS)
    for n in range(parse.PARSE_CACHE + 10):
        parse.parse_ticket(enriched(f"where is ORD-{100000 + n}?", None), products=PRODUCTS)
    assert memo.kept.cache_info().currsize <= parse.PARSE_CACHE
    assert parse._parses(("Only Product",)) is not memo
    found = parse.parse_ticket(enriched("my Only Product broke", None), products=("Only Product",))
    assert found.entities.products == ["Only Product"]


@dataclass(frozen=True)
class _LaterEnriched(EnrichedTicket):
    note: str = "extra"


def test_a_parsed_batch_holds_the_records_the_dataclass_makes() -> None:
    """`parse_tickets` copies an exact `EnrichedTicket`'s dict; a subtype's fields are read one by
    one (its own extra field is not copied)."""
    plain_t = enriched("My AeroBlend 3000 broke, ORD-123456", "Re: broken")
    later = _LaterEnriched(plain_t.message, plain_t.source, "high", 30)
    batch = [plain_t, later, enriched("any update?", None), plain_t]
    parsed = parse.parse_tickets(batch, products=PRODUCTS)
    assert len(parsed) == len(batch)
    for t, record in zip(batch, parsed, strict=True):
        text, entities = parse.parse_text(t.message.body, t.message.subject, PRODUCTS)
        plain = ParsedTicket(
            t.message, t.source, t.base_priority, t.response_sla_minutes, text, entities
        )
        _same_record(record, plain)
        _same_record(parse.parse_ticket(t, products=PRODUCTS), plain)
    assert parse.parse_tickets([], products=PRODUCTS) == []


# --- the response record built without validating it again -------------------------------------

REPLIES = [
    BODY_TEXT := "We are sorry that order ORD-123456 is running late.",
    " padded ", "\x1cfile separator", "ends with a line\n", "\u2003em space", "x" * 4100, "",
    "Line one.\n\nLine two!",
]  # fmt: skip
ZONES = [UTC, None, timezone(timedelta(hours=2)), UTC, timezone(timedelta(0))]


def drafted_ticket(
    channel: str, reply: str, confidence: float, method: str, ids: tuple[str, str]
) -> DraftedTicket:
    message = TicketMessage.model_construct(
        message_id=ids[0], session_id=ids[1], channel=channel, sender="jane.doe@example.com",
        body="where is ORD-123456?", sent_at=T0, customer_tier="standard",
    )  # fmt: skip
    return DraftedTicket(
        message=message,
        source=SourceRef(topic="tickets.messages", partition=0, offset=3),
        base_priority="normal",
        response_sla_minutes=240,
        text="where is ORD-123456?",
        entities=Entities(order_ids=["ORD-123456"]),
        history=(Turn("M-1", "my parcel is late", T0),),
        route="shipping_delay",
        route_method=method,  # type: ignore[arg-type]
        confidence=confidence,
        route_enrichments=(),
        priority="high",
        reply=reply,
        enrichment=Enrichment(source="rules", prompt_version="shipping_delay.v2"),
        prompt_version="shipping_delay.v2",
    )


def validated_response(t: DraftedTicket, now: datetime) -> TicketResponse:
    """`format_response` with every record validated (the code before the fast path)."""
    with (
        mock.patch.object(respond, "_valid", lambda *values: False),
        mock.patch.object(respond, "_trusted_response", side_effect=AssertionError),
    ):
        return respond.format_response(t, now=now)


IDS = [
    ("M-2", "S-9"), ("M 2", "S-9"), ("M-2", "S-9\n"), ("M-2", "S" * 65), ("M" * 64, "S"),
    ("M-2\x1fS-9", "S-9"), ("M-2", "S\x1f9"), ("M-2", ""), ("", "S-9"), ("M-2", "\x1f"),
]  # fmt: skip
"""(message_id, session_id) pairs: valid ids, and ids validation refuses (a unit separator, the
one `already_valid` joins them with, among them)."""


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["email", "chat", "it", "fax"]),
    st.one_of(st.sampled_from(REPLIES), st.text(max_size=40)),
    st.one_of(
        st.sampled_from([0.0, 1.0, 0.5, -0.0, 1, 0, 1.0000001, float("nan")]),
        st.floats(allow_nan=True),
    ),
    st.sampled_from(["lexical", "embedding", "llm", "rules"]),
    st.sampled_from([*IDS, ("M-2", " S-9"), ("é", "S")]),
    st.sampled_from(ZONES),
)
@example("email", BODY_TEXT, 0.74, "embedding", ("M-2", "S-9"), UTC)
def test_the_unvalidated_response_is_what_validation_gives(
    channel: str,
    reply: str,
    confidence: float,
    method: str,
    ids: tuple[str, str],
    zone: Optional[tzinfo],
) -> None:
    t = drafted_ticket(channel, reply, confidence, method, ids)
    now = datetime(2026, 11, 27, 9, 0, 3, tzinfo=zone)
    try:
        expected = validated_response(t, now)
    except ValidationError as error:
        with pytest.raises(ValidationError) as raised:
            respond.format_response(t, now=now)
        assert raised.value.errors() == error.errors()
        return
    got = respond.format_response(t, now=now)
    assert got == expected
    assert got.model_dump_json() == expected.model_dump_json()
    assert list(got.__dict__) == list(expected.__dict__) == list(TicketResponse.model_fields)
    assert got.__pydantic_fields_set__ == expected.__pydantic_fields_set__
    assert got.model_dump_json(exclude_unset=True) == expected.model_dump_json(exclude_unset=True)
    # the fast path's shared fields set vouches for the layout: `json_bytes` skips its own
    # checks on it (a response validation built holds a set of its own)
    assert expected.__pydantic_fields_set__ is not LAID_OUT_FIELDS
    assert got.json_bytes() == expected.__pydantic_serializer__.to_json(expected)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["email", "chat", "it", "fax"]),
    st.one_of(st.sampled_from(REPLIES), st.text(max_size=40), st.text(min_size=3990)),
    st.one_of(
        st.sampled_from(["Jane Doe <j@x.com>", "jane.doe@x.com", "x", '"Li" <l@x.io>', ""]),
        st.text(max_size=30),
    ),
)
def test_the_reply_of_a_response_is_format_reply_s(channel: str, reply: str, sender: str) -> None:
    """`format_response` writes `format_reply` out: the same reply on every channel."""
    t = drafted_ticket(channel, reply, 0.5, "lexical", ("M-2", "S-9"))
    message = t.message.model_copy(update={"sender": sender})
    t = dataclasses.replace(t, message=message)
    try:
        response = respond.format_response(t, now=datetime(2026, 11, 27, 9, 0, 3, tzinfo=UTC))
    except ValidationError:  # a reply validation refuses (stripped to nothing, or too long)
        expected = respond.format_reply(t, respond.response_id_of("S-9", "M-2"))
        with pytest.raises(ValidationError):
            TicketResponse.model_validate(
                validated_response(dataclasses.replace(t, reply=BODY_TEXT), T0).model_dump()
                | {"reply": expected}
            )
        return
    assert response.reply == respond.format_reply(t, response.response_id)


def test_a_copied_or_pickled_response_no_longer_holds_the_shared_fields_set() -> None:
    t = drafted_ticket("email", BODY_TEXT, 0.5, "lexical", ("M-2", "S-9"))
    response = respond.format_response(t, now=datetime(2026, 11, 27, 9, 0, 3, tzinfo=UTC))
    assert response.__pydantic_fields_set__ is LAID_OUT_FIELDS
    expected = response.__pydantic_serializer__.to_json(response)
    copied = response.model_copy(update={"priority": "urgent"})
    unpickled = pickle.loads(pickle.dumps(response))
    for other in (copied, unpickled, response.model_copy(), copy.deepcopy(response)):
        assert other.__pydantic_fields_set__ is not LAID_OUT_FIELDS
        assert other.json_bytes() == other.__pydantic_serializer__.to_json(other)
    assert set(TicketResponse.model_fields) - {"schema_version"} == LAID_OUT_FIELDS
    assert copied.json_bytes() == expected.replace(b'"priority":"high"', b'"priority":"urgent"')
    assert unpickled == response and unpickled.json_bytes() == expected


def test_the_shared_fields_set_does_not_vouch_for_the_entities() -> None:
    """Entities laid out otherwise (here their values in another order) go to pydantic even in
    a response that holds the shared fields set."""
    t = drafted_ticket("chat", BODY_TEXT, 0.5, "lexical", ("M-2", "S-9"))
    odd = Entities(order_ids=["ORD-123456"], products=["lamp"])
    object.__setattr__(odd, "__dict__", dict(reversed(odd.__dict__.items())))
    t = dataclasses.replace(t, entities=odd)
    response = respond.format_response(t, now=datetime(2026, 11, 27, 9, 0, 3, tzinfo=UTC))
    assert response.__pydantic_fields_set__ is LAID_OUT_FIELDS
    assert list(odd.__dict__) != list(Entities.model_fields)
    with pytest.raises(TypeError):
        tickets_schema._nested(odd)
    assert response.json_bytes() == response.__pydantic_serializer__.to_json(response)


def test_the_flow_path_takes_the_shortcut() -> None:
    t = drafted_ticket("chat", BODY_TEXT, 0.5, "lexical", ("M-2", "S-9"))
    with mock.patch.object(TicketResponse, "__init__", side_effect=AssertionError):
        response = respond.format_response(t, now=datetime(2026, 11, 27, 9, 0, 3, tzinfo=UTC))
    assert response.reply == BODY_TEXT
    assert response.response_id == deterministic_id("S-9", "M-2")
    assert response.__pydantic_fields_set__ is LAID_OUT_FIELDS
    assert respond.response_id_of("S\x1f9", "M-2") == deterministic_id("S\x1f9", "M-2")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=80), st.text(max_size=80)), min_size=1, max_size=4))
@example([("", ""), ("S-1", "M-1"), ("S-1", "M-1"), ("S-2", "M.3:x_y")])
@example([("sessão-ü", "M-\u00e9\u4e2d\U0001f600"), ("x" * 200, "y")])
def test_response_ids_from_the_copied_digest_are_deterministic_ids(
    pairs: list[tuple[str, str]],
) -> None:
    """The response id hashes with a copy of an empty 16-byte BLAKE2b: each, in any order and
    repeated, is `deterministic_id` of the two ids (no state carries over between copies)."""
    for session_id, message_id in pairs:
        expected = deterministic_id(session_id, message_id)
        assert respond.response_id_of(session_id, message_id) == expected
        if respond._ID.fullmatch(session_id) and respond._ID.fullmatch(message_id):
            t = drafted_ticket("it", BODY_TEXT, 0.5, "lexical", (message_id, session_id))
            assert respond.format_response(t, now=T0).response_id == expected


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(st.sampled_from(REPLIES), st.text(max_size=40)),
    st.one_of(st.sampled_from([0.5, 1, True, float("inf")]), st.floats(allow_nan=True)),
    st.sampled_from(IDS),
    st.sampled_from(ZONES),
    st.sampled_from(["lexical", "LEXICAL", "llm"]),
)
def test_what_passes_the_check_validation_leaves_as_it_is(
    reply: str, confidence: float, ids: tuple[str, str], zone: Optional[tzinfo], method: str
) -> None:
    """`already_valid` on any values (not only those `format_reply` makes): when it says yes,
    validation keeps every value as it is."""
    fields = validated_response(
        drafted_ticket("chat", BODY_TEXT, 0.5, "lexical", ("M-2", "S-9")), datetime.now(UTC)
    ).__dict__ | {
        "reply": reply, "confidence": confidence, "message_id": ids[0], "session_id": ids[1],
        "responded_at": datetime(2026, 11, 27, 9, 0, 3, tzinfo=zone), "route_method": method,
    }  # fmt: skip
    if respond.already_valid(fields):
        validated = TicketResponse(**fields)
        assert validated.__dict__ == fields
        assert [type(v) for v in validated.__dict__.values()] == [type(v) for v in fields.values()]


# --- the message's event time checked in one validator call -----------------------------------


class ReferenceMessage(TicketMessage):
    """`TicketMessage` as it was: `sent_at` an `EventTime` (three validator calls)."""

    sent_at: EventTime  # type: ignore[assignment]


BOUNDS = Limits(max_ahead=timedelta(hours=24))
WALL = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


ZONES_OF_SENT_AT = [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))]
EDGES = [
    WALL + timedelta(hours=24),
    WALL + timedelta(hours=24, microseconds=1),
    datetime(2000, 1, 1, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2100, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=2))),
]


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.datetimes(
            min_value=datetime(1, 1, 2),
            max_value=datetime(9999, 12, 30),
            timezones=st.sampled_from(ZONES_OF_SENT_AT),
        ),
        st.sampled_from(EDGES),
    ),
    st.booleans(),
    st.sampled_from(["as value", "as text", "naive text"]),
)
def test_the_folded_event_time_validator_matches_event_time(
    sent_at: datetime, with_context: bool, form: str
) -> None:
    value: object = sent_at
    if form != "as value":
        value = (
            sent_at.isoformat() if form == "as text" else sent_at.replace(tzinfo=None).isoformat()
        )
    raw = {"message_id": "M-1", "session_id": "S-1", "channel": "chat", "sender": "v", "body": "x",
           "sent_at": value}  # fmt: skip
    context = BOUNDS.time_bounds(WALL).context() if with_context else None
    outcomes = []
    for model in (TicketMessage, ReferenceMessage):
        try:
            outcomes.append(model.model_validate(raw, context=context).model_dump())
        except ValidationError as error:
            outcomes.append(error.errors(include_url=False))
    assert repr(outcomes[0]) == repr(outcomes[1])


def test_the_key_and_source_of_a_ticket_at_every_step() -> None:
    """`session_of` and `source_of` read `message.session_id` and `source` (in C) of a record of
    any step, and pickle (they are attribute getters, not closures)."""
    t = enriched("where is ORD-123456?", None)
    parsed = parse.parse_ticket(t, products=PRODUCTS)
    context = ContextTicket.from_parsed(parsed, ())
    for record in (t, parsed, context):
        assert domain.session_of(record) == record.message.session_id == "S-1"
        assert domain.source_of(record) is record.source
    assert pickle.loads(pickle.dumps(domain.session_of))(t) == "S-1"
    assert pickle.loads(pickle.dumps(domain.source_of))(t) == t.source


def test_records_made_in_one_step_equal_those_the_dataclass_makes() -> None:
    t = enriched("where is ORD-123456?", None)
    values = dict(
        message=t.message, source=t.source, base_priority="normal", response_sla_minutes=60,
        text="where is ORD-123456?", entities=Entities(order_ids=["ORD-123456"]),
    )  # fmt: skip
    made, plain = domain.made(ParsedTicket, **values), ParsedTicket(**values)
    assert made == plain and made.__dict__ == plain.__dict__
    assert list(made.__dict__) == list(plain.__dict__)
    assert pickle.loads(pickle.dumps(made)) == plain
    assert parse.parse_ticket(t, products=PRODUCTS) == ParsedTicket(**values)
    turn = domain.made(Turn, message_id="M-1", text="hi", sent_at=T0)
    assert turn == Turn("M-1", "hi", T0) and list(turn.__dict__) == [
        "message_id",
        "text",
        "sent_at",
    ]
    with pytest.raises(FrozenInstanceError):
        turn.text = "changed"  # type: ignore[misc]


# --- the channel join as a dict lookup --------------------------------------------------------


def reference_join(channels: list[str], table: pl.DataFrame) -> list[tuple[object, object]]:
    """The polars left join per batch that `join_tickets` replaced: (priority, sla) per row."""
    keys = pl.DataFrame(
        {"i": range(len(channels)), "channel": channels},
        schema={"i": pl.Int64, "channel": pl.String},
    )
    joined = (
        keys.join(table, on="channel", how="left")
        .sort("i")
        .select("base_priority", "response_sla_minutes")
    )
    return list(joined.iter_rows())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["email", "chat", "it"]), max_size=12),
    st.dictionaries(
        st.sampled_from(["email", "chat", "it", "fax"]),
        st.tuples(
            st.one_of(st.none(), st.sampled_from(["low", "normal", "high", "urgent"])),
            st.one_of(st.none(), st.integers(0, 10_000)),
        ),
    ),
)
def test_the_channel_lookup_gives_what_the_join_gave(
    channels: list[str], rows: dict[str, tuple[Optional[str], Optional[int]]]
) -> None:
    table = pl.DataFrame(
        {
            "channel": list(rows),
            "base_priority": [p for p, _ in rows.values()],
            "response_sla_minutes": [sla for _, sla in rows.values()],
        },
        schema={"channel": pl.String, "base_priority": pl.String, "response_sla_minutes": pl.Int64},
    )
    batch = [
        Valid(
            model=TicketMessage(
                message_id=f"M-{n}", session_id="S-1", channel=c, sender="a@example.com",
                body="hi", sent_at=T0,
            ),
            source=SourceRef(topic="tickets.messages", partition=0, offset=n),
        )
        for n, c in enumerate(channels)
    ]  # fmt: skip
    out = join_tickets(batch, ChannelReference(table), step="j")
    for got, (priority, sla) in zip(out, reference_join(channels, table), strict=True):
        if priority is None:
            assert isinstance(got, DeadLetter) and got.error_type == "unknown_reference"
        else:
            assert isinstance(got, EnrichedTicket)
            assert (got.base_priority, got.response_sla_minutes) == (priority, sla)


def test_the_labelled_set_scores_and_routes_as_the_plain_code() -> None:
    """Every message of `data/routing/messages.jsonl`, and its history where it has one, gets
    the plain code's scores to the bit and its route (the texts of the router benchmark)."""
    lines = (ROOT / "data" / "routing" / "messages.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in lines.splitlines() if line.strip()]
    assert len(rows) > 300
    scorer = LexicalScorer(INDEX.intents)
    for row in rows:
        for text in (row["text"], *row.get("history", ())):
            expected = reference_scores(scorer, text)
            got = scorer.scores(text)
            assert [repr(float(got[r])) for r in ROUTES] == [
                repr(float(expected[r])) for r in ROUTES
            ], text
            assert scorer.route(text) == lexical.decide(expected, lexical.LEXICAL_TEMPERATURE)
        t = context_ticket(row["text"], row.get("history", ()))
        routed = router.route_lexically(t, INDEX)
        expected_route, expected_confidence = reference_route_lexically(t, INDEX)
        assert (routed.route, repr(routed.confidence)) == (
            expected_route, repr(min(1.0, max(0.0, expected_confidence)))
        )  # fmt: skip


JOIN_PIECES = ["ORD", "ord", "Ord", "xord", "\u212aord", "é", "123456", "12", "-123", " 9", ""]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(texts, st.sampled_from(JOIN_PIECES), st.sampled_from(PIECES)),
        min_size=1, max_size=3,
    ).map(lambda parts: [p + q for p, q in zip(parts, [*parts[1:], ""], strict=True)]),
)  # fmt: skip
@example(["my order ORD", "123456 is late"])
@example(["parcel late \u212aORD", "4 days"])
@example(["refund", "charged twice"])
@example(["", ""])
def test_joined_scores_are_those_of_the_joined_text(parts: list[str]) -> None:
    """The earlier turns are scored from each turn's key; the same floats as scoring their join,
    also when an order id spans the join (`ORD` + ` ` + digits)."""
    scorer = LexicalScorer(INDEX.intents)
    for _ in range(2):  # computed, then from the memos
        expected = reference_scores(scorer, " ".join(parts))
        got = scorer.joined_values(parts)
        assert [repr(float(v)) for v in got] == [repr(float(expected[r])) for r in ROUTES]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
@example("AeroBlend-3000, x_y\tz\x0b\x1cq")
def test_word_runs_are_the_pattern_s(text: str) -> None:
    lowered = text.lower()
    assert [w.decode() for w in parse._word_runs(lowered)] == re.findall(r"\w+", lowered)


def reference_template_reply(t: DraftedTicket | ContextTicket, route: str) -> str:
    """`workers.template_reply` as it was: the route's template filled for every message."""
    ids, products = t.entities.order_ids, t.entities.products
    if not ids:
        order = "your order"
    elif len(ids) == 1:
        order = f"order {ids[0]}"
    else:
        order = f"orders {', '.join(ids[:-1])} and {ids[-1]}"
    product = f"the {products[0]}" if products else "your item"
    return workers.TEMPLATES[route].format(order=order, product=product)  # type: ignore[index]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["ORD-123456", "ORD-99999"]), max_size=3),
    st.lists(st.sampled_from([*PRODUCTS, "100% {order} %s %(x)s blender"]), max_size=2),
    st.sampled_from(ROUTES),
)
def test_a_template_reply_is_the_filled_template(
    order_ids: list[str], products: list[str], route: str
) -> None:
    entities = Entities(order_ids=order_ids, products=products)
    t = domain.made(
        router.RoutedTicket, **{
            **context_ticket("x", []).__dict__, "entities": entities, "route": route,
            "route_method": "lexical", "confidence": 0.5, "route_enrichments": (),
            "scored_route": None, "route_conflict": False,
        },
    )  # fmt: skip
    assert workers.template_reply(t) == reference_template_reply(t, route)
    for other in ROUTES:
        assert workers.template_reply(t, route=other) == reference_template_reply(t, other)


def test_a_template_is_filled_as_str_format_fills_it() -> None:
    template = "{product}: 100% %s %(order)s {{order}} for {order}, 5%% off {product}"
    text = workers._fill(template)
    values = {"order": "order 50%s", "product": "the {x} %(order)s %d"}
    assert text % values == template.format(**values)
    assert workers._fill("100% sure, {{no field}}") % {} == "100% sure, {no field}"
    for bad in ("{customer}", "{order!r}", "{product:>9}", "{0}"):
        with pytest.raises(ValueError):
            workers._fill(bad)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), texts, st.sampled_from(["Re: Refund status", "FW: re:  x", ""])))
def test_the_subject_memo_gives_what_cleaning_gives(subject: Optional[str]) -> None:
    for _ in range(2):  # computed, then from the memo
        assert parse.clean_subject(subject) == parse.clean_subject.__wrapped__(subject)


def _same_record(made: object, plain: object) -> None:
    assert type(made) is type(plain)
    assert made == plain and list(made.__dict__.items()) == list(plain.__dict__.items())
    assert pickle.loads(pickle.dumps(made)) == plain


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["hi", "late", ""]), max_size=3),
    st.booleans(),
    st.sampled_from(ROUTES),
    st.sampled_from(["lexical", "embedding", "llm"]),
    st.one_of(
        st.floats(min_value=-0.5, max_value=1.5),
        st.sampled_from([0.0, -0.0, 1.0, 0, 1, True, float("nan"), float("inf"), -1e-300]),
    ),
    st.one_of(st.none(), st.sampled_from(ROUTES)),
    st.booleans(),
    st.sampled_from(["low", "normal", "high", "urgent"]),
)
def test_the_written_out_extensions_equal_the_dataclasses(
    turns: list[str], replay: bool, route: str, method: str, confidence: float,
    scored: Optional[str], conflict: bool, priority: str,
) -> None:  # fmt: skip
    """`from_parsed`, `from_context` and `from_routed` set the instance dict in one step; the
    records equal, in fields and their order, what the dataclass constructors make."""
    t = enriched("where is ORD-123456?", None)
    parsed = parse.parse_ticket(t, products=PRODUCTS)
    fields = dict(parsed.__dict__)
    history = tuple(Turn(f"M-{n}", h, T0) for n, h in enumerate(turns))
    context = ContextTicket.from_parsed(parsed, history, replay=replay)
    _same_record(context, ContextTicket(**fields, history=history, replay=replay))
    enrichments = (Enrichment(source="rules", prompt_version="router.v2"),)
    routed = router.RoutedTicket.from_context(
        context, route=route, route_method=method, confidence=confidence,  # type: ignore[arg-type]
        route_enrichments=enrichments, scored_route=scored, route_conflict=conflict,  # type: ignore[arg-type]
    )  # fmt: skip
    bounded = min(1.0, max(0.0, confidence))
    assert (type(routed.confidence), repr(routed.confidence)) == (type(bounded), repr(bounded))
    plain_routed = router.RoutedTicket(
        **fields, history=history, replay=replay, route=route, route_method=method,  # type: ignore[arg-type]
        confidence=bounded, route_enrichments=enrichments, scored_route=scored,  # type: ignore[arg-type]
        route_conflict=conflict,
    )  # fmt: skip
    _same_record(routed, plain_routed)
    enrichment = Enrichment(source="rules", prompt_version="general.v2")
    drafted = DraftedTicket.from_routed(
        routed, priority=priority, reply="Thanks.", enrichment=enrichment,  # type: ignore[arg-type]
        prompt_version="general.v2",
    )  # fmt: skip
    plain_drafted = DraftedTicket(
        **plain_routed.__dict__, priority=priority, reply="Thanks.", enrichment=enrichment,  # type: ignore[arg-type]
        prompt_version="general.v2",
    )  # fmt: skip
    _same_record(drafted, plain_drafted)
    # a subtype (here a later step's record) still goes through the generic path
    again = ContextTicket.from_parsed(routed, history, replay=replay)
    _same_record(again, ContextTicket(**fields, history=history, replay=replay))


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(texts, st.sampled_from(list(workers.TEMPLATES.values()))),
    st.sampled_from([respond.CHAT_MAX_CHARS, 40]),
)
def test_the_chat_format_memo_gives_what_formatting_gives(body: str, limit: int) -> None:
    for _ in range(2):  # computed, then from the memo
        assert respond.format_chat(body, limit) == respond.format_chat.__wrapped__(body, limit)
