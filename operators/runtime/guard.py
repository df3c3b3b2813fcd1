"""Guards: a step that fails on one record dead-letters that record, and the flow goes on.

Bytewax stops the whole dataflow on any exception raised in an operator. A guard catches what a
step raises for one record and emits it as data, a `StepFailure`, which becomes a
`processing_error` dead letter naming the step and the exception (its type and a bounded message
with credentials masked). Only `StopsTheFlow` errors (unwritable output, broken configuration)
and `MemoryError` pass through and stop the flow.

- `guarded_map`: `op.map` whose failures are dead letters;
- `guarded_flat_map_batch`: `op.flat_map_batch` that, when a batch fails, runs the batch again
  one record at a time so that only the records that fail are dead-lettered;
- `guarded_stateful`: `op.stateful` whose logic is wrapped in `GuardedLogic`: a record that
  fails leaves the key's state as it was before it (rolled back from a snapshot, or, for a logic
  that declares `atomic_items`, never changed), and a timer or end-of-input callback that fails
  dead-letters the key's state and drops it. The step id and the snapshots stay those of the
  unguarded step, so existing recovery stores resume.

Each returns `Guarded(results, dead_letters)`. Nothing here names a flow.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, Optional, TypeGuard, TypeVar, Union, cast

import bytewax.operators as op
import orjson
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream, StatefulBatchLogic, StatefulLogic
from pydantic import BaseModel

from operators.errors import StopsTheFlow
from operators.runtime.metrics import LiveKeys
from operators.runtime.wire import Wire, unwire
from schemas.dead_letter import DeadLetter, FlowName, SourceRef

logger = logging.getLogger(__name__)

X = TypeVar("X")
Y = TypeVar("Y")
S = TypeVar("S")

MAX_ERROR_CHARS = 500
"""Characters of an exception's message kept in a dead letter."""

PASS_THROUGH: tuple[type[BaseException], ...] = (StopsTheFlow, MemoryError)
"""Errors a guard never catches: they stop the flow."""

_CREDENTIALS = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/@\s]*@"), r"\1***@"),
    (
        re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|auth)=[^&\s,;]+"),
        r"\1=***",
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "sk-***"),
)
_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


def describe(exc: BaseException, limit: int = MAX_ERROR_CHARS) -> str:
    """`Type: message` of an exception, credentials (URLs, `key=value` pairs) masked, bounded."""
    message = str(exc)
    for pattern, replacement in _CREDENTIALS:
        message = pattern.sub(replacement, message)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def raw_bytes(value: Any) -> bytes:
    """`value` as JSON bytes for a dead letter (models by their JSON form); never raises."""
    try:
        if isinstance(value, BaseModel):
            return value.model_dump_json().encode("utf-8")
        return orjson.dumps(value, default=_jsonable)
    except Exception:  # the dead letter must exist even when its record cannot be serialised
        try:
            return repr(value)[:16_384].encode("utf-8", "replace")
        except Exception:
            return type(value).__name__.encode("utf-8", "replace")


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return repr(value)


@dataclass(frozen=True)
class StepFailure(Generic[X]):
    """What a step raised for one record (or for a key's state), emitted in place of its result.

    `item` is the record the step failed on, or None when a timer or the end of the input
    failed; then `state` holds the key's snapshot, when one could be taken.
    """

    step: str
    error_type: str
    error: str
    item: Optional[X] = None
    state: Any = None
    source: Optional[SourceRef] = None

    @classmethod
    def of(
        cls,
        step: str,
        exc: BaseException,
        *,
        item: Optional[X] = None,
        state: Any = None,
        source: Optional[SourceRef] = None,
    ) -> StepFailure[X]:
        return cls(
            step=step,
            error_type=type(exc).__name__,
            error=describe(exc),
            item=item,
            state=state,
            source=source,
        )


def _passes_through(exc: BaseException) -> bool:
    return isinstance(exc, PASS_THROUGH)


def guarded(step: str, fn: Callable[[X], Y]) -> Callable[[X], Union[Y, StepFailure[X]]]:
    """`fn`, returning a `StepFailure` for an item it raises on instead of raising."""

    def run(item: X) -> Union[Y, StepFailure[X]]:
        try:
            return fn(item)
        except Exception as exc:
            if _passes_through(exc):
                raise
            return StepFailure.of(step, exc, item=item)

    return run


def _safely(fn: Callable[[], Any], default: Any) -> Any:
    try:
        return fn()
    except Exception:
        return default


def failure_dead_letter(
    failure: StepFailure[Any],
    *,
    flow: FlowName,
    key: Optional[str],
    source: SourceRef,
) -> DeadLetter:
    """The `processing_error` dead letter of a failure: the step, the error, the record (or the
    key's state) re-serialised, and where it came from."""
    what = "record" if failure.item is not None else "state of this key"
    raw = raw_bytes(failure.item if failure.item is not None else failure.state)
    return DeadLetter.build(
        flow=flow,
        step=failure.step[:100],
        error_type="processing_error",
        error=f"step {failure.step} failed on this {what}: {failure.error}",
        raw=raw,
        source=failure.source or source,
        key=key,
    )


@dataclass(frozen=True)
class Guarded(Generic[Y]):
    """The two outputs of a guarded step."""

    results: Stream[Y]
    dead_letters: Stream[DeadLetter]


def _to_dead_letters(
    step_id: str,
    failures: Stream[Union[StepFailure[X], DeadLetter]],
    *,
    flow: FlowName,
    key: Callable[[X], Optional[str]],
    source: Callable[[X], SourceRef],
    fallback: SourceRef,
) -> Stream[DeadLetter]:
    def dead_letter(failure: Union[StepFailure[X], DeadLetter]) -> DeadLetter:
        if isinstance(failure, DeadLetter):
            return failure
        item = failure.item
        return failure_dead_letter(
            failure,
            flow=flow,
            key=_safely(lambda: key(item), None) if item is not None else None,
            source=_safely(lambda: source(item), fallback) if item is not None else fallback,
        )

    return op.map(step_id, failures, dead_letter)


def _split(
    up: Stream[Union[Y, StepFailure[X]]],
    *,
    flow: FlowName,
    key: Callable[[X], Optional[str]],
    source: Callable[[X], SourceRef],
    fallback: SourceRef,
    returned: bool = False,
) -> Guarded[Y]:
    """Results on one side; failures (and, when `returned`, the `DeadLetter`s among the
    results) turned into dead letters on the other: one branch per item."""
    failed: tuple[type, ...] = (StepFailure, DeadLetter) if returned else (StepFailure,)

    def succeeded(item: Union[Y, StepFailure[X]]) -> TypeGuard[Y]:
        return not isinstance(item, failed)

    split = op.branch("split", up, succeeded)
    # A TypeGuard narrows the trues only; the falses are the rest: the failures.
    failures = cast(Stream[Union[StepFailure[X], DeadLetter]], split.falses)
    dead = _to_dead_letters(
        "dead_letter", failures, flow=flow, key=key, source=source, fallback=fallback
    )
    return Guarded(results=split.trues, dead_letters=dead)


@operator
def guarded_map(
    step_id: str,
    up: Stream[X],
    fn: Callable[[X], Y],
    *,
    flow: FlowName,
    key: Callable[[X], Optional[str]],
    source: Callable[[X], SourceRef],
    after_batch: Optional[Callable[[], None]] = None,
) -> Guarded[Y]:
    """`op.map(fn)`; an item `fn` raises on becomes a `processing_error` dead letter.

    Consumes: items `X`. Emits: `fn(item)` on `results`; for an item `fn` raised on, a
    `DeadLetter` naming this step and the exception, with the item re-serialised, `key(item)`
    and `source(item)`, on `dead_letters`. State: none. `fn` runs a Bytewax batch at a time (one
    Python call per batch, not per item), in the items' order; `after_batch`, when given, is
    called once after each batch (to flush what `fn` tallied, say).
    """
    each = guarded(step_id, fn)

    def run(batch: list[X]) -> list[Union[Y, StepFailure[X]]]:
        out = [each(item) for item in batch]
        if after_batch is not None:
            after_batch()
        return out

    results = op.flat_map_batch("map", up, run)
    fallback = SourceRef(topic=flow)
    return _split(results, flow=flow, key=key, source=source, fallback=fallback)


@operator
def guarded_flat_map_batch(
    step_id: str,
    up: Stream[X],
    fn: Callable[[list[X]], Iterable[Y]],
    *,
    flow: FlowName,
    key: Callable[[X], Optional[str]],
    source: Callable[[X], SourceRef],
    returned_dead_letters: bool = False,
) -> Guarded[Y]:
    """`op.flat_map_batch(fn)`; when `fn` raises on a batch, each item is run again on its own
    and only the items it still raises on become `processing_error` dead letters.

    Consumes: items `X`, a Bytewax batch at a time. Emits: what `fn` returns on `results`;
    `DeadLetter`s on `dead_letters`, with, when `returned_dead_letters` is set, the `DeadLetter`s
    `fn` returns itself (one branch per item instead of a second one after this step). State: none.
    """

    def run(batch: list[X]) -> list[Union[Y, StepFailure[X]]]:
        try:
            return list(fn(batch))
        except Exception as exc:
            if _passes_through(exc):
                raise
        out: list[Union[Y, StepFailure[X]]] = []
        for item in batch:
            try:
                out.extend(fn([item]))
            except Exception as exc:
                if _passes_through(exc):
                    raise
                out.append(StepFailure.of(step_id, exc, item=item))
        return out

    results = op.flat_map_batch("flat_map_batch", up, run)
    fallback = SourceRef(topic=flow)
    return _split(
        results, flow=flow, key=key, source=source, fallback=fallback,
        returned=returned_dead_letters,
    )  # fmt: skip


_NO_SNAPSHOT = object()
_FRESH = object()
"""What a key that holds no state rolls back to: nothing; a record it fails on drops the key."""


def atomic_items(logic: object) -> bool:
    """Whether `logic` declares `atomic_items = True`: its `on_item`, and the `notify_at` asked
    right after it, change nothing when they raise (all that can raise runs before the state
    changes, and `notify_at` cannot raise once `on_item` returned). `GuardedLogic` then takes no
    snapshot before a record: a record that fails leaves the state as it was by itself."""
    return getattr(logic, "atomic_items", False) is True


class GuardedLogic(StatefulLogic[Union[Wire[X], X], Union[Y, StepFailure[X]], Optional[S]]):
    """A `StatefulLogic` that turns its inner logic's exceptions into `StepFailure`s.

    - `on_item` raising (or the `notify_at` asked right after it): the record is the failure;
      the inner logic is rebuilt from the snapshot taken before the record (`rollback`), so a
      record that fails changes nothing; a key that never held state is dropped again (no
      snapshot is taken before its records: there is nothing to roll back to). An inner logic
      that declares `atomic_items` (see `atomic_items`) changes nothing when it raises: no
      snapshot is taken, and it is kept as it is.
    - `on_notify`/`on_eof` raising, a `notify_at` or `snapshot` that cannot be answered: the
      key's state is broken; its snapshot (when one can be taken) is the failure and the key is
      dropped, so a failing timer cannot fire forever (a record that comes first starts the key
      afresh after the failure is reported).

    Snapshots are the inner logic's own. `live`, when given, counts guarded keys (opened when
    built, closed when dropped); inner logics built by `build` must then not count themselves.
    """

    def __init__(
        self,
        step: str,
        build: Callable[[Optional[S]], StatefulLogic[X, Y, S]],
        state: Optional[S],
        *,
        source: Callable[[X], SourceRef],
        rollback: bool = True,
        live: Optional[LiveKeys] = None,
    ) -> None:
        self._step = step
        self._build = build
        self._source = source
        self._rollback = rollback
        self._holds_state = state is not None
        self._last_source: Optional[SourceRef] = None
        self._broken: Optional[StepFailure[X]] = None
        self._next: Optional[datetime] = None
        self._live = self._counter = live  # `_live` is None once this key left the count
        self._inner = build(state)
        self._snapshots = rollback and not atomic_items(self._inner)
        if live is not None:
            live.opened()
        self._ask_next()

    # --- callbacks ---------------------------------------------------------------------------

    def on_item(self, value: Union[Wire[X], X]) -> tuple[Iterable[Union[Y, StepFailure[X]]], bool]:
        return self._on_item(unwire(value))

    def _on_item(self, value: X) -> tuple[Iterable[Union[Y, StepFailure[X]]], bool]:
        if self._broken is not None:  # report the broken state, then start the key afresh
            broken, self._broken = self._broken, None
            self._inner, self._holds_state = self._build(None), False
            if not self._ask_next():  # not even a new state answers: the record fails too
                again, self._broken = self._broken, None
                assert again is not None
                failed = replace(again, item=value, state=None)
                return [broken, failed], self._discard()
            out, discard = self._on_item(value)
            return [broken, *out], discard
        try:  # inline rather than through `_safely`: a lambda and a call less per record
            source: Optional[SourceRef] = self._source(value)
        except Exception:
            source = self._last_source
        self._last_source = source
        if self._holds_state:  # an atomic logic is kept as it is (it changed nothing)
            before: Any = self._snapshot_or_missing() if self._snapshots else _NO_SNAPSHOT
        elif self._rollback:  # nothing to roll back to: a failure drops the key (no snapshot)
            before = _FRESH
        else:
            before = _NO_SNAPSHOT
        try:
            out, discard = self._inner.on_item(value)
            if type(out) is not list:  # a list is passed on as it is (as Bytewax's shim does)
                out = list(out)  # in this `try`: a generator that raises is this record's failure
            if discard:
                return out, self._discard()
            self._next = self._inner.notify_at()
        except Exception as exc:
            if _passes_through(exc):
                raise
            return self._item_failed(value, exc, before)
        self._holds_state = True
        return out, StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Union[Y, StepFailure[X]]], bool]:
        if self._broken is not None:
            return self._give_up()
        return self._callback(self._inner.on_notify, "timer")

    def on_eof(self) -> tuple[Iterable[Union[Y, StepFailure[X]]], bool]:
        if self._broken is not None:
            return self._give_up()
        return self._callback(self._inner.on_eof, "end of input")

    def notify_at(self) -> Optional[datetime]:
        return self._next

    def snapshot(self) -> Optional[S]:
        try:
            return self._inner.snapshot()
        except Exception as exc:
            if _passes_through(exc):
                raise
            logger.error("step %s could not snapshot a key's state: %s", self._step, describe(exc))
            self._broke(exc, state=None)
            return None  # resumes as a new key

    # --- helpers -----------------------------------------------------------------------------

    def _callback(
        self, call: Callable[[], tuple[Iterable[Y], bool]], what: str
    ) -> tuple[Iterable[Union[Y, StepFailure[X]]], bool]:
        try:
            out, discard = call()
            out = list(out)
            if discard:
                return out, self._discard()
            self._next = self._inner.notify_at()
            return out, StatefulLogic.RETAIN
        except Exception as exc:
            if _passes_through(exc):
                raise
            logger.warning("step %s: %s of a key failed: %s", self._step, what, describe(exc))
            state = self._snapshot_or_missing()
            self._broke(exc, state=None if state is _NO_SNAPSHOT else state)
            return self._give_up()

    def _item_failed(
        self, value: X, exc: BaseException, before: Any
    ) -> tuple[Iterable[Union[Y, StepFailure[X]]], bool]:
        failure = StepFailure.of(self._step, exc, item=value, source=self._last_source)
        if before is _FRESH:  # the key held no state before this record
            return [failure], self._discard()
        if before is not _NO_SNAPSHOT:
            try:
                self._inner = self._build(before)
            except Exception as rebuild_error:
                if _passes_through(rebuild_error):
                    raise
                self._broke(rebuild_error, state=before)
                return [failure, *self._give_up()[0]], self._discard()
            if not self._holds_state:
                return [failure], self._discard()
        if not self._ask_next():
            return [failure, *self._give_up()[0]], self._discard()
        return [failure], StatefulLogic.RETAIN

    def _ask_next(self) -> bool:
        """Ask the inner logic for its next timer; a logic that cannot answer is broken."""
        try:
            self._next = self._inner.notify_at()
            return True
        except Exception as exc:
            if _passes_through(exc):
                raise
            state = self._snapshot_or_missing()
            self._broke(exc, state=None if state is _NO_SNAPSHOT else state)
            return False

    def _broke(self, exc: BaseException, *, state: Any) -> None:
        if self._broken is None:
            self._broken = StepFailure.of(self._step, exc, state=state, source=self._last_source)
        self._next = _LONG_AGO  # fire at once: on_notify reports the failure and drops the key

    def _give_up(self) -> tuple[list[StepFailure[X]], bool]:
        failure, self._broken = self._broken, None
        return ([failure] if failure is not None else []), self._discard()

    def _snapshot_or_missing(self) -> Any:
        try:
            return self._inner.snapshot()
        except Exception as exc:
            if _passes_through(exc):
                raise
            return _NO_SNAPSHOT

    def _discard(self) -> bool:
        if self._live is not None:
            self._live.closed()
            self._live = None
        return StatefulLogic.DISCARD


class _GuardedBatches(
    GuardedLogic[X, Y, S],
    StatefulBatchLogic[Union[Wire[X], X], Union[Y, StepFailure[X]], Optional[S]],
):
    """A key's `GuardedLogic` as Bytewax's `stateful_batch` calls it: what `op.stateful`'s own
    shim does (each value through `on_item`, the key started afresh after a discard), in the
    one object per key rather than a shim around it, with the guard's record path called
    directly."""

    def on_batch(
        self, values: list[Union[Wire[X], X]]
    ) -> tuple[Iterable[Union[Y, StepFailure[X]]], bool]:
        if len(values) == 1:  # most keys get one value per batch: its own output list
            value = values[0]
            item = value.item if type(value) is Wire else value  # `unwire`, without a call
            return self._on_item(item)  # type: ignore[arg-type]
        out: list[Union[Y, StepFailure[X]]] = []
        discard = False
        for value in values:
            if discard:  # dropped earlier in this batch: the key starts afresh
                self._restart()
            item = value.item if type(value) is Wire else value  # `unwire`, without a call
            emitted, discard = self._on_item(item)  # type: ignore[arg-type]
            out.extend(emitted)
        return out, discard

    def _restart(self) -> None:
        GuardedLogic.__init__(
            self, self._step, self._build, None,
            source=self._source, rollback=self._rollback, live=self._counter,
        )  # fmt: skip


@operator
def _stateful(
    step_id: str,
    up: KeyedStream[Union[Wire[X], X]],
    batches: Callable[[Optional[S]], _GuardedBatches[X, Y, S]],
) -> KeyedStream[Union[Y, StepFailure[X]]]:
    """`op.stateful(step_id, up, build)`: the same inner step (`<step_id>.stateful_batch`, so
    recovery snapshots resume) and the same snapshots, through `_GuardedBatches`."""
    return op.stateful_batch("stateful_batch", up, batches)


def guarded_stateful(
    step_id: str,
    up: KeyedStream[Union[Wire[X], X]],
    build: Callable[[Optional[S]], StatefulLogic[X, Y, S]],
    *,
    flow: FlowName,
    source: Callable[[X], SourceRef],
    rollback: bool = True,
    live: Optional[LiveKeys] = None,
) -> tuple[KeyedStream[Y], Stream[DeadLetter]]:
    """`op.stateful(step_id, up, build)` with every key's logic wrapped in `GuardedLogic`.

    Consumes: `(key, X)`, or `(key, Wire(X))` (`operators.runtime.wire`: the logic gets `X`).
    Emits: the logic's `(key, Y)` outputs, and a `processing_error` `DeadLetter` (key = the
    stream key) for every record the logic raised on (the key's state rolled back to before it)
    and for every key whose timer, end of input, `notify_at` or snapshot raised (its state in
    the dead letter, the key dropped).

    The stateful step keeps `step_id` and the inner logic's snapshots, so recovery stores written
    by the unguarded step resume; the extra steps are named `<step_id>_split` and
    `<step_id>_dead_letters`. The logic's `snapshot()` must return an independent copy (as
    Bytewax asks), since `rollback` rebuilds from the copy taken before each record of a key
    holding state; a logic that declares `atomic_items` (nothing changes when its `on_item`
    raises) is never snapshotted before a record.
    """
    name = f"{up._scope.parent_id}.{step_id}"  # the step's full id, as Bytewax names it

    batches: Callable[[Optional[S]], _GuardedBatches[X, Y, S]] = partial(
        _GuardedBatches, name, build, source=source, rollback=rollback, live=live
    )  # a key's logic, built without a Python frame of its own
    outputs = _stateful(step_id, up, batches)

    def succeeded(kv: tuple[str, Union[Y, StepFailure[X]]]) -> TypeGuard[tuple[str, Y]]:
        return not isinstance(kv[1], StepFailure)

    split = op.branch(f"{step_id}_split", outputs, succeeded)
    # A TypeGuard narrows the trues only; the falses are the rest: the keys' failures.
    failures = cast(KeyedStream[StepFailure[X]], split.falses)

    def dead_letter(kv: tuple[str, StepFailure[X]]) -> DeadLetter:
        key, failure = kv
        item = failure.item
        found = _safely(lambda: source(item), None) if item is not None else None
        return failure_dead_letter(
            failure, flow=flow, key=key, source=found or failure.source or SourceRef(topic=flow)
        )

    dead = op.map(f"{step_id}_dead_letters", failures, dead_letter)
    return split.trues, dead
