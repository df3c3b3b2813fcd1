"""What the lexical router's memos leave for Python's cyclic garbage collector to walk.

A young collection walks every tracked object allocated since the last one that is still alive;
what a memo keeps per text counts towards the next collection and is walked by it. Strings,
numbers and dicts holding only those are never tracked; a tuple of them is untracked by the
first collection that sees it.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator

from operators.tickets import lexical
from operators.tickets.intents import IntentIndex
from operators.tickets.lexical import LexicalScorer

INDEX = IntentIndex.from_file()
EXAMPLES = [text for spec in INDEX.intents.values() for text in spec.examples]
TEXTS = [
    *EXAMPLES,
    *(f"{text} ORD-{n} 4 days" for n, text in enumerate(EXAMPLES)),  # the same keys
    "parcel 12 late", "it's my ORD-123 refund", "é refund 12", "x_12 refund", "a@b.c late", "",
]  # fmt: skip


def routed(scorer: LexicalScorer) -> None:
    """Every text routed and scored, and follow-ups' earlier turns joined, as the router does."""
    for text in TEXTS:
        scorer.route(text)
        scorer.values(text)
    for turns in itertools.pairwise(TEXTS):
        scorer.joined_values(turns)


def entries(memo: dict[object, object]) -> Iterator[object]:
    return itertools.chain(memo, memo.values())


def test_the_router_memos_keep_nothing_the_collector_walks_twice() -> None:
    """Keys, route names and confidences are never tracked, nor the dicts that hold them; score
    tuples are untracked by the first young collection; the word table and the stem memo hold
    strings."""
    scorer = LexicalScorer(INDEX.intents)
    routed(scorer)
    never = (scorer._keys, scorer._route_names, scorer._confidences, lexical._STEMS)
    assert all(never) and scorer._scores, "each memo holds entries"
    for memo in never:
        assert not gc.is_tracked(memo), "a dict of strings and numbers is never tracked"
    gc.collect(0)
    for memo in (*never, scorer._scores, scorer._word_tokens):
        assert [e for e in entries(memo) if gc.is_tracked(e)] == []


def test_routing_leaves_one_tracked_object_per_scored_key() -> None:
    """The tracked objects routing leaves alive (those in the young generation after it, with
    collections off) are the score tuples, one per key scored: no key tuple per text and no
    (route, confidence) pair per key."""
    scorer = LexicalScorer(INDEX.intents)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        young = {id(o) for o in gc.get_objects(0)}
        routed(scorer)
        left = [o for o in gc.get_objects(0) if id(o) not in young and o is not young]
    finally:
        if was_enabled:
            gc.enable()
    scores = scorer._scores
    assert len(scorer._keys) > len(scores) / 2, "most texts have a key of their own"
    memos = (scorer._keys, scores, scorer._route_names, scorer._confidences, scorer._word_tokens)
    kept = {id(entry) for memo in memos for entry in entries(memo)}
    held = [o for o in left if id(o) in kept]
    assert sorted(map(id, held)) == sorted(map(id, scores.values())), "the score tuples only"
    assert any(o is scores for o in left), "and the dict of score tuples (it holds tuples)"
