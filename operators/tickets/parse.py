"""The input parser of the tickets flow: clean a message and extract its entities (plain Python).

`clean_text` turns an email/chat/IT body into one bounded line of what the sender wrote this
time: HTML is reduced to text, quoted replies and signatures are cut, control characters are
dropped and whitespace is collapsed. `extract_entities` finds order ids, email addresses and the
names of known products (the `product` column of `data/products.csv`).
"""

from __future__ import annotations

import csv
import html
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib.resources.abc import Traversable
from typing import Any, Optional

from operators.runtime.resources import data_file
from operators.tickets.domain import EnrichedTicket, ParsedTicket, made
from schemas.common import trusted
from schemas.tickets import Entities

PRODUCTS_CSV = data_file("products.csv")
MAX_TEXT_CHARS = 2000
MAX_ENTITIES = 20  # the bound of each list in `schemas.tickets.Entities`

_BLOCK_TAG = re.compile(r"<\s*(br|/p|/div|/li|/tr|/h[1-6])\b[^>]*>", re.IGNORECASE)
_INVISIBLE_ELEMENT = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_QUOTE_HEADER = re.compile(
    r"^\s*(on\b.{0,300}\bwrote:|-{2,}\s*original message\s*-{2,})", re.IGNORECASE
)
_WRAPPED_QUOTE_HEADER = re.compile(r"^\s*on\s.+", re.IGNORECASE)
_FORWARD_HEADER = re.compile(r"^\s*from:\s", re.IGNORECASE)
_FORWARD_HEADER_NEXT = re.compile(r"^\s*(sent|date|to):\s", re.IGNORECASE)
_SIGNATURE = re.compile(
    r"^\s*(--\s*$|__+\s*$|sent from my\b|get outlook for\b)",
    re.IGNORECASE,
)
_REPLY_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg)\s*:\s*)+", re.IGNORECASE)
_ORDER_ID = re.compile(r"\bORD[-_ ]?(\d{4,12})\b", re.IGNORECASE)
_ORDER_ID_TAIL = re.compile(r"ord[-_ ]?(\d{4,12})\b")
"""`_ORDER_ID` for lower-cased ASCII text, without its leading `\\b`: a pattern that starts with
a literal is searched for that literal first, far faster than trying `\\b` at every position
(`_order_ids_lower` checks the `\\b`)."""
_ASCII_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_WORD_RUN = re.compile(r"\w+")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}\b")


def html_to_text(text: str) -> str:
    """Text content of an HTML fragment: block ends become line breaks, entities are decoded."""
    if "<" not in text and "&" not in text:
        return text
    text = _INVISIBLE_ELEMENT.sub(" ", text)
    text = _BLOCK_TAG.sub("\n", text)
    return html.unescape(_TAG.sub(" ", text))


def _is_quote_header(line: str, next_line: str) -> bool:
    if _QUOTE_HEADER.match(line):
        return True
    if _FORWARD_HEADER.match(line) and _FORWARD_HEADER_NEXT.match(next_line):
        return True  # Outlook's "From: ... / Sent: ..." block
    # Mail clients wrap a long "On <date>, <name> wrote:" over two lines.
    return bool(_WRAPPED_QUOTE_HEADER.match(line)) and next_line.strip().lower().endswith("wrote:")


_HEADER_STARTS = frozenset("oO-fF_sS\u017fgG")
"""The first characters (after leading whitespace) of a line a quote header or signature
pattern can match: `on`, `-`, `from:`, `_`, `sent`, `get` in any case (`ſ` folds to `s`)."""


def strip_quotes_and_signature(text: str) -> str:
    """Cut quoted replies ("On ... wrote:", "> ..." lines) and everything from a signature on."""
    lines = text.splitlines()
    kept: list[str] = []
    for index, line in enumerate(lines):
        first = line.lstrip()[:1]
        if first in _HEADER_STARTS:  # else none of the patterns can match
            next_line = lines[index + 1] if index + 1 < len(lines) else ""
            if _is_quote_header(line, next_line) or _SIGNATURE.match(line):
                break
        if first != ">":
            kept.append(line)
    return "\n".join(kept)


def _is_visible(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf")


_ASCII_VISIBLE = {
    code: (" " if chr(code).isspace() else None)
    for code in range(128)
    if chr(code).isspace() or not _is_visible(chr(code))
}
"""The ASCII characters `remove_control_characters` changes: whitespace to a space, the rest
out."""


_ASCII_SPACES = bytes(
    ord(" ") if code < 128 and chr(code).isspace() else code for code in range(256)
)
_ASCII_INVISIBLE = bytes(code for code, to in _ASCII_VISIBLE.items() if to is None)
"""The same change as `_ASCII_VISIBLE` as a `bytes.translate` table and the bytes it deletes:
a table lookup per byte in C, where `str.translate` with a dict looks each character up."""


def remove_control_characters(text: str) -> str:
    """Drop control and format characters (zero-width, bidi marks); whitespace becomes spaces."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_SPACES, _ASCII_INVISIBLE).decode("ascii")
    return "".join(" " if ch.isspace() else ch for ch in text if _is_visible(ch))


def visible_line(text: str) -> str:
    """`collapse_whitespace(remove_control_characters(text))`, for ASCII text in one pass over
    its bytes (every whitespace byte is a space once translated, and `bytes.split` splits at
    exactly those)."""
    if text.isascii():
        visible = text.encode("ascii").translate(_ASCII_SPACES, _ASCII_INVISIBLE)
        return b" ".join(visible.split()).decode("ascii")
    return collapse_whitespace(remove_control_characters(text))


def bound_length(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` cut to at most `limit` characters, at a word boundary when there is one nearby."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace as one space, none at the ends (`str.split` and `\\s` agree on what
    whitespace is)."""
    return " ".join(text.split())


@lru_cache(maxsize=4096)  # subjects repeat far more than bodies ("Refund status")
def clean_subject(subject: Optional[str]) -> str:
    """The subject without "Re:"/"Fwd:" prefixes, collapsed to one line."""
    if not subject:
        return ""
    return visible_line(_REPLY_PREFIX.sub("", subject))


def clean_text(body: str, subject: Optional[str] = None) -> str:
    """What the sender wrote this time, as one line of at most ~2000 characters.

    The subject (without reply prefixes) leads unless the body already starts with it. When the
    body holds nothing but quoted text or a signature, the whole body is kept instead.
    """
    text = html_to_text(body) if "<" in body or "&" in body else body  # else it is the text
    fresh = visible_line(strip_quotes_and_signature(text))
    if not fresh:
        fresh = visible_line(text.replace(">", " "))
    head = clean_subject(subject) if subject else ""
    if head and not fresh.lower().startswith(head.lower()):
        separator = " " if head[-1] in ".?!:" else ". "
        fresh = f"{head}{separator}{fresh}" if fresh else head
    return fresh if len(fresh) <= MAX_TEXT_CHARS else bound_length(fresh)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))[:MAX_ENTITIES]


def _lower_ascii(text: str) -> Optional[str]:
    """`text` in lower case when it is ASCII (where that is what `re.IGNORECASE` compares),
    else None: the substring checks below may rule a pattern out only for ASCII text."""
    return text.lower() if text.isascii() else None


def find_order_ids(text: str, lowered: Optional[str] = None) -> list[str]:
    """Order ids such as `ORD-123456` (also `ord 123456`), normalised to `ORD-<digits>`.

    `lowered` is `_lower_ascii(text)` when the caller has it.
    """
    lowered = _lower_ascii(text) if lowered is None else lowered
    if lowered is None:
        return _unique(f"ORD-{match.group(1)}" for match in _ORDER_ID.finditer(text))
    if "ord" not in lowered:
        return []
    found = _order_ids_lower(lowered)
    return found if len(found) < 2 else _unique(found)  # none or one: already unique


def _order_ids_lower(lowered: str) -> list[str]:
    """`[f"ORD-{m.group(1)}" for m in _ORDER_ID.finditer(lowered)]` for lower-cased ASCII text:
    the matches of `_ORDER_ID_TAIL` that `\\b` allows (no word character before them). A match it
    rejects holds no other `ord` after its start (only `-`, `_`, space and digits), so skipping
    past it, as `finditer` does, misses no match of `_ORDER_ID`."""
    found = []
    for match in _ORDER_ID_TAIL.finditer(lowered):
        start = match.start()
        if start == 0 or lowered[start - 1] not in _ASCII_WORD:
            found.append(f"ORD-{match.group(1)}")
    return found


def find_emails(text: str) -> list[str]:
    """Email addresses, lower-cased, in order of appearance."""
    if "@" not in text:
        return []
    return _unique(match.group(0).lower() for match in _EMAIL.finditer(text))


def product_aliases(name: str) -> tuple[str, ...]:
    """The ways a product is written: its full name and its brand part.

    The brand part is the leading words that start with a capital or a digit ("AeroBlend 3000"
    of "AeroBlend 3000 blender"), so "my AeroBlend 3000 broke" still names the product.
    """
    words = name.split()
    brand: list[str] = []
    for word in words:
        if not (word[0].isupper() or word[0].isdigit()):
            break
        brand.append(word)
    short = " ".join(brand)
    return (name, short) if len(short) >= 4 and short != name else (name,)


def _alias_pattern(aliases: Iterable[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(a) for a in sorted(aliases, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _lower_alias_pattern(aliases: Iterable[str]) -> re.Pattern[str]:
    """`_alias_pattern` for lower-cased ASCII text and lower-case ASCII aliases, without
    `re.IGNORECASE` and without the leading `(?<!\\w)` (`_ProductMatcher.find` checks it): the
    pattern then starts with literals, which the engine looks for far faster than it tries a
    case-blind pattern at every position (alternatives that share their first words are
    searched for as one literal)."""
    alternatives = "|".join(re.escape(a) for a in sorted(aliases, key=len, reverse=True))
    return re.compile(rf"(?:{alternatives})(?!\w)")


_NOT_WORD = bytes(
    code if code < 128 and (chr(code).isalnum() or chr(code) == "_") else ord(" ")
    for code in range(256)
)
"""`bytes.translate` table: every byte but an ASCII word character (`\\w` of ASCII text) to a
space."""


def _word_runs(ascii_text: str) -> list[bytes]:
    """`_WORD_RUN.findall(ascii_text)` as bytes, for ASCII text: its word runs are what is left
    between the other characters once those are spaces (found in C without a pattern)."""
    return ascii_text.encode("ascii").translate(_NOT_WORD).split()


class _ProductMatcher:
    """The products' aliases as one pattern (longest alias first), and a quick way past it.

    Most texts name no product, and a pattern of every alias is slow to try at every position.
    An alias starts with a word it can only match as a whole run of word characters (`\\w+`),
    so in ASCII text only the aliases whose first word is one of the lower-cased text's runs can
    match, and the pattern of just those (same order) finds the same matches; none → no product.
    Aliases whose first word has other characters are always tried.
    """

    def __init__(self, products: tuple[str, ...]) -> None:
        self.canonical: dict[str, str] = {}
        for product in (p.strip() for p in products):
            for alias in product_aliases(product) if product else ():
                self.canonical.setdefault(alias.lower(), product)
        self.pattern = _alias_pattern(self.canonical) if self.canonical else None
        self._by_word: dict[bytes, list[str]] = {}  # first word (ASCII bytes) → its aliases
        self._always: list[str] = []  # aliases the ASCII shortcut cannot judge
        for alias in self.canonical:
            first = alias.split()[0] if alias.split() else ""
            if alias.isascii() and _WORD_RUN.fullmatch(first):
                self._by_word.setdefault(first.encode("ascii"), []).append(alias)
            else:
                self._always.append(alias)
        self._first_words = frozenset(self._by_word)
        self._narrowed: dict[frozenset[bytes], re.Pattern[str]] = {}
        self._narrowed_lower: dict[frozenset[bytes], re.Pattern[str]] = {}

    def pattern_for(self, lowered: Optional[str]) -> Optional[re.Pattern[str]]:
        """The pattern to search a text with (`lowered`: `_lower_ascii` of it); None when no
        product can match."""
        if lowered is None or self.pattern is None:
            return self.pattern
        words = self._first_words.intersection(_word_runs(lowered))
        if not words and not self._always:
            return None
        pattern = self._narrowed.get(words)
        if pattern is None:
            pattern = _alias_pattern(self._chosen(words))
            if len(self._narrowed) < 4096:
                self._narrowed[words] = pattern
        return pattern

    def _chosen(self, words: frozenset[bytes]) -> list[str]:
        """The aliases that can match a text whose word runs include `words`, in order."""
        chosen = set(self._always).union(*(self._by_word[w] for w in words))
        return [a for a in self.canonical if a in chosen]

    def find(self, text: str, lowered: Optional[str]) -> list[str]:
        """The products named in `text` (`lowered`: `_lower_ascii` of it), as `find_products`
        gives them."""
        if lowered is None or self._always or self.pattern is None:
            pattern = self.pattern_for(lowered)
            if pattern is None:
                return []
            canonical = self.canonical
            return _unique(canonical[m.group(0).lower()] for m in pattern.finditer(text))
        # ASCII text and aliases: the same matches, found in the lower-cased text.
        words = self._first_words.intersection(_word_runs(lowered))
        if not words:
            return []
        pattern = self._narrowed_lower.get(words)
        if pattern is None:
            pattern = _lower_alias_pattern(self._chosen(words))
            if len(self._narrowed_lower) < 4096:
                self._narrowed_lower[words] = pattern
        found: list[str] = []
        position = 0
        while (match := pattern.search(lowered, position)) is not None:
            start = match.start()
            if start and lowered[start - 1] in _ASCII_WORD:  # `(?<!\w)` fails here
                position = start + 1
                continue
            found.append(self.canonical[match.group(0)])
            position = match.end()
        return found if len(found) < 2 else _unique(found)  # none or one: already unique


@lru_cache(maxsize=64)
def _product_matcher_of(products: tuple[str, ...]) -> _ProductMatcher:
    return _ProductMatcher(products)


_last_matcher: Optional[tuple[Sequence[str], _ProductMatcher]] = None


def _product_matcher(products: Sequence[str]) -> _ProductMatcher:
    """The matcher of `products`; the same object as the last call's is found without hashing
    the names again (the flow passes its one tuple of products for every message)."""
    global _last_matcher
    last = _last_matcher
    if last is not None and last[0] is products:
        return last[1]
    matcher = _product_matcher_of(tuple(products))
    if isinstance(products, tuple):  # immutable: the same object always names the same list
        _last_matcher = (products, matcher)
    return matcher


def find_products(text: str, products: Sequence[str], lowered: Optional[str] = None) -> list[str]:
    """Known products named in `text` (full name or brand part, any case), as listed.

    `lowered` is `_lower_ascii(text)` when the caller has it.
    """
    lowered = _lower_ascii(text) if lowered is None else lowered
    return _product_matcher(products).find(text, lowered)


@lru_cache(maxsize=8)
def load_products(path: Traversable = PRODUCTS_CSV) -> tuple[str, ...]:
    """Product names from the `product` column of a CSV file; empty when the file is absent."""
    if not path.is_file():
        return ()
    rows = csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8"), newline=""))
    if "product" not in (rows.fieldnames or ()):
        return ()
    names = ((row.get("product") or "").strip() for row in rows)
    return tuple(dict.fromkeys(name for name in names if name))


def extract_entities(text: str, products: Sequence[str]) -> Entities:
    """Order ids, email addresses and known product names mentioned in `text`."""
    lowered = text.lower() if text.isascii() else None  # `_lower_ascii(text)`
    order_ids = find_order_ids(text, lowered)
    emails = find_emails(text) if "@" in text else []
    found = _product_matcher(products).find(text, lowered)  # `find_products`
    if not (order_ids or emails or found):
        return _NO_ENTITIES  # frozen: one record serves every message that names nothing
    # Valid by construction (lists of at most `MAX_ENTITIES` stripped strings): built without
    # validating them again.
    return trusted(
        Entities, {"order_ids": order_ids, "emails": emails, "products": found}, {*_ENTITY_FIELDS}
    )


_NO_ENTITIES = Entities()
_ENTITY_FIELDS = ("order_ids", "emails", "products")

Parsed = tuple[Any, ...]
"""A parse as the memo keeps it, strings and counts only: `(text,)` for a text that names no
entity, else `(text, len(order_ids), len(emails), *order_ids, *emails, *products)`. The cyclic
garbage collector stops tracking such a tuple at its first pass (a tuple that held another
tuple, or a list, would stay tracked for later passes to walk again)."""


def parsed_text(text: str, products: Sequence[str]) -> Parsed:
    """`text` and `extract_entities(text, products)` as the memo keeps them (`Parsed`)."""
    lowered = text.lower() if text.isascii() else None  # `_lower_ascii(text)`
    order_ids = find_order_ids(text, lowered)
    emails = find_emails(text) if "@" in text else []
    found = _product_matcher(products).find(text, lowered)  # `find_products`
    if not (order_ids or emails or found):
        return (text,)
    return (text, len(order_ids), len(emails), *order_ids, *emails, *found)


def entities_of(kept: Parsed) -> Entities:
    """The `Entities` of a `Parsed` of more than the text: equal to what `extract_entities`
    gives (a new record each call)."""
    emails_from = 3 + kept[1]
    products_from = emails_from + kept[2]
    return trusted(
        Entities,
        {
            "order_ids": list(kept[3:emails_from]), "emails": list(kept[emails_from:products_from]),
            "products": list(kept[products_from:]),
        },
        {*_ENTITY_FIELDS},
    )  # fmt: skip


PARSE_CACHE = 4096
"""Texts whose parse `parse_ticket` keeps (least recently used out), per list of products."""


def parse_text(body: str, subject: Optional[str], products: Sequence[str]) -> tuple[str, Entities]:
    """The cleaned text of a message and the entities it names (no memo)."""
    text = clean_text(body, subject)
    return text, extract_entities(text, products)


class _Parses:
    """`parse_text` with one list of products, for the last `PARSE_CACHE` (body, subject) pairs
    (follow-ups such as "any update?" and re-sent messages repeat). The result is a function of
    the pair alone, so the memo changes no output.

    The memo keeps each result as strings and counts (`Parsed`), which the cyclic garbage
    collector stops tracking at its first pass, and each message gets its own `Entities`
    (`entities_of`): a memo of `Entities` (a model, its dict, three lists and a set each) kept
    every entry added since the last collection for the young collections to walk."""

    def __init__(self, products: tuple[str, ...]) -> None:
        self.products = products
        self.kept = lru_cache(maxsize=PARSE_CACHE)(self._parsed)

    def _parsed(self, body: str, subject: Optional[str]) -> Parsed:
        return parsed_text(clean_text(body, subject), self.products)

    def parse(self, body: str, subject: Optional[str]) -> tuple[str, Entities]:
        """`parse_text(body, subject, products)`, from the memo."""
        kept = self.kept(body, subject)
        return kept[0], _NO_ENTITIES if len(kept) == 1 else entities_of(kept)


@lru_cache(maxsize=8)
def _parses_for(products: tuple[str, ...]) -> _Parses:
    return _Parses(products)


_last_parses: Optional[_Parses] = None


def _parses(products: Sequence[str]) -> _Parses:
    """The memo of `products` (the same tuple object as the last call's: found at once)."""
    global _last_parses
    last = _last_parses
    if last is not None and last.products is products:
        return last
    _last_parses = found = _parses_for(tuple(products))
    return found


_new = object.__new__


def parse_ticket(t: EnrichedTicket, *, products: Optional[Sequence[str]] = None) -> ParsedTicket:
    """Clean an enriched message and extract its entities (`parse_text`, kept per text).

    `products` defaults to the names in `data/products.csv` (none when that file is absent).
    """
    message = t.message
    known = load_products() if products is None else products
    text, entities = _parses(known).parse(message.body, message.subject)
    if type(t) is not EnrichedTicket:
        return made(
            ParsedTicket, message=message, source=t.source, base_priority=t.base_priority,
            response_sla_minutes=t.response_sla_minutes, text=text, entities=entities,
        )  # fmt: skip
    record = _new(ParsedTicket)  # as `parse_tickets` builds it
    values = record.__dict__
    values.update(t.__dict__)
    values["text"] = text
    values["entities"] = entities
    return record


def parse_tickets(
    batch: list[EnrichedTicket], *, products: Optional[Sequence[str]] = None
) -> list[ParsedTicket]:
    """`parse_ticket` of every message of a batch (one call per batch from a flow's step): the
    memo is found once per batch (`_Parses.parse` written out), and each `ParsedTicket` is built
    as `domain.made` builds it (an exact `EnrichedTicket`'s dict, whose fields lead
    `ParsedTicket`'s in the same order, is copied in one step)."""
    known = load_products() if products is None else products
    memo = _parses(known).kept
    parsed: list[ParsedTicket] = []
    append = parsed.append
    for t in batch:
        message = t.message
        kept = memo(message.body, message.subject)
        text = kept[0]
        entities = _NO_ENTITIES if len(kept) == 1 else entities_of(kept)
        if type(t) is not EnrichedTicket:
            append(made(
                ParsedTicket, message=message, source=t.source, base_priority=t.base_priority,
                response_sla_minutes=t.response_sla_minutes, text=text, entities=entities,
            ))  # fmt: skip
            continue
        record = _new(ParsedTicket)
        values = record.__dict__
        values.update(t.__dict__)
        values["text"] = text
        values["entities"] = entities
        append(record)
    return parsed
