"""The labelled routing set (data/routing/messages.jsonl): valid, balanced, varied, apart from
the intent examples, and split the same way every time."""

import difflib
import re
from collections import Counter

from benchmarks.routing import KINDS, load_messages, part_of, quick_subset, split
from operators.tickets.intents import load_intents
from operators.tickets.lexical import ROUTES

MESSAGES = load_messages()


def words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def test_the_set_is_large_balanced_and_covers_every_kind() -> None:
    assert len(MESSAGES) >= 320
    per_intent = Counter(m.intent for m in MESSAGES)
    assert set(per_intent) == set(ROUTES) and min(per_intent.values()) >= 30, per_intent
    per_kind = Counter(m.kind for m in MESSAGES)
    assert set(per_kind) == set(KINDS), per_kind
    assert min(n for kind, n in per_kind.items() if kind != "follow_up") >= 30, per_kind
    assert len({m.text for m in MESSAGES}) == len(MESSAGES), "duplicate texts"


def test_second_intents_and_histories_only_where_their_kind_says() -> None:
    for m in MESSAGES:
        assert (m.also is not None) == (m.kind == "two_intents"), m
        assert m.also != m.intent, m
        assert bool(m.history) == (m.kind == "follow_up"), m


def test_non_english_messages_in_five_languages() -> None:
    text = " ".join(m.text for m in MESSAGES if m.kind in ("non_english", "mixed_language"))
    for marker in ("Bestellung", "commande", "pedido", "bestelling", "ordine"):
        assert marker in text, marker


def test_no_message_equals_or_comes_close_to_an_intent_example() -> None:
    examples = [words(e) for spec in load_intents().values() for e in spec.examples]
    for m in MESSAGES:
        text = words(m.text)
        own = set(text.split())
        for example in examples:
            matcher = difflib.SequenceMatcher(None, text, example)
            ratio = matcher.ratio() if matcher.quick_ratio() >= 0.75 else 0.0  # an upper bound
            shared = own & set(example.split())
            jaccard = len(shared) / len(own | set(example.split()))
            assert ratio < 0.75 and jaccard < 0.6, (m.text, example, ratio, jaccard)


def test_the_split_is_stable_disjoint_and_leaves_every_intent_in_both_parts() -> None:
    parts = split(MESSAGES)
    assert parts == split(load_messages())
    calibration = {m.text for m in parts["calibration"]}
    evaluation = {m.text for m in parts["evaluation"]}
    assert not calibration & evaluation
    assert len(calibration) + len(evaluation) == len(MESSAGES)
    assert 0.25 < len(calibration) / len(MESSAGES) < 0.42
    for part in parts.values():
        assert Counter(m.intent for m in part).keys() == set(ROUTES)
    # fixed by the text's SHA-256, not by its position in the file or the run
    assert part_of("Where is ORD-380091? It's overdue by a week") == "evaluation"
    assert [part_of(t) for t in ("cant login", "vpn down", "refund?", "thanks!")] == [
        "calibration", "calibration", "evaluation", "calibration",
    ]  # fmt: skip


def test_the_quick_subset_spans_every_intent() -> None:
    quick = quick_subset(split(MESSAGES)["evaluation"])
    assert 15 <= len(quick) <= 40
    assert {m.intent for m in quick} == set(ROUTES)
