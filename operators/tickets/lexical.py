"""The lexical scorer of the router: deterministic TF-IDF routing without a network (plain Python).

A text becomes stemmed terms without stop words, plus adjacent-word bigrams (order ids, email
addresses and numbers left out). Each route has a centroid: the normalised sum of the TF-IDF
vectors of its examples and its description; a text scores, per route, the cosine of its TF-IDF
vector to that centroid. `decide` turns route scores into the best route and its softmax weight;
`blend` adds the scores of a session's earlier turns to those of a follow-up.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Protocol, get_args

from operators.runtime.memo import remember
from schemas.tickets import Route

ROUTES: tuple[Route, ...] = get_args(Route)
FALLBACK_ROUTE: Route = "general"
LEXICAL_TEMPERATURE = 0.1
CONTEXT_WEIGHT = 1.0

RouteScores = dict[Route, float]
Vector = dict[str, float]

_WORD_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
_WORD = re.compile(f"[{_WORD_CHARACTERS}]+")
_IDENTIFIER_PARTS = (r"\bORD[-_ ]?\d+\b", r"\S+@\S+", r"\b\d+(?:[.,]\d+)?\b")
_IDENTIFIERS = re.compile("|".join(_IDENTIFIER_PARTS), re.IGNORECASE)
# The same patterns for lower-cased ASCII text (where `re.IGNORECASE` changes nothing), and
# with the two branches that start with `\b` sharing it: the same matches, found faster.
_IDENTIFIERS_LOWER = re.compile("|".join(_IDENTIFIER_PARTS).replace("ORD", "ord"))
_DIGITS_ONLY_LOWER = re.compile(r"\b(?:ord[-_ ]?\d+\b|\d+(?:[.,]\d+)?\b)")
_DIGIT = re.compile(r"\d")
_ORDER_ID_LOWER = re.compile(r"ord[-_ ]?\d+\b")
"""The order-id branch of `_IDENTIFIERS_LOWER` without its leading `\b` (`_cut_order_id` checks
it): a pattern that starts with a literal is searched for that literal first."""
_BEFORE_A_WORD = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _cut_order_id(match: re.Match[str]) -> str:
    """A space for an order id that `\b` allows (no word character before it), else the text
    as it was. A match it rejects holds no other `ord` after its start, so the matches found
    after it are those of the pattern with its `\b`."""
    start = match.start()
    if start and match.string[start - 1] in _BEFORE_A_WORD:
        return match.group(0)
    return " "


_STOP_WORDS_TEXT = """
a an and are as at be been but by can could did do does for from had has have hello hi i im in is
it its just me my of on or our please so that the their them there this to us was we were what
when where which who why will with would you your
"""
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
_SUFFIXES = ("ing", "ed", "es", "s", "ly")


class DescribedIntent(Protocol):
    """What the lexical scorer reads of an intent: its example messages and its description."""

    @property
    def examples(self) -> Sequence[str]: ...

    @property
    def description(self) -> str: ...


def stem(word: str) -> str:
    """A light suffix stripper: `delayed`, `delays`, `delaying`, `delay` all become `delay`.

    A final `e` is dropped too, so `update`/`updated` and `charge`/`charges` meet.
    """
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


_STEMS: dict[str, str] = {}
_STEMS_MAX = 50_000
"""Memo of `stem` for the words seen (cleared when full, so user text cannot grow it)."""

_STOPPED = ""
"""What `_STEMS` holds for a stop word (no stem is empty: a word has at least one character)."""


def _stem_all(words: list[str]) -> list[str]:
    """The stems of `words` that are not stop words, in order (one memo lookup per word)."""
    stems = _STEMS
    out = []
    for word in words:
        stemmed = stems.get(word)
        if stemmed is None:
            stemmed = remember(
                stems, _STEMS_MAX, word, _STOPPED if word in _STOP_WORDS else stem(word)
            )
        if stemmed:
            out.append(stemmed)
    return out


def _plain_lower(text: str) -> str:
    """`_IDENTIFIERS.sub(" ", text).lower()`, computed faster for ASCII text: lower-cased first,
    then the lower-case pattern (no email branch without an `@`, no pattern without a digit)."""
    if not text.isascii():
        return _IDENTIFIERS.sub(" ", text).lower()
    lowered = text.lower()
    if "@" in lowered:
        return _IDENTIFIERS_LOWER.sub(" ", lowered)
    if _DIGIT.search(lowered) is not None:
        return _DIGITS_ONLY_LOWER.sub(" ", lowered)
    return lowered


def terms(text: str) -> list[str]:
    """Stemmed words without stop words, plus adjacent-word bigrams.

    Order ids, email addresses and numbers are left out: they name things, not intents.
    """
    words = _words(text)
    return words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]


def _words(text: str) -> list[str]:
    """The stemmed words of `terms(text)`, without the bigrams."""
    plain = _plain_lower(text).replace("'", "")
    return _stem_all(_WORD.findall(plain))


def _normalise(vector: Vector) -> Vector:
    norm = math.sqrt(sum(v * v for v in vector.values()))
    return {k: v / norm for k, v in vector.items()} if norm else {}


def _dot(a: Vector, b: Vector) -> float:
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return sum(v * large.get(k, 0.0) for k, v in small.items())


def decide(scores: RouteScores, temperature: float) -> tuple[Route, float]:
    """The best route and its softmax weight; `general` at 1/len(routes) when nothing scored."""
    return decide_values([scores.get(route, 0.0) for route in ROUTES], temperature)


def decide_values(values: Sequence[float], temperature: float) -> tuple[Route, float]:
    """`decide` of the scores given in the order of `ROUTES`."""
    top = max(values)
    position = values.index(top)  # the first best route, as `max(ROUTES, key=...)` picks
    if top <= 0.0:
        return FALLBACK_ROUTE, 1.0 / len(ROUTES)
    shifted = map(operator.sub, values, itertools.repeat(top))
    scaled = map(operator.truediv, shifted, itertools.repeat(temperature))
    weights = list(map(math.exp, scaled))  # `exp((value - top) / temperature)`, in C
    return ROUTES[position], weights[position] / sum(weights)


def blend(
    current: RouteScores, context: RouteScores, weight: float = CONTEXT_WEIGHT
) -> RouteScores:
    """Route scores of a follow-up: its own plus `weight` times those of the earlier turns."""
    return {r: current.get(r, 0.0) + weight * context.get(r, 0.0) for r in ROUTES}


def blend_values(
    current: Sequence[float], context: Sequence[float], weight: float = CONTEXT_WEIGHT
) -> tuple[float, ...]:
    """`blend` of scores given in the order of `ROUTES`."""
    if len(current) != len(context):
        raise ValueError("blend_values needs as many scores in both")
    # `c + weight * x` of each pair, in C
    return tuple(map(operator.add, current, map(operator.mul, itertools.repeat(weight), context)))


_WORD_BYTES = bytes(code if chr(code) in _WORD_CHARACTERS else ord(" ") for code in range(256))
"""`bytes.translate` table: every byte `_WORD` does not match becomes a space, so the runs
`split` finds in ASCII text are the words `_WORD` finds."""

_SEPARATOR = "|"
"""A word of a text that no centroid knows, as it stands in the text's key: it only parts the
known words around it, so they make no bigram (no stem is `|`: words are `[a-z0-9]+`)."""

Key = str
"""The known stems of a text in order, with `_SEPARATOR` for each word no centroid knows and no
stop words, each followed by a space (no stem holds one): its TF-IDF vector is a function of this
alone (`LexicalScorer._vector`), and the key of texts joined by spaces is their keys one after
another. A string, not a tuple of them: the garbage collector never tracks a string and it is
hashed once, so the memos that keep keys give the collector nothing to walk."""


def _joins_an_identifier(first: str, second: str) -> bool:
    """Whether `f"{first} {second}"` may hold an identifier neither text holds alone: the only
    pattern that can span a space is an order id, `ORD` at the end of `first` and digits at the
    start of `second` (non-ASCII text at the end of `first` counts as a possible `ORD`)."""
    if not second[:1].isdigit():  # `str.isdigit` holds for every `\d`
        return False
    tail = first[-3:]
    return not tail.isascii() or tail.lower() == "ord"


class _WordTable(dict[bytes, str]):
    """Word (ASCII bytes) → what it stands as in a key: "" for a stop word or a number (all
    digits: see `LexicalScorer._number_token`), else its stem when a centroid knows it (it is in
    `idf`), else `_SEPARATOR`, followed by a space (`Key`). A word not held yet is worked out on
    lookup (`__missing__`, which `dict.__getitem__` calls), so a key's words are mapped in C with
    one lookup each; the table is emptied when it holds `limit` words."""

    def __init__(self, idf: Mapping[str, float], limit: int) -> None:
        super().__init__()
        self._idf = idf
        self._limit = limit

    def __missing__(self, word: bytes) -> str:
        text = word.decode("ascii")
        token = _STOPPED if text in _STOP_WORDS or text.isdigit() else self.known(text)
        return remember(self, self._limit, word, token)

    def known(self, word: str) -> str:
        """The stem of `word` when a centroid knows it, else `_SEPARATOR`, and a space."""
        stemmed = stem(word)
        return f"{stemmed if stemmed in self._idf else _SEPARATOR} "


class LexicalScorer:
    """A TF-IDF centroid per route, built from the examples and description of every intent.

    A text is first reduced to its key (`Key`): one lookup per word in a table of the words seen
    (word → its stem when a centroid knows it, `_SEPARATOR` when none does, empty for a stop
    word). Its scores and route are kept per key, for up to `SCORE_CACHE` keys (surge traffic
    repeats what it says with other names, ids and numbers, which the key leaves out; the memos
    are emptied when full). The memos keep strings, floats and score tuples of numbers only, which
    the garbage collector stops tracking (a score tuple after its first collection, the rest
    never): a route is kept as its name and its confidence in two dicts, not as a pair. A key
    not kept is scored by walking its terms once through a precomputed table (term → its weight
    in each route's centroid). The sums are taken in the order the plain cosine (`_dot`) takes
    them, so the scores are the same floats to the last bit. A bigram is looked up as a pair of
    stems (first → second → term), since a term unknown to every centroid weighs nothing.
    """

    SCORE_CACHE = 16384
    WORD_CACHE = 50_000

    def __init__(self, intents: Mapping[Route, DescribedIntent]) -> None:
        documents = [terms(text) for spec in intents.values() for text in spec.examples]
        documents += [terms(spec.description) for spec in intents.values()]
        document_frequency = Counter(term for doc in documents for term in set(doc))
        n = len(documents)
        self._idf = {t: math.log((1 + n) / (1 + df)) + 1.0 for t, df in document_frequency.items()}
        self._bigrams: dict[str, dict[str, str]] = {}  # first stem → second stem → term
        for term in self._idf:
            first, underscore, second = term.partition("_")
            if underscore:  # words are [a-z0-9]+: a term with `_` is exactly one bigram
                self._bigrams.setdefault(first, {})[second] = term
        self._word_tokens = _WordTable(self._idf, self.WORD_CACHE)
        self._keys: dict[str, Key] = {}
        self._centroids = {route: self._centroid(intents[route]) for route in ROUTES}
        self._postings: dict[str, list[tuple[int, float]]] = {}
        for position, centroid in enumerate(self._centroids.values()):
            for term, weight in centroid.items():
                self._postings.setdefault(term, []).append((position, weight))
        self._sizes = [len(c) for c in self._centroids.values()]
        self._smallest = min(self._sizes)
        self._no_scores: list[float] = [0] * len(self._sizes)  # ints, as `sum` starts
        self._scores: dict[Key, tuple[float, ...]] = {}
        self._route_names: dict[Key, Route] = {}
        self._confidences: dict[Key, float] = {}

    def _tokens(self, words: list[bytes]) -> list[str]:
        """What each word stands as (`_WordTable`): one lookup per word in the table."""
        return list(map(self._word_tokens.__getitem__, words))

    def _number_token(self, word: bytes) -> str:
        """What a word of digits stands as in a key when the identifier patterns left it in the
        text (next to `_`, or to a non-ASCII letter): a word like any other. The word table gives
        "" for every number, as the fast path of `_key` needs; `_key` asks this for the others."""
        return self._word_tokens.known(word.decode("ascii"))

    def key(self, text: str) -> Key:
        """The key of `text` (`Key`): its words (`terms`), stop words left out and unknown
        stems as `_SEPARATOR` (kept per text for up to `SCORE_CACHE` texts)."""
        key = self._keys.get(text)
        if key is None:
            key = remember(self._keys, self.SCORE_CACHE, text, self._key(text))
        return key

    def _key(self, text: str) -> Key:
        lowered = text.lower() if text.isascii() else None
        if lowered is not None and not ("@" in lowered or "'" in lowered or "_" in lowered):
            # ASCII without `@` (an email), an apostrophe (deleted after the patterns ran, it
            # joins the words around it) or `_` (a word character to `\b`, not to `_WORD`):
            # the identifiers are order ids, cut out here, and numbers, every word of digits
            # (a word's edges are then `\b`s), which the word table leaves out.
            if "ord" in lowered:
                lowered = _ORDER_ID_LOWER.sub(_cut_order_id, lowered)
            words = lowered.encode("ascii").translate(_WORD_BYTES).split()
            return "".join(map(self._word_tokens.__getitem__, words))
        plain = _plain_lower(text)
        if plain.isascii():  # `_WORD.findall(plain.replace("'", ""))`, as bytes, found in C
            words = plain.encode("ascii").translate(_WORD_BYTES, b"'").split()
        else:
            words = [w.encode("ascii") for w in _WORD.findall(plain.replace("'", ""))]
        held = self._tokens(words)
        if any(map(bytes.isdigit, words)):  # numbers the patterns left in: words, not ""
            held = [
                self._number_token(w) if w.isdigit() else t
                for w, t in zip(words, held, strict=True)
            ]
        return "".join(held)

    def _tfidf(self, text: str) -> Vector:
        return self._vector(self._key(text))

    def _vector(self, key: Key) -> Vector:
        """The normalised TF-IDF vector of a text of key `key`: its known terms in the order of
        `terms(text)`, unigrams then bigrams."""
        idf = self._idf
        counts = self._counts(key)
        log = math.log  # (1 + log(1)) * idf is idf exactly
        return _normalise(
            {t: (1 + log(c)) * idf[t] if c > 1 else idf[t] for t, c in counts.items()}
        )

    def _counts(self, key: Key) -> dict[str, int]:
        """How often each known term of a text of key `key` occurs in it: its stems, then the
        bigrams of adjacent stems that a centroid knows, in the order they first occur."""
        counts: dict[str, int] = {}
        count = counts.get
        stems = key.split()
        for t in stems:
            if t != _SEPARATOR:
                counts[t] = count(t, 0) + 1
        bigrams = self._bigrams
        for a, b in itertools.pairwise(stems):
            seconds = bigrams.get(a)
            if seconds is not None:
                bigram = seconds.get(b)  # f"{a}_{b}" when it is in `idf`
                if bigram is not None:
                    counts[bigram] = count(bigram, 0) + 1
        return counts

    def _centroid(self, spec: DescribedIntent) -> Vector:
        total: Counter[str] = Counter()
        for text in (*spec.examples, spec.description):
            total.update(self._tfidf(text))
        return _normalise(dict(total))

    def scores(self, text: str) -> RouteScores:
        """Per route: the cosine of the TF-IDF vector of `text` to the route's centroid."""
        return dict(zip(self._centroids, self.values(text), strict=True))

    def values(self, text: str) -> tuple[float, ...]:
        """`scores(text)` in the order of `ROUTES` (shared: do not change it)."""
        return self._values(self.key(text))

    def joined_values(self, texts: Sequence[str]) -> tuple[float, ...]:
        """`values(" ".join(texts))`, from the keys of `texts` (each kept per text) when the
        join makes no identifier across a space: the words of the joined text are then those of
        each text in turn, so its key is theirs one after another."""
        if len(texts) == 1:
            return self.values(texts[0])
        if any(map(_joins_an_identifier, texts, texts[1:])):
            return self.values(" ".join(texts))
        key = self.key
        return self._values("".join(map(key, texts)))

    def _values(self, key: Key) -> tuple[float, ...]:
        cached = self._scores.get(key)
        if cached is None:
            cached = remember(self._scores, self.SCORE_CACHE, key, self._score(key))
        return cached

    def _score(self, key: Key) -> tuple[float, ...]:
        """The scores of a text of key `key`: `_vector` and the cosines in one pass, with the
        same operations in the same order (the weights, their norm, each weight over the norm,
        then each route's sum over the query's terms)."""
        counts = self._counts(key)
        sums: list[float] = self._no_scores.copy()
        if not counts:
            return tuple(sums)
        idf, log = self._idf, math.log  # (1 + log(1)) * idf is idf exactly
        weights = [(1 + log(c)) * idf[t] if c > 1 else idf[t] for t, c in counts.items()]
        norm = math.sqrt(sum(map(operator.mul, weights, weights)))
        postings = self._postings
        for term, weight in zip(counts, weights, strict=True):
            weight /= norm
            for position, centroid_weight in postings[term]:  # every known term has some
                sums[position] += weight * centroid_weight
        size = len(counts)
        if size > self._smallest:  # `_dot` walks the smaller vector: that route's order
            query = {t: w / norm for t, w in zip(counts, weights, strict=True)}
            for position, centroid in enumerate(self._centroids.values()):
                if size > len(centroid):
                    sums[position] = _dot(query, centroid)
        return tuple(sums)

    def route(self, text: str) -> tuple[Route, float]:
        """The deterministic route and confidence of `text` (kept per key with its scores)."""
        key = self.key(text)
        confidence = self._confidences.get(key)
        if confidence is not None:
            route = self._route_names.get(key)  # none when emptied since: decided again
            if route is not None:
                return route, confidence
        route, confidence = decide_values(self._values(key), LEXICAL_TEMPERATURE)
        remember(self._route_names, self.SCORE_CACHE, key, route)
        remember(self._confidences, self.SCORE_CACHE, key, confidence)
        return route, confidence
