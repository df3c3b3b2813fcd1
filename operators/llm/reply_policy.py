"""The reply policy: what a drafted reply or message may say before it leaves (plain Python).

Every text an LLM drafts for a customer or carrier is untrusted: a prompt injection in the input
can make an obedient model write anything of the right shape. `check_reply` reads the draft
deterministically and returns the rules it breaks; the caller then sends its own template instead
and escalates. Terms and domains live in `data/reply_policy.json`; the link allow-list can be
replaced by `SURGEFLOW_REPLY_LINK_DOMAINS`.

Rules (`schemas.enrichment.PolicyRule`):

- `link_domain`: every link (`scheme://host`, `www.host`, `host/path`, `user@host`, a bare
  `name.tld` with a common TLD, obfuscations such as `hxxp` and `[.]` undone) points at an
  allow-listed domain or a subdomain of one; `javascript:`, `data:`, `file:` links never pass.
- `monetary_commitment`: no amount of money, no compensation (voucher, discount, gift card, full
  refund …), and no approval or guarantee in a sentence about a refund ("Approved: …").
- `refund_promise`: refund, credit or reimbursement words only where the rules path itself
  offers them.
- `credential_request`: never asks for card numbers, CVV, passwords, one-time codes, PINs or bank
  details (a request word shortly before such a term, not negated: "we will never ask for your
  password" passes; "password reset" passes).
- `system_prompt`: no text of the instructions. Both texts are normalised (NFKC, format
  characters dropped, casefolded, punctuation stripped, spaced-out letters joined, filler words
  dropped) and the longest in-order chain of instruction words in the draft is measured,
  allowing a few inserted words between them and a few instruction words left out: a word
  inserted every few tokens does not break the chain, as it breaks a run of consecutive words.

Base64, hex, `\\xNN` and percent-encoded runs are decoded (nested up to `decode_depth`) and the
decoded text is checked by every rule as well; the instructions are also looked for in the
draft read backwards (by letter and by word) and in ROT13.

What "the rules path allows" means: the caller passes its own deterministic texts for the same
case (the route's template for a ticket, and the template of the embeddings' best route when the
LLM router chose another; the action's rules message for a shipment decision); a commitment rule
(`monetary_commitment`, `refund_promise`) that every one of these texts trips is allowed for the
draft, any other is not. So the refund, shipping-delay, damaged-item and billing routes may speak
of a refund (their templates offer one once the return, the loss or the wrong charge is
confirmed); no route and no shipment action may name an amount, approve a refund or offer
compensation, and no shipment message may promise a refund. `link_domain`, `credential_request`
and `system_prompt` are never allowed.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import json
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from typing import Any, Optional, get_args

from operators.runtime.resources import data_file
from schemas.enrichment import PolicyRule

POLICY_JSON = data_file("reply_policy.json")

COMMITMENT_RULES: tuple[PolicyRule, ...] = ("monetary_commitment", "refund_promise")
"""Rules a draft may break where its template (the rules path) breaks them too."""

CREDENTIAL_WINDOW = 4
"""Words between a request word ("send", "confirm") and the credential it asks for."""

_CONFUSABLES = str.maketrans(
    {
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i",
        "ј": "j", "ѕ": "s", "ԁ": "d", "ո": "n", "ɑ": "a", "ο": "o", "ν": "v", "α": "a",
        "ε": "e", "ι": "i", "κ": "k", "τ": "t", "υ": "u", "ρ": "p",
    }
)  # fmt: skip
"""Cyrillic and Greek letters that look Latin, folded to the Latin letter before any check."""

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}|[A-Za-z0-9_-]{16,}={0,2}")
_BASE64_CHUNKS = re.compile(r"(?:[A-Za-z0-9+/=_-]{8,}\s+){1,}[A-Za-z0-9+/=_-]{4,}")
_HEX_RUN = re.compile(r"(?:0x)?((?:[0-9a-fA-F]{2}){8,})")
_HEX_SEPARATED = re.compile(r"(?:[0-9a-fA-F]{2}[\s:,-]){7,}[0-9a-fA-F]{2}")
_ESCAPED_HEX = re.compile(r"(?:\\x[0-9a-fA-F]{2}){8,}")
_PERCENT_RUN = re.compile(r"[\w.~\-]*(?:%[0-9a-fA-F]{2}[\w.~\-]*){6,}")

_DEFANGED_DOT = re.compile(
    r"\s*(?:\[\s*\.\s*\]|\(\s*\.\s*\)|\{\s*\.\s*\}|\[dot\]|\(dot\))\s*|[。｡]", re.I
)
_DEFANGED_SCHEME = re.compile(r"\bh(?:xx|\*\*|tt)p(s?)\b", re.I)
_SCHEME_URL = re.compile(r"\b([a-z][a-z0-9+.\-]{1,15}):(//)?([^\s<>\"'`\\)\]]*)", re.I)
_WWW = re.compile(r"\bwww\d?\.([^\s/?#<>\"'`\\)\]]+)", re.I)
_EMAIL = re.compile(r"[\w.+\-]+@([\w\-]+(?:\.[\w\-]+)+)")
_HOST = r"((?:[^\W_](?:[\w\-]*[^\W_])?\.)+([^\W\d_]{2,24}))"
_HOST_WITH_PATH = re.compile(rf"(?<![@\w.\-]){_HOST}(?=[/:?#])")
_BARE_HOST = re.compile(rf"(?<![@\w.\-]){_HOST}\b")
_NEVER_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "blob"})
_LINK_SCHEMES = frozenset({"http", "https", "ftp", "ftps", "ws", "wss", "mailto", "tel", "sms"})
_NUMBER = r"\d[\d,.' ]*"


@dataclass(frozen=True)
class PolicyTerms:
    """The data of the policy (`data/reply_policy.json`), with the link allow-list."""

    link_domains: tuple[str, ...]
    bare_domain_tlds: frozenset[str]
    bare_names_not_links: frozenset[str]
    refund_terms: tuple[str, ...]
    compensation_terms: tuple[str, ...]
    approval_terms: tuple[str, ...]
    currency_words: tuple[str, ...]
    currency_words_with_number: tuple[str, ...]
    credential_terms: tuple[str, ...]
    credential_safe_phrases: tuple[str, ...]
    request_cues: tuple[str, ...]
    negations: frozenset[str]
    filler_words: frozenset[str]
    echo_min_words: int = 8
    echo_max_inserted_words: int = 3
    echo_max_skipped_words: int = 2
    decode_min_chars: int = 16
    decode_depth: int = 2

    @classmethod
    def load(
        cls, path: Traversable = POLICY_JSON, *, link_domains: Optional[Sequence[str]] = None
    ) -> PolicyTerms:
        """The policy file; `link_domains` (when given) replaces its allow-list."""
        raw = json.loads(path.read_text(encoding="utf-8"))
        if link_domains is not None:
            raw["link_domains"] = list(link_domains)
        sets = {"bare_domain_tlds", "bare_names_not_links", "negations", "filler_words"}
        values: dict[str, Any] = {
            key: (frozenset(v) if key in sets else tuple(v)) if isinstance(v, list) else v
            for key, v in raw.items()
        }
        values["link_domains"] = tuple(normalise_domain(d) for d in raw["link_domains"])
        terms = cls(**values)
        if terms.echo_min_words < 3 or terms.decode_depth < 0:
            raise ValueError(f"{path}: echo_min_words must be >= 3 and decode_depth >= 0")
        return terms


def normalise_domain(domain: str) -> str:
    """`domain` as compared: IDNA-folded, lower case, without a leading `.`/`*.` or trailing dot."""
    d = domain.strip().lower().removeprefix("*.").strip(".")
    try:
        return d.encode("idna").decode("ascii")
    except UnicodeError:
        return d


@dataclass(frozen=True)
class ReplyContext:
    """What the policy knows of the case: the rules path's own texts and the secret prompts.

    `templates` are the deterministic texts the rules path gives for the same case (a route's
    template, an action's message); a commitment is allowed only when every one of them makes
    it. `instructions` are the texts a draft may not repeat (the system prompt or its secret
    part).
    """

    templates: tuple[str, ...] = ()
    instructions: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyVerdict:
    """The rules a draft broke (empty: it may be sent) and a short note per rule for logs."""

    violations: tuple[PolicyRule, ...] = ()
    details: tuple[str, ...] = field(default=(), compare=False)

    @property
    def allowed(self) -> bool:
        return not self.violations


@functools.lru_cache(maxsize=16)
def load_policy(link_domains: Optional[tuple[str, ...]] = None) -> ReplyPolicy:
    """The policy of `data/reply_policy.json` (one per allow-list; cached)."""
    return ReplyPolicy(PolicyTerms.load(link_domains=link_domains))


class ReplyPolicy:
    """Checks drafts against the terms; stateless once built, safe to share between threads."""

    def __init__(self, terms: PolicyTerms) -> None:
        self.terms = terms
        self._refund = _phrases(terms.refund_terms)
        self._compensation = _phrases(terms.compensation_terms)
        self._approval = _phrases(terms.approval_terms)
        self._credential = _phrases(terms.credential_terms)
        self._credential_safe = _phrases(terms.credential_safe_phrases)
        self._cues = _phrases(terms.request_cues)
        symbols = r"[$€£¥₹₽₿]"
        codes = "|".join(re.escape(w) for w in terms.currency_words)
        with_number = "|".join(re.escape(w) for w in terms.currency_words_with_number)
        self._money = re.compile(
            rf"{symbols}\s?\d|\d[\d,.]*\s?{symbols}|\b(?:{codes})\b"
            rf"|\b{_NUMBER}\s?(?:{with_number})\b",
            re.I,
        )
        self._instruction_cache: dict[str, _InstructionIndex] = {}

    # --- the check ---

    def check(self, text: str, context: ReplyContext) -> PolicyVerdict:
        """The rules `text` breaks, given the rules path's template and the secret prompts."""
        allowed = self.allowed_commitments(context.templates)
        found: dict[PolicyRule, str] = {}
        variants = self._variants(text)
        for variant in variants:
            for rule, detail in self._findings(variant, context):
                if rule in allowed:
                    continue
                found.setdefault(rule, detail)
        if "system_prompt" not in found:
            scrambled = [
                v
                for t in variants
                for v in (codecs.encode(t, "rot13"), t[::-1], " ".join(t.split()[::-1]))
            ]
            chain = max((self._echo(v, context) for v in scrambled), default=0)
            if chain >= self.terms.echo_min_words:
                found["system_prompt"] = f"{chain} instruction words (rot13 or reversed)"
        ordered = tuple(r for r in get_args(PolicyRule) if r in found)
        return PolicyVerdict(ordered, tuple(f"{r}: {found[r]}" for r in ordered))

    def allowed_commitments(self, templates: Sequence[str]) -> set[PolicyRule]:
        """The commitment rules every one of `templates` trips (none without templates)."""
        if not templates:
            return set()
        tripped = [
            {rule for rule, _ in self._commitments(_fold(t)) if rule in COMMITMENT_RULES}
            for t in templates
        ]
        return set.intersection(*tripped)

    def _findings(self, text: str, context: ReplyContext) -> Iterator[tuple[PolicyRule, str]]:
        """The rules `text` (a `_plain` text) breaks. Links are read before lookalike letters
        are folded, so `exаmple.com` with a Cyrillic `а` is not `example.com`."""
        link = self._bad_link(text)
        if link:
            yield "link_domain", link
        text = text.translate(_CONFUSABLES)
        yield from self._commitments(text)
        request = self._credential_request(text)
        if request:
            yield "credential_request", request
        chain = self._echo(text, context)
        if chain >= self.terms.echo_min_words:
            yield "system_prompt", f"{chain} instruction words in order"

    def _echo(self, text: str, context: ReplyContext) -> int:
        return max((self.echo_length(text, i) for i in context.instructions), default=0)

    def _variants(self, text: str) -> list[str]:
        """`text` (`_plain`), then every text decoded from its encoded runs (nested)."""
        seen = [_plain(text)]
        frontier = [text]
        for _ in range(self.terms.decode_depth):
            decoded = [d for t in frontier for d in decoded_runs(t, self.terms.decode_min_chars)]
            frontier = [d for d in dict.fromkeys(decoded) if _plain(d) not in seen]
            seen.extend(_plain(d) for d in frontier)
            if not frontier:
                break
        return seen

    # --- links ---

    def link_hosts(self, text: str) -> list[str]:
        """Every host a link in `text` points at (`javascript:` and kin as `scheme:`)."""
        text = _DEFANGED_SCHEME.sub(lambda m: f"http{m.group(1)}", _DEFANGED_DOT.sub(".", text))
        hosts: list[str] = []
        for m in _SCHEME_URL.finditer(text):
            scheme = m.group(1).lower()
            if scheme in _NEVER_SCHEMES:
                hosts.append(f"{scheme}:")
            elif scheme in _LINK_SCHEMES or m.group(2):
                rest = m.group(3)
                host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
                host = host.rsplit("@", 1)[-1].split(":", 1)[0]
                if host and scheme not in ("tel", "sms"):
                    hosts.append(host)
        hosts += [f"www.{m.group(1).split(':', 1)[0]}" for m in _WWW.finditer(text)]
        hosts += [m.group(1) for m in _EMAIL.finditer(text)]
        hosts += [m.group(1) for m in _HOST_WITH_PATH.finditer(text)]
        hosts += [
            m.group(1)
            for m in _BARE_HOST.finditer(text)
            if m.group(2).lower() in self.terms.bare_domain_tlds
            and m.group(1).lower() not in self.terms.bare_names_not_links
        ]
        return [h for h in (normalise_domain(h) for h in hosts) if h]

    def domain_allowed(self, host: str) -> bool:
        host = normalise_domain(host)
        return any(host == d or host.endswith("." + d) for d in self.terms.link_domains)

    def _bad_link(self, text: str) -> str:
        bad = [h for h in self.link_hosts(text) if not self.domain_allowed(h)]
        return bad[0] if bad else ""

    # --- money, refunds, credentials ---

    def _commitments(self, text: str) -> Iterator[tuple[PolicyRule, str]]:
        text = _CREDIT_CARD.sub(" card ", text)
        money = self._money.search(text) or self._compensation.search(text)
        if not money:
            approved = next(
                (
                    s
                    for s in _sentences(text)
                    if self._approval.search(s) and self._refund.search(s)
                ),
                None,
            )
            if approved is not None:
                money = self._approval.search(approved)
        if money:
            yield "monetary_commitment", money.group(0)
        refund = self._refund.search(text)
        if refund:
            yield "refund_promise", refund.group(0)

    def _credential_request(self, text: str) -> str:
        for sentence in _sentences(self._credential_safe.sub(" ", text)):
            for term in self._credential.finditer(sentence):
                if self._requested(sentence, term):
                    return term.group(0)
        return ""

    def _requested(self, sentence: str, term: re.Match[str]) -> bool:
        """A request word at most `CREDENTIAL_WINDOW` words before `term`, not negated (a
        negation in the two words before it, in its clause: "will never ask for", "do not send";
        or in the last three words before the term: "share it, but not your password"); or the
        term ends a question or a prompt ("Your CVV?", "Card number:"). A negation further away
        ("don't hesitate to send your PIN") negates nothing."""
        before = sentence[: term.start()]
        cues = list(self._cues.finditer(before))
        if cues:
            cue = cues[-1]
            gap = _WORD.findall(before[cue.end() :])
            clause = re.split(r"[,;:()]", before[: cue.start()])[-1]
            lead = _WORD.findall(clause)[-2:]
            if len(gap) <= CREDENTIAL_WINDOW and not self._negated([*lead, *gap[-3:]]):
                return True
        after = sentence[term.end() :].lstrip()
        return after[:1] in ("?", ":") and not self._negated(_WORD.findall(before))

    def _negated(self, words: Iterable[str]) -> bool:
        negations = self.terms.negations
        return any(w in negations or w.endswith(("n't", "n’t")) for w in words)

    # --- instructions ---

    def echo_length(self, text: str, instructions: str) -> int:
        """The longest in-order chain of `instructions`' content words found in `text`.

        Between two words of the chain the text may insert up to `echo_max_inserted_words`
        words and leave out up to `echo_max_skipped_words` words of the instructions.
        """
        index = self._instruction_cache.get(instructions)
        if index is None:
            index = _InstructionIndex(content_words(instructions, self.terms.filler_words))
            self._instruction_cache[instructions] = index
        said = content_words(text, self.terms.filler_words)
        return index.longest_chain(
            said, self.terms.echo_max_inserted_words, self.terms.echo_max_skipped_words
        )


_CREDIT_CARD = re.compile(r"\b(?:credit|debit)\s+cards?\b", re.I)


class _InstructionIndex:
    """Positions of each content word of an instruction text."""

    def __init__(self, words: list[str]) -> None:
        self.positions: dict[str, list[int]] = {}
        for position, word in enumerate(words):
            self.positions.setdefault(word, []).append(position)

    def longest_chain(self, said: Sequence[str], inserted: int, skipped: int) -> int:
        """Gapped in-order alignment: chain[i, p] = 1 + the best chain ending within `inserted`
        words before i and `skipped` instruction words before p."""
        chains: dict[tuple[int, int], int] = {}
        best = 0
        for i, word in enumerate(said):
            for p in self.positions.get(word, ()):
                length = 1
                for back in range(1, inserted + 2):
                    for skip in range(1, skipped + 2):
                        earlier = chains.get((i - back, p - skip))
                        if earlier is not None and earlier + 1 > length:
                            length = earlier + 1
                chains[(i, p)] = length
                best = max(best, length)
        return best


def content_words(text: str, filler: frozenset[str]) -> list[str]:
    """The words of `text` as the echo check compares them: folded, spaced-out letters joined
    ("r e v e a l" → "reveal"; words spaced out this way stay apart where more than one space
    separated them), filler words dropped."""
    folded = _SPACED_LETTERS.sub("", _fold(text))
    return [w for w in _WORD.findall(folded) if w not in filler]


_SPACED_LETTERS = re.compile(r"(?<=(?<![^\W_])[^\W_]) (?=[^\W_](?![^\W_]))")
"""One space between two one-character words."""


def _plain(text: str) -> str:
    """NFKC, format characters (zero-width, bidi) dropped, casefolded."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf").casefold()


def _fold(text: str) -> str:
    """`_plain`, with Cyrillic and Greek lookalikes read as the Latin letters they imitate."""
    return _plain(text).translate(_CONFUSABLES)


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


def _phrases(terms: Iterable[str]) -> re.Pattern[str]:
    """One case-insensitive pattern matching any of `terms` as whole words (longest first);
    inner spaces and hyphens match any run of spaces or hyphens."""
    alternatives = sorted({t.casefold() for t in terms}, key=len, reverse=True)
    parts = [r"[\s\-]+".join(re.escape(p) for p in re.split(r"[\s\-]+", t)) for t in alternatives]
    return re.compile(rf"(?<![\w]){'|'.join(parts) or '(?!)'}(?![\w])", re.I)


# --- decoding ---


def decoded_runs(text: str, min_chars: int = 16) -> list[str]:
    """Readable texts hidden in `text` as base64 (standard or URL-safe, also split over
    whitespace), hex (plain, separated, `\\xNN`) or percent-encoding."""
    found: list[str] = []
    candidates = [m.group(0) for m in _BASE64_RUN.finditer(text)]
    candidates += [re.sub(r"\s+", "", m.group(0)) for m in _BASE64_CHUNKS.finditer(text)]
    for candidate in dict.fromkeys(candidates):
        found += _from_base64(candidate, min_chars)
    hex_runs = [m.group(1) for m in _HEX_RUN.finditer(text)]
    hex_runs += [re.sub(r"[\s:,-]", "", m.group(0)) for m in _HEX_SEPARATED.finditer(text)]
    hex_runs += [m.group(0).replace("\\x", "") for m in _ESCAPED_HEX.finditer(text)]
    for run in dict.fromkeys(hex_runs):
        try:
            found += _readable(binascii.unhexlify(run), min_chars // 2)
        except (binascii.Error, ValueError):
            continue
    for m in _PERCENT_RUN.finditer(text):
        found += _readable(urllib.parse.unquote_to_bytes(m.group(0)), min_chars // 2)
    return found


def _from_base64(candidate: str, min_chars: int) -> list[str]:
    body = candidate.rstrip("=")
    altchars = b"-_" if re.search(r"[-_]", body) else None
    for start in range(max(0, min(4, len(body) - min_chars + 1))):  # may start mid-quantum
        chunk = body[start:]
        chunk = chunk[: len(chunk) - 1] if len(chunk) % 4 == 1 else chunk
        try:
            raw = base64.b64decode(chunk + "=" * (-len(chunk) % 4), altchars=altchars)
        except (binascii.Error, ValueError):
            continue
        readable = _readable(raw, min_chars // 2)
        if readable:
            return readable
    return []


def _readable(raw: bytes, min_chars: int) -> list[str]:
    """`raw` as text when it is UTF-8 and nearly all printable, with enough letters."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return []
    if len(text) < max(min_chars, 4):
        return []
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\n\t\r")
    letters = sum(1 for ch in text if ch.isalpha())
    if printable < 0.95 * len(text) or letters < 0.4 * len(text):
        return []
    return [text]


def check_reply(
    text: str,
    *,
    templates: Sequence[str],
    instructions: Sequence[str] = (),
    link_domains: Optional[Sequence[str]] = None,
) -> PolicyVerdict:
    """`text` against the policy of `data/reply_policy.json` (see the module docstring), with
    the rules path's `templates` and the secret `instructions`; `link_domains` replaces the
    file's allow-list."""
    policy = load_policy(None if link_domains is None else tuple(link_domains))
    context = ReplyContext(templates=tuple(templates), instructions=tuple(instructions))
    return policy.check(text, context)
