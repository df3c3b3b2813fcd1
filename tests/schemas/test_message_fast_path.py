"""`TicketMessage.from_common_shape` gives exactly what `TicketMessage.model_validate` gives.

Hypothesis draws parsed JSON objects around the common shape: every field well formed, or one or
several of them as validation changes them (padded identifiers and text, other time zones and
spellings of timestamps) or refuses them (bad characters, unknown channels and tiers, empty or
long text, impossible dates, timestamps out of range or ahead of the wall clock, other types,
unknown or missing fields). Whenever the fast path answers, validation gives an equal model: the
same field values, fields set, time zones and JSON bytes. The well-formed draws must take the
fast path (else it would prove nothing).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

import schemas.tickets as tickets
from schemas.common import TimeBounds, is_utc_text
from schemas.tickets import TicketMessage, message_from_common_shape
from tests.schemas.fast_paths import (
    BOUNDS,
    ID,
    ODD_TIMES,
    assert_agrees,
    assert_same,
    other_bounds,
    spoil,
    times,
    validated,
)

PAD = st.sampled_from([" ", "\t", "\u00a0", "\u2003", "\x1c", "\n", "\u0085", "\u200b"])


def stripped(low: int, high: int) -> st.SearchStrategy[str]:
    """Text of `low..high` characters that stripping leaves as it is."""
    return st.text(min_size=low, max_size=high).map(str.strip).filter(lambda t: len(t) >= low)


COMMON: dict[str, st.SearchStrategy[Any]] = {
    "message_id": ID,
    "session_id": ID,
    "channel": st.sampled_from(sorted(tickets._CHANNELS)),
    "sender": stripped(1, 60),
    "subject": st.one_of(st.none(), stripped(1, 60)),
    "body": stripped(1, 300),
    "sent_at": times(True),
    "customer_tier": st.sampled_from(sorted(tickets._TIERS)),
}
"""Values of the common shape (the fast path's)."""

WILD: dict[str, st.SearchStrategy[Any]] = {
    "message_id": st.one_of(
        st.builds(lambda p, i: p + i, PAD, ID),
        st.text(max_size=70),
        st.integers(),
        ID.map(lambda i: i * 5),
    ),
    "session_id": st.one_of(st.builds(lambda i, p: i + p, ID, PAD), st.just(""), st.none()),
    "channel": st.sampled_from(["Email", " chat", "chat ", "sms", "", 3, None, ["it"]]),
    "sender": st.one_of(
        st.builds(lambda p, t: p + t, PAD, st.text(max_size=20)),
        st.builds(lambda t, p: t + p, st.text(max_size=20), PAD),
        st.integers(195, 205).map(lambda n: "s" * n),
        st.sampled_from(["", None, 5, b"x".decode()]),
    ),
    "subject": st.one_of(
        st.builds(lambda p, t: p + t, PAD, st.text(max_size=20)),
        st.integers(195, 205).map(lambda n: "s" * n),
        st.sampled_from(["", " ", 7, ["a"]]),
    ),
    "body": st.one_of(
        st.builds(lambda t, p: t + p, st.text(max_size=20), PAD),
        st.integers(7995, 8005).map(lambda n: "b" * n),
        st.sampled_from(["", "   ", None, 1.5, {"a": "b"}]),
    ),
    "sent_at": st.one_of(
        times(False),
        st.integers(0, 2_000_000_000),
        st.sampled_from([*ODD_TIMES, "2100-01-01T00:00:00.000001Z"]),
    ),
    "customer_tier": st.sampled_from(["Gold", "gold ", "vip", "", None, 1]),
}
"""Values validation changes or refuses."""


@st.composite
def objects(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A parsed message and whether it is of the common shape by construction."""
    fields = {name: draw(value) for name, value in COMMON.items()}
    common = spoil(draw, fields, WILD, ("subject", "customer_tier"), tickets._MESSAGE_REQUIRED)
    if draw(st.integers(0, 4)) == 0:  # JSON keeps the order of the text, not of the model
        fields = dict(reversed(list(fields.items())))
    return fields, common


MESSAGE = {
    "message_id": "M1", "session_id": "S1", "channel": "chat", "sender": "ana",
    "body": "Where is my order?", "sent_at": "2026-12-06T10:00:00Z",
}  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(objects())
@example(({**MESSAGE, "sent_at": "2026-12-07T12:00:00Z", "subject": None}, True))
@example(({**MESSAGE, "sent_at": "2026-12-07T12:00:00.000001Z"}, False))
@example(({**MESSAGE, "body": "b" * 8000, "sender": "s" * 200, "subject": "t" * 200}, True))
@example(({**MESSAGE, "body": "b" * 8001}, False))
@example(({**MESSAGE, "sender": "s" * 201}, False))
@example(({**MESSAGE, "body": "x\u0085"}, False))
@example(({**MESSAGE, "body": "x\x1c"}, False))
@example(({**MESSAGE, "customer_tier": "platinum", "subject": "Hi"}, True))
def test_the_fast_path_gives_what_validation_gives(drawn: tuple[dict[str, Any], bool]) -> None:
    assert_agrees(message_from_common_shape, TicketMessage, drawn, BOUNDS)


@settings(max_examples=1000, deadline=None)
@given(objects(), other_bounds())
def test_other_bounds_agree_too(drawn: tuple[dict[str, Any], bool], bounds: TimeBounds) -> None:
    assert_agrees(message_from_common_shape, TicketMessage, (drawn[0], False), bounds)


def test_times_outside_the_common_form_are_left_to_validation() -> None:
    fast = message_from_common_shape({**MESSAGE, "sent_at": "2026-12-06T10:00:00+00:00"}, BOUNDS)
    assert fast is not None and fast.sent_at == datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert fast.sent_at.tzinfo is UTC
    for odd in ("2026-02-30T10:00:00Z", "2026-12-06 10:00:00Z", "2026-12-06T10:00:00+01:00", 1):
        assert message_from_common_shape({**MESSAGE, "sent_at": odd}, BOUNDS) is None
    assert is_utc_text("2026-12-06T10:00:00.123456Z") and not is_utc_text("2026-12-06T10:00Z")


def test_the_classmethod_is_the_function_and_a_subclass_gets_none() -> None:
    fast = TicketMessage.from_common_shape(MESSAGE, BOUNDS)
    assert fast is not None
    assert_same(fast, TicketMessage.model_validate(MESSAGE, context=BOUNDS.context()))

    class Stricter(TicketMessage):
        pass

    assert Stricter.from_common_shape(MESSAGE, BOUNDS) is None


def test_both_ids_are_checked_whole_by_the_one_match() -> None:
    """The ids are matched joined by a unit separator: one holding it (or empty, or too long)
    cannot pass for two ids."""
    assert message_from_common_shape(MESSAGE, BOUNDS) is not None
    long = "i" * 64
    assert message_from_common_shape({**MESSAGE, "message_id": long, "session_id": long}, BOUNDS)
    for message_id, session_id in [
        ("M\x1fS", "S1"), ("M1", "M\x1fS"), ("", "M1\x1fS1"), ("M1\x1fS1", ""),
        ("i" * 65, "S1"), ("M1", "i" * 65), ("M 1", "S1"), ("M1", "S1\n"),
    ]:  # fmt: skip
        obj = {**MESSAGE, "message_id": message_id, "session_id": session_id}
        assert message_from_common_shape(obj, BOUNDS) is None, obj
        slow = validated(TicketMessage, obj, BOUNDS)  # refused, or changed by stripping
        assert slow is None or (slow.message_id, slow.session_id) != (message_id, session_id)


def test_the_joined_match_reads_timestamps_as_is_utc_text_does() -> None:
    """`is_common_codes` holds `is_utc_text`'s pattern, and a field holding the separator never
    matches (it would add a part)."""
    assert is_utc_text.__self__.pattern == tickets._UTC_TEXT  # type: ignore[attr-defined]
    good = {**MESSAGE, "customer_tier": "gold"}
    assert message_from_common_shape(good, BOUNDS) is not None
    for name in ("message_id", "session_id", "channel", "customer_tier", "sent_at"):
        assert message_from_common_shape({**good, name: good[name] + "\x1f"}, BOUNDS) is None
    assert message_from_common_shape({**good, "message_id": "M1\x1fS1"}, BOUNDS) is None
