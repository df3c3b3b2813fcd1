"""User text on its way into a prompt: cleaned, bounded in tokens, and kept apart as data.

Shipment notes and reasons, ticket bodies and session history are written by people outside the
system. Before any of it reaches a model:

- `clean_text` drops control and format characters (Unicode categories Cc and Cf: escape
  sequences, NUL, zero-width joiners and spaces, bidi overrides and isolates) and collapses
  whitespace to single spaces;
- `bound_tokens` / `bound_texts` cut it to a token budget (`settings.llm.max_input_tokens`);
- `user_data` serialises it as one JSON object for the `user` message, so quotes, fences or
  "instructions" inside it stay string values and never become prompt structure. System prompts
  are fixed text that never contains user text, and the answer's schema is fixed by the pydantic
  response model the caller passes to the service.

Token counts are estimates: no tokenizer can be downloaded at run time, so `estimate_tokens`
counts UTF-8 bytes with weights chosen to stay above what BPE tokenizers of the GPT-4 family
produce for ordinary text (see its docstring).
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

ELLIPSIS = "…"
"""Appended to a text cut by `bound_tokens` (when the budget has room for it)."""

_HIDDEN = ("Cc", "Cf")
_ASCII_HIDDEN = re.compile(r"[\x00-\x1f\x7f]")
_WORD = re.compile(r"\w+")
ECHO_WORDS = 10
"""Consecutive words of a system prompt that an answer may not repeat (`echoes`)."""


def clean_text(text: str, limit_chars: int) -> str:
    """`text` without control and format characters, whitespace collapsed, cut to `limit_chars`.

    Removed characters count as whitespace (so words they separated stay apart); runs of
    whitespace become one space; the result has no leading or trailing space. Reading stops once
    `limit_chars` are kept, so a huge text costs no more than its kept prefix.
    """
    if text.isascii() and len(text) <= 4 * limit_chars:
        # ASCII's only hidden characters are Cc, which `split` takes as whitespace or keeps.
        words = text.split() if text.isprintable() else _ASCII_HIDDEN.sub(" ", text).split()
        joined = " ".join(words)
        if len(joined) <= limit_chars:
            return joined
    kept: list[str] = []
    gap = False
    for ch in text:
        if ch.isspace() or unicodedata.category(ch) in _HIDDEN:
            gap = bool(kept)
            continue
        if len(kept) + gap >= limit_chars:
            break
        if gap:
            kept.append(" ")
            gap = False
        kept.append(ch)
    return "".join(kept)


def _units(ch: str) -> int:
    """Thirds of a token charged for one character: 1 for ASCII, 2 per UTF-8 byte otherwise."""
    code = ord(ch)
    if code < 0x80:
        return 1
    if code < 0x800:
        return 4
    if code < 0x10000:
        return 6
    return 8


def estimate_tokens(text: str) -> int:
    """A conservative token count of `text`: ceil((ASCII chars + 2 × other UTF-8 bytes) / 3).

    That is 3 ASCII characters per token (English prose averages about 4, code and punctuation
    about 3), 1⅓ tokens per 2-byte character (Latin accents, Cyrillic, Greek, Arabic), 2 tokens
    per CJK character (usually 1 to 1.5) and 2⅔ per emoji or other 4-byte character (1 to 3).
    The count of a concatenation is at most the sum of the counts of its parts.
    """
    units = len(text) if text.isascii() else sum(_units(ch) for ch in text)
    return -(-units // 3)


def bound_tokens(text: str, max_tokens: int) -> str:
    """`text`, or its longest prefix followed by `…`, with `estimate_tokens` <= `max_tokens`.

    The cut falls between code points (never inside a UTF-8 sequence), on a word boundary when
    one lies in the last fifth of the kept text. `…` marks the cut so the model knows the text
    goes on; it is left out when the budget cannot hold it.
    """
    budget = max(max_tokens, 0) * 3
    used, end = 0, 0
    for ch in text:
        cost = _units(ch)
        if used + cost > budget:
            break
        used += cost
        end += 1
    else:
        return text
    marker = _units(ELLIPSIS[0]) if budget >= 2 * _units(ELLIPSIS[0]) else 0
    while end and used + marker > budget:
        end -= 1
        used -= _units(text[end])
    kept = _word_cut(text[:end]).rstrip()
    return kept + ELLIPSIS if marker and kept else kept


def _word_cut(prefix: str) -> str:
    space = prefix.rfind(" ")
    return prefix[:space] if space > len(prefix) * 0.8 else prefix


def bound_texts(texts: Sequence[str], max_tokens: int) -> list[str]:
    """`texts` bounded to `max_tokens` in total, in their order; the budget is shared fairly.

    Texts that fit their equal share are kept whole and leave what they did not use to the
    others; the longer ones are cut to equal parts of what remains. One long text therefore never
    crowds out the short ones. The sum of the `estimate_tokens` of the results is <= `max_tokens`.
    """
    costs = [estimate_tokens(text) for text in texts]
    bounded = list(texts)
    if sum(costs) <= max_tokens:
        return bounded
    remaining = max(max_tokens, 0)
    order = sorted(range(len(texts)), key=costs.__getitem__)
    for position, index in enumerate(order):
        share = remaining // (len(order) - position)
        if costs[index] > share:
            bounded[index] = bound_tokens(texts[index], share)
        remaining -= estimate_tokens(bounded[index])
    return bounded


def clean_and_bound(text: str, max_tokens: int) -> str:
    """`clean_text` of `text` cut to `bound_tokens(…, max_tokens)` (with `…` when cut).

    No text within `max_tokens` has more than 3 × `max_tokens` characters, so only one character
    more than that is cleaned: enough to tell that a cut is needed.
    """
    return bound_tokens(clean_text(text, _most_chars(max_tokens)), max_tokens)


def clean_and_bound_all(
    texts: Sequence[str], max_tokens: int, *, limit_chars: int | None = None
) -> list[str]:
    """Each `clean_text` of `texts` (cut to `limit_chars` each), bounded to `max_tokens` in total.

    Positions are kept: a text that is blank once cleaned stays in the list as "".
    """
    limit = _most_chars(max_tokens)
    limit = limit if limit_chars is None else min(limit, limit_chars)
    return bound_texts([clean_text(text, limit) for text in texts], max_tokens)


def _most_chars(max_tokens: int) -> int:
    """One more character than any text within `max_tokens` can have."""
    return 3 * max(max_tokens, 0) + 1


def user_data(fields: Mapping[str, Any]) -> str:
    """The `user` message content of a prompt: `fields` as one JSON object.

    Every string is a JSON string literal, so its quotes and line breaks are escaped and it
    cannot close the object, add a field, or pass for text of the prompt around it.
    """
    return json.dumps(fields, ensure_ascii=False)


def echoes(answer: str, prompt: str, words: int = ECHO_WORDS) -> bool:
    """Whether `answer` repeats `words` consecutive words of `prompt` (case and punctuation aside).

    A model talked into revealing its instructions gives itself away like this; a genuine answer
    does not quote ten words of them in a row.
    """
    said = _WORD.findall(answer.lower())
    phrases = _phrases(prompt, words)
    return any(" ".join(said[i : i + words]) in phrases for i in range(len(said) - words + 1))


@functools.lru_cache(maxsize=64)
def _phrases(prompt: str, words: int) -> frozenset[str]:
    """Every run of `words` consecutive words of `prompt` (prompts are few and fixed)."""
    secret = _WORD.findall(prompt.lower())
    return frozenset(" ".join(secret[i : i + words]) for i in range(len(secret) - words + 1))
