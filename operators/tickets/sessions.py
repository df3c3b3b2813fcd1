"""Session history of the tickets flow: the last messages of each conversation, as keyed state.

`SessionHistory` is the pure logic (no Bytewax): the last K cleaned texts of a session with their
timestamps, forgotten after `session_ttl_minutes` without a new message (wall time). Its snapshot is
a small dict of plain values tagged with `STATE_VERSION` (`SESSION_STATE`, a disposable
`operators.runtime.state.VersionedState`: a snapshot of another version is logged and dropped).

`session_history` is the Bytewax operator around it, keyed by `session_id`; it is guarded
(`operators.runtime.guard.guarded_stateful`): a message it raises on is a `processing_error` dead
letter
and leaves its session as it was, and a session whose expiry timer raises is dead-lettered and
dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, Optional

from bytewax.dataflow import Stream
from bytewax.operators import KeyedStream, StatefulLogic

from operators.config.domains import TicketsSettings
from operators.runtime.guard import guarded_stateful
from operators.runtime.metrics import LiveKeys, live_keys
from operators.runtime.state import VersionedState
from operators.tickets.domain import ContextTicket, ParsedTicket, Turn, made
from operators.tickets.parse import bound_length
from schemas.common import utc_now
from schemas.dead_letter import DeadLetter

STATE_VERSION = 1
"""Version of the snapshot layout; bump it when `SessionHistory.snapshot` changes."""

SESSION_STATE = VersionedState("session history", STATE_VERSION, disposable=True)
"""The snapshot layout of one session. Disposable: a snapshot this build cannot read costs only
the conversation context of sessions live during an upgrade, so it is logged and dropped."""

MAX_TURN_CHARS = 500
"""Characters of a message's cleaned text kept in the history, so snapshots stay small."""

SessionState = dict[str, Any]
"""`{"version": int, "last_seen": datetime | None, "turns": [(message_id, text, sent_at), ...]}`"""


def _require_aware(moment: datetime) -> datetime:
    zone = moment.tzinfo
    if zone is not UTC and (zone is None or moment.utcoffset() is None):
        raise ValueError(f"naive datetime {moment!r}: session times must be timezone-aware UTC")
    return moment


class SessionHistory:
    """The last `max_messages` turns of one session, expiring `ttl` after the last message.

    `turns` are oldest first; `last_seen` (the wall time of the last message) changes only
    through `record`, which changes nothing when it raises.
    """

    __slots__ = ("_expires", "_last_seen", "max_messages", "ttl", "turns")

    def __init__(
        self,
        max_messages: int,
        ttl: timedelta,
        turns: Optional[list[Turn]] = None,
        last_seen: Optional[datetime] = None,
    ) -> None:
        self.max_messages = max_messages
        self.ttl = ttl
        self.turns: list[Turn] = [] if turns is None else turns
        self._last_seen = last_seen
        self._expires = None if last_seen is None else last_seen + ttl

    @classmethod
    def from_state(
        cls,
        snapshot: Optional[SessionState],
        *,
        max_messages: int,
        ttl: timedelta,
        step: Optional[str] = None,
    ) -> SessionHistory:
        """Rebuild from a snapshot; a missing or other-version snapshot starts an empty session.

        An unknown version only costs the conversation context of sessions that were live
        during an upgrade, so `SESSION_STATE` logs it (naming `step`) and drops it rather than
        stop the dataflow.
        """
        if snapshot is None:  # a new session
            return cls(max_messages, ttl)
        state = SESSION_STATE.load(snapshot, step=step)
        if state is None:
            return cls(max_messages, ttl)
        turns = [Turn(*turn) for turn in state["turns"]][-max_messages:]
        return cls(max_messages, ttl, turns, state["last_seen"])

    @property
    def last_seen(self) -> Optional[datetime]:
        """The wall time of the last message recorded; None while empty."""
        return self._last_seen

    def snapshot(self) -> SessionState:
        """An independent plain-data copy of the state, for Bytewax recovery (the layout
        `SESSION_STATE` reads: `SessionState`)."""
        return {
            "version": STATE_VERSION,
            "last_seen": self._last_seen,
            "turns": [(t.message_id, t.text, t.sent_at) for t in self.turns],
        }

    def expires_at(self) -> Optional[datetime]:
        """When the session is forgotten unless another message arrives; None while empty."""
        return self._expires

    def is_expired(self, now: datetime) -> bool:
        expiry = self._expires
        return expiry is not None and _require_aware(now) >= expiry

    def history_before(self, message_id: str) -> Optional[tuple[Turn, ...]]:
        """The turns before a message this session already holds; None if it holds no such one."""
        for position, turn in enumerate(self.turns):
            if turn.message_id == message_id:
                return tuple(self.turns[:position])
        return None

    def record(self, turn: Turn, now: datetime) -> tuple[Turn, ...]:
        """Add `turn` seen at `now`; return the turns before it (none if the session expired).

        Raises (a naive `now`, an expiry past `datetime.max`) before anything changes."""
        before, expires = self.following(now)
        self.add(turn, now, expires, before)
        return before

    def following(self, now: datetime) -> tuple[tuple[Turn, ...], datetime]:
        """What a new message at `now` follows: the turns before it (none once the session
        expired) and the session's expiry after it. Changes nothing; raises on a naive `now`."""
        expires = _require_aware(now) + self.ttl
        expiry = self._expires
        if expiry is not None and now >= expiry:
            return (), expires
        return tuple(self.turns), expires

    def add(self, turn: Turn, now: datetime, expires: datetime, before: tuple[Turn, ...]) -> None:
        """Record `turn` at `now` with what `following(now)` answered (`before`, `expires`).
        Cannot raise: the turns are cleared (an expired session), appended and trimmed."""
        turns = self.turns
        if not before:  # expired (or already empty)
            turns.clear()
        turns.append(turn)
        del turns[: -self.max_messages]
        self._last_seen = now
        self._expires = expires


def turn_of(ticket: ParsedTicket) -> Turn:
    """The history entry of a parsed message (its text bounded to `MAX_TURN_CHARS`)."""
    message = ticket.message
    text = ticket.text
    if len(text) > MAX_TURN_CHARS:
        text = bound_length(text, MAX_TURN_CHARS)
    return made(Turn, message_id=message.message_id, text=text, sent_at=message.sent_at)


_new = object.__new__


class SessionLogic(StatefulLogic[ParsedTicket, ContextTicket, SessionState]):
    """Per-session logic: emit each message with its history, discard the state on expiry.

    It counts itself in `live` (when given) from construction until it returns `DISCARD`.
    """

    atomic_items = True
    """`on_item` computes all that can raise (the turn, the wall time and the expiry, the
    emitted ticket) before it changes the session, and `notify_at` reads a stored expiry: a
    message it raises on leaves the session as it was, so the guard takes no snapshot before
    each message (`operators.runtime.guard.atomic_items`)."""

    def __init__(
        self,
        history: SessionHistory,
        now: Callable[[], datetime],
        live: Optional[LiveKeys] = None,
    ) -> None:
        self.history = history
        self.now = now
        self._live = live
        if live is not None:
            live.opened()

    def on_item(self, value: ParsedTicket) -> tuple[Iterable[ContextTicket], bool]:
        # `history_before`, `turn_of`, `following` and `add`, written out (one call instead of
        # six per message); all that can raise runs before the session changes.
        history = self.history
        message = value.message
        turns = history.turns
        if turns:
            message_id = message.message_id
            for position, earlier in enumerate(turns):
                if earlier.message_id == message_id:
                    first_history = tuple(turns[:position])
                    replayed = ContextTicket.from_parsed(value, first_history, replay=True)
                    return [replayed], StatefulLogic.RETAIN
        text = value.text
        if len(text) > MAX_TURN_CHARS:
            text = bound_length(text, MAX_TURN_CHARS)
        turn = _new(Turn)  # `made(Turn, ...)` without a dict of keyword arguments
        fields = turn.__dict__
        fields["message_id"] = message.message_id
        fields["text"] = text
        fields["sent_at"] = message.sent_at
        now = self.now()
        if now.tzinfo is not UTC:
            _require_aware(now)
        expires = now + history.ttl
        expiry = history._expires
        if expiry is not None and now >= expiry:  # expired: the session starts again
            before: tuple[Turn, ...] = ()
            context = ContextTicket.from_parsed(value, before)
            turns.clear()
        else:
            before = tuple(turns)
            context = ContextTicket.from_parsed(value, before)
        turns.append(turn)  # the session changes here, and cannot fail
        del turns[: -history.max_messages]
        history._last_seen = now
        history._expires = expires
        return [context], StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[ContextTicket], bool]:
        if self.history.is_expired(self.now()):
            return [], self._discard()
        return [], StatefulLogic.RETAIN

    def notify_at(self) -> Optional[datetime]:
        return self.history._expires  # expires_at(), read without a call

    def snapshot(self) -> SessionState:
        history = self.history  # `history.snapshot()`, written out (once per key and epoch)
        return {
            "version": STATE_VERSION,
            "last_seen": history._last_seen,
            "turns": [(t.message_id, t.text, t.sent_at) for t in history.turns],
        }

    def _discard(self) -> bool:
        """`DISCARD`, leaving the live count once (Bytewax drops the logic after it)."""
        if self._live is not None:
            self._live.closed()
            self._live = None
        return StatefulLogic.DISCARD


@dataclass(frozen=True)
class SessionsOut:
    """The two outputs of `session_history`."""

    contexts: KeyedStream[ContextTicket]
    dead_letters: Stream[DeadLetter]


@dataclass(frozen=True)
class SessionParams:
    """Turns of history kept per session and the idle time after which a session expires."""

    max_messages: int
    ttl: timedelta

    @classmethod
    def from_settings(cls, tickets: TicketsSettings) -> SessionParams:
        return cls(
            max_messages=tickets.session_max_messages,
            ttl=timedelta(minutes=tickets.session_ttl_minutes),
        )


def session_history(
    step_id: str,
    up: KeyedStream[ParsedTicket],
    *,
    params: SessionParams,
    now: Callable[[], datetime] = utc_now,
) -> SessionsOut:
    """Attach each session's earlier messages to every new message.

    Consumes: parsed messages keyed by `session_id`.

    Emits: one `ContextTicket` per message, whose `history` holds the session's previous
    `SURGEFLOW_SESSION_MAX_MESSAGES` turns (oldest first), never the message itself. A message
    whose `message_id` the session still holds (a re-sent duplicate) is not added again: it is
    emitted with `replay=True` and the turns before its first delivery, so the flow can
    dead-letter it or let its deterministic output ids absorb it.

    State per session: those turns (message id, cleaned text bounded to `MAX_TURN_CHARS`,
    sent_at) and the wall time of the last message, as a small versioned dict. A session is
    discarded once `SURGEFLOW_SESSION_TTL_MINUTES` pass without a message (a timer at the expiry
    time), so state stays bounded however many sessions the stream opens;
    `surgeflow_live_state_keys{flow,step}` counts the sessions holding state in this process.

    Dead letters (`dead_letters`): a `processing_error` for a message this step raised on (the
    session keeps the state it had before it) and for a session whose timer raised (its state
    in the dead letter, the session dropped). The stateful step keeps `step_id` and its
    snapshots, so recovery stores of earlier versions resume.

    `params` bound the turns kept and the idle time of a session (`SessionParams.from_settings`);
    `now` is the wall clock (timezone-aware UTC); tests inject their own.
    """
    flow = up.stream_id.partition(".")[0]
    live = live_keys(flow, step_id)

    stateful_step = f"{up._scope.parent_id}.{step_id}"  # as Bytewax names it

    max_messages, ttl = params.max_messages, params.ttl

    def build(resume_state: Optional[SessionState]) -> SessionLogic:
        if resume_state is None:  # a new session (most keys): `from_state` of None
            return SessionLogic(SessionHistory(max_messages, ttl), now)
        history = SessionHistory.from_state(
            resume_state, max_messages=max_messages, ttl=ttl, step=stateful_step
        )
        return SessionLogic(history, now)  # the guard counts the live sessions

    contexts, dead = guarded_stateful(
        step_id, up, build, flow="tickets", source=attrgetter("source"), live=live
    )
    return SessionsOut(contexts=contexts, dead_letters=dead)
