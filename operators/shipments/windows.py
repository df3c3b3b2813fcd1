"""The per-shipment decision window as a Bytewax operator (wiring, clocks and failures).

The state machine is `operators.shipments.decisions.ShipmentWindows`; this module adapts it to
`StatefulLogic`, gives it the clocks (`operators.runtime.clock`) and splits its output into
decisions, late events and dead letters. No shipment can stop the flow: an exception raised for one
shipment becomes a `processing_error` dead letter naming the step and the exception, and the flow
goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, TypeGuard, Union, cast

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream, StatefulLogic

from operators.runtime.clock import LiveClock, Reading, StreamClock, live_clock
from operators.runtime.dead_letter import dead_letter_for
from operators.runtime.metrics import LiveKeys, live_keys
from operators.runtime.shutdown import StopSignal
from operators.runtime.wire import Wire, unwire
from operators.shipments.decision_state import WindowParams
from operators.shipments.decisions import Emitted, LateEvent, ShipmentWindows
from operators.shipments.domain import EnrichedEvent
from schemas.dead_letter import DeadLetter, SourceRef
from schemas.shipments import ShipmentDecision

log = logging.getLogger(__name__)

WindowOutput = Union[ShipmentDecision, LateEvent, DeadLetter]
WindowState = dict[str, Any]
Wired = Union[Wire[EnrichedEvent], EnrichedEvent]
"""A scan as the window takes it: wrapped to cross processes (`operators.runtime.wire`) or not."""
MAX_EVENT_IDS_NAMED = 20
"""Event ids of dropped scans named in a `processing_error` dead letter's text."""


@dataclass(frozen=True)
class Failures:
    """How one window step turns an exception into a dead letter: its step id and input topic."""

    step: str
    topic: str

    def for_event(self, enriched: EnrichedEvent, exc: BaseException) -> DeadLetter:
        """The scan being added when `exc` was raised (the shipment keeps its state)."""
        event = enriched.event
        return dead_letter_for(
            event,
            flow="shipments",
            step=self.step,
            error_type="processing_error",
            error=f"{type(exc).__name__} while adding the scan: {exc}",
            source=enriched.source,
            key=event.shipment_id,
        )

    def for_state(
        self, shipment_id: str, state: Any, scans: list[str], exc: BaseException, when: str
    ) -> DeadLetter:
        """The shipment's state, dropped because `exc` was raised `when` (its scans named)."""
        named = ", ".join(scans[:MAX_EVENT_IDS_NAMED])
        extra = len(scans) - MAX_EVENT_IDS_NAMED
        more = f" and {extra} more" if extra > 0 else ""
        return dead_letter_for(
            {"shipment_id": shipment_id, "state": state},
            flow="shipments",
            step=self.step,
            error_type="processing_error",
            error=(
                f"{type(exc).__name__} {when}: {exc}; the shipment's state was dropped with "
                f"{len(scans)} scans of its open windows undecided: {named}{more}"
            ),
            source=SourceRef(topic=self.topic),
            key=shipment_id or None,
        )


class DecisionWindowLogic(StatefulLogic[Wired, WindowOutput, WindowState]):
    """`StatefulLogic` for one shipment: every callback reads the clocks once.

    An exception while adding a scan dead-letters that scan and keeps the shipment's state; an
    exception in a timer, at the end of the input or while computing the next deadline
    dead-letters the state and drops it (a timer that failed would fail again forever). It counts
    itself in `live` (when given) from construction until it returns `DISCARD`.
    """

    def __init__(
        self,
        windows: ShipmentWindows,
        *,
        clock: LiveClock,
        stream_clock: StreamClock,
        failures: Failures,
        live: Optional[LiveKeys] = None,
        stop: Optional[StopSignal] = None,
    ) -> None:
        self.windows = windows
        self._clock = clock
        self._stream_clock = stream_clock
        self._failures = failures
        self._broken: Optional[BaseException] = None
        self._live = live
        self._stop = stop
        self._reading: Optional[Reading] = None
        if live is not None:
            live.opened()

    def on_item(self, wired: Wired) -> tuple[Iterable[WindowOutput], bool]:
        value = unwire(wired)
        self._stream_clock.observe(value.event.occurred_at)
        # Bytewax asks `notify_at` right after a key's items: it answers from this reading.
        reading = self._reading = self._clock.read()
        try:
            emitted = self.windows.on_event(value, reading)
        except Exception as exc:
            log.warning("decision window: scan %s failed", value.event.event_id, exc_info=True)
            return ([self._failures.for_event(value, exc)], StatefulLogic.RETAIN)
        return self._emit(emitted)

    def on_notify(self) -> tuple[Iterable[WindowOutput], bool]:
        self._reading = None
        if self._broken is not None:
            return self._drop(self._broken, "computing the next deadline")
        try:
            emitted = self.windows.on_timer(self._clock.read())
        except Exception as exc:
            return self._drop(exc, "in a timer")
        return self._emit(emitted)

    def on_eof(self) -> tuple[Iterable[WindowOutput], bool]:
        self._reading = None
        if self._stop is not None and self._stop.eof_means_stop:
            return ([], StatefulLogic.RETAIN)  # a graceful stop: the windows go on next run
        try:
            emitted = self.windows.on_eof(self._clock.read(), self._stream_clock.max_event_time)
        except Exception as exc:
            return self._drop(exc, "at the end of the input")
        return (_flatten(emitted), self._discard())

    def notify_at(self) -> Optional[datetime]:
        reading, self._reading = self._reading, None
        if reading is None:
            reading = self._clock.read()
        if self._broken is not None:
            return reading.wall
        try:
            return self.windows.next_deadline(reading)
        except Exception as exc:
            self._broken = exc  # dead-lettered by the `on_notify` this asks for now
            return self._clock.read().wall

    def snapshot(self) -> WindowState:
        return self.windows.to_state(self._clock.read().live)

    def _emit(self, emitted: Emitted) -> tuple[Iterable[WindowOutput], bool]:
        if self.windows.is_finished:
            return (_flatten(emitted), self._discard())
        return (_flatten(emitted), StatefulLogic.RETAIN)

    def _drop(self, exc: BaseException, when: str) -> tuple[Iterable[WindowOutput], bool]:
        """Dead-letter the state after `exc` and drop it."""
        log.warning("decision window: shipment state dropped after an error %s", when, exc_info=exc)
        windows = self.windows
        try:
            state: Any = windows.to_state(self._clock.read().live)
        except Exception as unreadable:
            state = f"unreadable: {type(unreadable).__name__}: {unreadable}"
        scans = windows.pending_event_ids()
        letter = self._failures.for_state(windows.shipment_id, state, scans, exc, when)
        return ([letter], self._discard())

    def _discard(self) -> bool:
        """`DISCARD`, leaving the live count once (Bytewax drops the logic after it)."""
        if self._live is not None:
            self._live.closed()
            self._live = None
        return StatefulLogic.DISCARD


def _is_decision(item: tuple[str, WindowOutput]) -> TypeGuard[tuple[str, ShipmentDecision]]:
    return isinstance(item[1], ShipmentDecision)


def _is_late(item: tuple[str, WindowOutput]) -> TypeGuard[tuple[str, LateEvent]]:
    return isinstance(item[1], LateEvent)


def _flatten(emitted: Emitted) -> list[WindowOutput]:
    return [*emitted.decisions, *emitted.late]


@dataclass(frozen=True)
class DecisionWindowOut:
    """Streams returned from `decision_window`."""

    decisions: KeyedStream[ShipmentDecision]
    late: KeyedStream[LateEvent]
    dead_letters: Stream[DeadLetter]


@operator
def decision_window(
    step_id: str,
    up: KeyedStream[Wired],
    *,
    params: WindowParams,
    topic: str,
    clock: Optional[StreamClock] = None,
    live: Optional[LiveClock] = None,
    stop: Optional[StopSignal] = None,
) -> DecisionWindowOut:
    """Decide per shipment over tumbling event-time windows, with a stuck timer.

    Consumes: `(shipment_id, EnrichedEvent)`, the scan as it is or in a `Wire`.

    Emits: `decisions`, one `ShipmentDecision` (without enrichment) per closed window
    (`window_closed`, or `end_of_input` when a bounded input ends) and one `stuck_timer`
    escalation for a shipment with no scan for `stuck_after_hours`; `late`, a `LateEvent` for
    every event whose window had already closed; `dead_letters`, a `processing_error` for a scan
    (or a shipment's state) on which the window raised. Windows are `window_minutes` long,
    aligned to the UTC epoch, and close once the shipment's watermark passes their end by
    `allowed_lateness_minutes`. The watermark is its largest event time plus the live time since
    (`operators.runtime.clock.LiveClock`): wall time the flow ran, not counting downtime nor the
    time its input spent catching up on a backlog; timers fire by that time.

    State per shipment: the scans of its open windows, its last scan, its delay count, the starts
    of its last closed windows and the event time its watermark reached, as a versioned dict of
    plain values (`operators.shipments.decision_state`). It is dropped once no window is open and
    the shipment is delivered or reported stuck, and at the end of a bounded input;
    `surgeflow_live_state_keys{flow,step}` counts the shipments holding state in this process. A
    key restored from a snapshot restarts its live time at the resume and puts its latest event
    time back into the stream clock, so the end-of-input stuck judgement after a resume sees the
    event time reached before the restart.

    :arg step_id: Unique ID.

    :arg up: Enriched scans keyed by `shipment_id`.

    :arg params: Window length, lateness, stuck timeout and rule thresholds
        (`WindowParams.from_settings`).

    :arg topic: The input topic, named by dead letters of a dropped state.

    :arg clock: The stream's event clock, shared by the workers of this process; it tells, at
        the end of the input, whether a quiet shipment is stuck. A new one when not given.

    :arg live: The live clock (wall time and the catch-up signal); this process's `live_clock()`
        when not given.

    :arg stop: A graceful stop (`operators.runtime.shutdown`): an EOF it calls a stop keeps every
        shipment's windows for the next run instead of closing them as `end_of_input`.

    :returns: The decisions and the late events, both keyed by `shipment_id`, and the dead
        letters.
    """
    stream_clock = clock if clock is not None else StreamClock()
    live_time = live if live is not None else live_clock()
    failures = Failures(step=step_id, topic=topic)
    flow, _, step = step_id.partition(".")
    live_count = live_keys(flow, step or flow)

    decide = f"{up._scope.parent_id}.decide"  # the stateful step's id, as Bytewax names it

    def build(state: Optional[WindowState]) -> DecisionWindowLogic:
        if state is None:
            windows = ShipmentWindows(params)
        else:
            now = live_time.read().live
            windows = ShipmentWindows.from_state(state, params, now, step=decide)
            if windows.latest_event_time is not None:
                stream_clock.observe(windows.latest_event_time)
        return DecisionWindowLogic(
            windows,
            clock=live_time,
            stream_clock=stream_clock,
            failures=failures,
            live=live_count,
            stop=stop,
        )

    outputs = op.stateful("decide", up, build)  # each scan is observed by the stream clock
    decided = op.branch("split", outputs, _is_decision)
    rest = op.branch("split_late", decided.falses, _is_late)
    # A TypeGuard narrows the trues only; what neither takes is the rest: the dead letters.
    dead = op.key_rm("unkey_dead_letters", cast(KeyedStream[DeadLetter], rest.falses))
    return DecisionWindowOut(decisions=decided.trues, late=rest.trues, dead_letters=dead)
