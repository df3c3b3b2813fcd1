"""Session history: the pure logic with an injected clock, and the Bytewax operator."""

import logging
import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from bytewax.testing import TestingSink, TestingSource, run_main

from operators.config.settings import Settings
from operators.runtime.metrics import live_state_keys
from operators.tickets.domain import ContextTicket, ParsedTicket, Turn
from operators.tickets.sessions import (
    MAX_TURN_CHARS,
    STATE_VERSION,
    SessionHistory,
    SessionLogic,
    SessionParams,
    session_history,
    turn_of,
)
from schemas import Entities, SourceRef, TicketMessage
from schemas.dead_letter import DeadLetter

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)  # in the past: Bytewax timers fire at once
TTL = timedelta(minutes=30)

PARAMS = SessionParams.from_settings(Settings().tickets)


def parsed(session: str, n: int, at: datetime) -> ParsedTicket:
    message = TicketMessage(
        message_id=f"{session}-M{n}",
        session_id=session,
        channel="chat",
        sender="visitor",
        body=f"message {n}",
        sent_at=at,
    )
    return ParsedTicket(
        message=message,
        source=SourceRef(topic="tickets.messages", partition=0, offset=n),
        base_priority="high",
        response_sla_minutes=5,
        text=f"message {n}",
        entities=Entities(),
    )


def turn(n: int, at: datetime = T0) -> Turn:
    return Turn(message_id=f"M{n}", text=f"text {n}", sent_at=at)


def test_record_returns_the_turns_before_the_new_one() -> None:
    history = SessionHistory(max_messages=10, ttl=TTL)
    assert history.record(turn(1), T0) == ()
    assert history.record(turn(2), T0 + timedelta(minutes=1)) == (turn(1),)
    assert history.record(turn(3), T0 + timedelta(minutes=2)) == (turn(1), turn(2))


def test_only_the_last_k_turns_are_kept() -> None:
    history = SessionHistory(max_messages=2, ttl=TTL)
    for n in range(5):
        history.record(turn(n), T0)
    assert [t.message_id for t in history.turns] == ["M3", "M4"]


def test_the_session_expires_after_the_ttl_of_inactivity() -> None:
    history = SessionHistory(max_messages=10, ttl=TTL)
    assert history.expires_at() is None
    history.record(turn(1), T0)
    history.record(turn(2), T0 + timedelta(minutes=20))
    assert history.expires_at() == T0 + timedelta(minutes=50)
    assert not history.is_expired(T0 + timedelta(minutes=49))
    assert history.is_expired(T0 + timedelta(minutes=50))
    assert history.record(turn(3), T0 + timedelta(minutes=51)) == ()


def test_a_message_already_held_is_found_with_the_turns_before_it() -> None:
    history = SessionHistory(max_messages=10, ttl=TTL)
    for n in range(3):
        history.record(turn(n), T0)
    assert history.history_before("M1") == (turn(0),)
    assert history.history_before("M0") == ()
    assert history.history_before("M9") is None


def test_logic_flags_a_resent_message_as_replay_without_recording_it_again() -> None:
    logic = SessionLogic(SessionHistory(max_messages=10, ttl=TTL), lambda: T0)
    first, _ = logic.on_item(parsed("S", 1, T0))
    logic.on_item(parsed("S", 2, T0))
    (again,), discard = logic.on_item(parsed("S", 1, T0))
    assert again.replay and not next(iter(first)).replay
    assert again.history == ()
    assert discard is StatefulLogic.RETAIN
    assert [t.message_id for t in logic.history.turns] == ["S-M1", "S-M2"]


def test_snapshot_is_plain_versioned_and_independent_of_later_changes() -> None:
    history = SessionHistory(max_messages=10, ttl=TTL)
    history.record(turn(1), T0)
    state = history.snapshot()
    history.record(turn(2), T0)
    assert state == {"version": STATE_VERSION, "last_seen": T0, "turns": [("M1", "text 1", T0)]}
    restored = SessionHistory.from_state(
        pickle.loads(pickle.dumps(state)), max_messages=10, ttl=TTL
    )
    assert restored.turns == [turn(1)]
    assert restored.last_seen == T0


def test_restore_trims_to_the_configured_size() -> None:
    history = SessionHistory(max_messages=10, ttl=TTL)
    for n in range(4):
        history.record(turn(n), T0)
    restored = SessionHistory.from_state(history.snapshot(), max_messages=2, ttl=TTL)
    assert [t.message_id for t in restored.turns] == ["M2", "M3"]


def test_a_snapshot_of_another_version_starts_an_empty_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stale = {"version": STATE_VERSION + 1, "last_seen": T0, "turns": []}
    with caplog.at_level(logging.WARNING, logger="operators.tickets.sessions"):
        restored = SessionHistory.from_state(stale, max_messages=10, ttl=TTL)
    assert restored.turns == [] and restored.last_seen is None
    assert "version" in caplog.text


def test_naive_times_are_rejected() -> None:
    history = SessionHistory(max_messages=10, ttl=TTL)
    with pytest.raises(ValueError, match="naive"):
        history.record(turn(1), datetime(2024, 1, 1, 12, 0))


def test_logic_discards_on_notify_only_once_expired() -> None:
    clock = {"now": T0}
    logic = SessionLogic(SessionHistory(max_messages=10, ttl=TTL), lambda: clock["now"])
    assert logic.notify_at() is None
    emitted, discard = logic.on_item(parsed("S", 1, T0))
    assert [c.history for c in emitted] == [()]
    assert discard is StatefulLogic.RETAIN
    assert logic.notify_at() == T0 + TTL
    clock["now"] = T0 + TTL - timedelta(seconds=1)
    assert logic.on_notify() == ([], StatefulLogic.RETAIN)
    clock["now"] = T0 + TTL
    assert logic.on_notify() == ([], StatefulLogic.DISCARD)


def test_operator_emits_history_and_discards_expired_sessions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds: list[object] = []
    init = SessionLogic.__init__

    def recording_init(self: SessionLogic, history: SessionHistory, *args: object) -> None:
        builds.append((list(history.turns), history.last_seen))  # what the session starts from
        init(self, history, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(SessionLogic, "__init__", recording_init)
    clock = {"now": T0}

    def advance_clock(t: ParsedTicket) -> ParsedTicket:
        clock["now"] = t.message.sent_at  # the wall clock of the test follows the messages
        return t

    items = [
        parsed("S1", 1, T0),
        parsed("S1", 2, T0 + timedelta(minutes=1)),
        parsed("S1", 2, T0 + timedelta(minutes=1)),  # re-sent duplicate
        parsed("S1", 3, T0 + timedelta(minutes=2)),
        parsed("S2", 1, T0 + timedelta(hours=2)),  # S1 has now been idle for more than the TTL
        parsed("S1", 4, T0 + timedelta(hours=2, minutes=1)),
    ]
    out: list[ContextTicket] = []
    flow = Dataflow("sessions_test")
    ticks = op.map("clock", op.input("in", flow, TestingSource(items)), advance_clock)
    keyed = op.key_on("key", ticks, lambda t: t.message.session_id)
    contexts = session_history(
        "session_history",
        keyed,
        params=SessionParams.from_settings(Settings(session_max_messages=2).tickets),
        now=lambda: clock["now"],
    )
    op.output("out", op.key_rm("unkey", contexts.contexts), TestingSink(out))
    run_main(flow)

    seen = [(c.message.message_id, [t.message_id for t in c.history], c.replay) for c in out]
    assert seen == [
        ("S1-M1", [], False),
        ("S1-M2", ["S1-M1"], False),
        ("S1-M2", ["S1-M1"], True),
        ("S1-M3", ["S1-M1", "S1-M2"], False),
        ("S2-M1", [], False),
        ("S1-M4", [], False),
    ]
    assert all(c.source.topic == "tickets.messages" for c in out)
    # S1, S2 and S1 again: the expired S1 state was discarded and rebuilt from nothing.
    assert builds == [([], None), ([], None), ([], None)]


def test_live_sessions_go_back_down_as_sessions_expire() -> None:
    """100 sessions of two messages, then one much later: the expiry timers free the first 100
    (the wall clock follows the messages), leaving only the last session's state."""
    items = [
        parsed(f"L{n}", m, T0 + timedelta(seconds=n * 10 + m)) for n in range(100) for m in (1, 2)
    ]
    items += [parsed("LATE", m, T0 + timedelta(hours=3, seconds=m)) for m in range(1, 6)]
    clock = {"now": T0}
    seen: list[int] = []

    def advance_clock(t: ParsedTicket) -> ParsedTicket:
        clock["now"] = t.message.sent_at
        return t

    flow = Dataflow("live_sessions_test")
    ticks = op.map("clock", op.input("in", flow, TestingSource(items)), advance_clock)
    keyed = op.key_on("key", ticks, lambda t: t.message.session_id)
    contexts = session_history("history", keyed, params=PARAMS, now=lambda: clock["now"])
    counted = op.inspect(
        "count",
        contexts.contexts,
        lambda *_: seen.append(live_state_keys("live_sessions_test", "history")),
    )
    op.output("out", op.key_rm("unkey", counted), TestingSink([]))
    run_main(flow)

    assert max(seen) >= 100, "every session held state while it was active"
    assert live_state_keys("live_sessions_test", "history") == 1, "only LATE is left"


def run_sessions(
    flow_id: str, items: list[ParsedTicket], now: Callable[[], datetime]
) -> tuple[list[ContextTicket], list[DeadLetter]]:
    """`items` through a dataflow of the one `session_history` step: its contexts and dead
    letters."""
    out: list[ContextTicket] = []
    dead: list[DeadLetter] = []
    flow = Dataflow(flow_id)
    keyed = op.key_on(
        "key", op.input("in", flow, TestingSource(items)), lambda t: t.message.session_id
    )
    sessions = session_history("session_history", keyed, params=PARAMS, now=now)
    op.output("out", op.key_rm("unkey", sessions.contexts), TestingSink(out))
    op.output("dead", sessions.dead_letters, TestingSink(dead))
    run_main(flow)
    return out, dead


def test_a_message_the_step_raises_on_is_dead_lettered_and_its_session_goes_on() -> None:
    """The wall clock answers a naive time for one message (the logic raises on it): that
    message is a processing_error dead letter, the session keeps the turns it had, and the
    other messages are emitted."""
    items = [parsed("S1", 1, T0), parsed("S1", 2, T0), parsed("S1", 3, T0), parsed("S2", 1, T0)]
    calls = {"n": 0}

    def wall() -> datetime:
        calls["n"] += 1
        return datetime(2026, 11, 27, 9, 0) if calls["n"] == 2 else T0

    out, dead = run_sessions("sessions_guard_test", items, wall)
    seen = [(c.message.message_id, [t.message_id for t in c.history]) for c in out]
    assert seen == [("S1-M1", []), ("S1-M3", ["S1-M1"]), ("S2-M1", [])]
    (letter,) = dead
    assert letter.error_type == "processing_error" and letter.key == "S1"
    assert letter.step == "sessions_guard_test.session_history"
    assert "ValueError" in letter.error and "naive" in letter.error
    assert letter.source.topic == "tickets.messages"


def held_state(logic: SessionLogic) -> tuple[object, ...]:
    return (logic.snapshot(), logic.notify_at(), logic.history.last_seen)


@pytest.mark.parametrize("failure", ["naive clock", "expiry out of range", "emitted ticket"])
@pytest.mark.parametrize("turns_before", [0, 2])
def test_a_message_the_logic_raises_on_leaves_the_session_as_it_was(
    monkeypatch: pytest.MonkeyPatch, failure: str, turns_before: int
) -> None:
    """`SessionLogic` declares `atomic_items` (the guard takes no snapshot before a message), so
    `on_item` itself must change nothing when it raises: the wall clock answering a naive time,
    a time whose expiry is past `datetime.max` (once raised by `notify_at`, after the change), or
    the emitted ticket failing to build (the last thing done before the session changed, once);
    an empty session and one holding turns both stay as they were, and the next message follows
    the turns held before the failure."""
    clock = {"now": T0}
    logic = SessionLogic(SessionHistory(max_messages=10, ttl=TTL), lambda: clock["now"])
    for n in range(turns_before):
        logic.on_item(parsed("S", n, T0))
    held = held_state(logic)
    assert SessionLogic.atomic_items is True
    with monkeypatch.context() as patch:
        if failure == "naive clock":
            clock["now"] = datetime(2024, 1, 1, 12, 5)
        elif failure == "expiry out of range":
            clock["now"] = datetime.max.replace(tzinfo=UTC) - timedelta(minutes=1)
        else:
            clock["now"] = T0 + timedelta(minutes=5)

            def broken(*_: object, **__: object) -> ContextTicket:
                raise RuntimeError("ticket")

            patch.setattr(ContextTicket, "from_parsed", broken)
        with pytest.raises((ValueError, OverflowError, RuntimeError)):
            logic.on_item(parsed("S", 9, T0))
    assert held_state(logic) == held
    clock["now"] = T0 + timedelta(minutes=6)
    ((context,), _) = logic.on_item(parsed("S", 10, T0))
    assert [t.message_id for t in context.history] == [f"S-M{n}" for n in range(turns_before)]


def test_a_message_whose_ticket_fails_to_build_is_dead_lettered_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In the dataflow: building the emitted ticket of S1-M2 fails; the guard takes no
    snapshot before a message (a session's snapshots are only those Bytewax asks at the end of
    an epoch), so S1-M3 follows S1-M1 alone only because the step changed nothing."""
    items = [parsed("S1", 1, T0), parsed("S1", 2, T0), parsed("S1", 3, T0), parsed("S2", 1, T0)]
    from_parsed = ContextTicket.from_parsed
    snapshots = {"n": 0}
    snapshot = SessionLogic.snapshot

    def failing_on_m2(
        parsed_ticket: ParsedTicket, history: tuple[Turn, ...], *, replay: bool = False
    ) -> ContextTicket:
        if parsed_ticket.message.message_id == "S1-M2":
            raise RuntimeError("cannot build this ticket")
        return from_parsed(parsed_ticket, history, replay=replay)

    def counted(self: SessionLogic) -> dict[str, object]:
        snapshots["n"] += 1
        return snapshot(self)

    monkeypatch.setattr(ContextTicket, "from_parsed", failing_on_m2)
    monkeypatch.setattr(SessionLogic, "snapshot", counted)
    out, dead = run_sessions("sessions_atomic_test", items, lambda: T0)
    seen = [(c.message.message_id, [t.message_id for t in c.history]) for c in out]
    assert seen == [("S1-M1", []), ("S1-M3", ["S1-M1"]), ("S2-M1", [])]
    (letter,) = dead
    assert letter.key == "S1" and "cannot build this ticket" in letter.error
    assert snapshots["n"] <= 2, "one end-of-epoch snapshot per session, none before a message"


def test_the_written_out_message_path_is_the_methods_path() -> None:
    """`SessionLogic.on_item` writes out `history_before`, `turn_of`, `following` and `add`:
    over messages that fill and trim the session, repeat one it holds, carry a text longer than
    `MAX_TURN_CHARS` and come after the session expired, it emits and keeps what the methods
    give (histories, replay flags, snapshots, expiry)."""
    clock = {"now": T0}
    logic = SessionLogic(SessionHistory(max_messages=3, ttl=TTL), lambda: clock["now"])
    plain = SessionHistory(max_messages=3, ttl=TTL)
    long_text = "word " * 200
    steps = [(1, 0), (2, 1), (1, 2), (3, 3), (4, 4), (5, 5), (3, 6), (2, 7), (6, 60), (6, 61)]
    for n, minute in steps:
        clock["now"] = now = T0 + timedelta(minutes=minute)
        item = parsed("S", n, T0)
        if n == 4:
            item = ParsedTicket(**{**item.__dict__, "text": long_text})
        ((context,), retain) = logic.on_item(item)
        held = plain.history_before(item.message.message_id) if plain.turns else None
        if held is not None:
            expected = ContextTicket.from_parsed(item, held, replay=True)
        else:
            expected = ContextTicket.from_parsed(item, plain.record(turn_of(item), now))
        assert retain is StatefulLogic.RETAIN
        assert context == expected and context.replay == expected.replay
        assert logic.snapshot() == plain.snapshot()
        assert logic.snapshot()["turns"] is not logic.snapshot()["turns"]
        # the turns, built without their dataclass's __init__, pickle as the plain ones
        assert pickle.dumps(logic.history.turns) == pickle.dumps(plain.turns)
        assert logic.notify_at() == plain.expires_at()
        assert logic.history.last_seen == plain.last_seen
        if n == 4:
            assert len(logic.history.turns[-1].text) <= MAX_TURN_CHARS < len(long_text)
    assert [t.message_id for t in logic.history.turns] == ["S-M6"]  # expired, then replayed
