"""The per-shipment decision window as a Bytewax operator (wiring only).

The state machine is `operators.decisions.ShipmentWindows`; this module adapts it to
`StatefulLogic`, injects the wall clock and splits its output into decisions and late events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, Union

import bytewax.operators as op
from bytewax.dataflow import operator
from bytewax.operators import KeyedStream, StatefulLogic

from flows.settings import Settings
from operators.clock import StreamClock
from operators.decisions import Emitted, LateEvent, ShipmentWindows, WindowParams
from operators.domain import EnrichedEvent
from operators.metrics import LiveKeys, live_keys
from operators.shutdown import StopSignal
from schemas.common import utc_now
from schemas.shipments import ShipmentDecision

WindowOutput = Union[ShipmentDecision, LateEvent]
WindowState = dict[str, Any]


class DecisionWindowLogic(StatefulLogic[EnrichedEvent, WindowOutput, WindowState]):
    """`StatefulLogic` for one shipment: every callback asks `now()` for the wall time.

    It counts itself in `live` (when given) from construction until it returns `DISCARD`.
    """

    def __init__(
        self,
        windows: ShipmentWindows,
        *,
        now: Callable[[], datetime],
        clock: StreamClock,
        live: Optional[LiveKeys] = None,
        stop: Optional[StopSignal] = None,
    ) -> None:
        self.windows = windows
        self._now = now
        self._clock = clock
        self._live = live
        self._stop = stop
        if live is not None:
            live.opened()

    def on_item(self, value: EnrichedEvent) -> tuple[Iterable[WindowOutput], bool]:
        return self._emit(self.windows.on_event(value, self._now()))

    def on_notify(self) -> tuple[Iterable[WindowOutput], bool]:
        return self._emit(self.windows.on_timer(self._now()))

    def on_eof(self) -> tuple[Iterable[WindowOutput], bool]:
        if self._stop is not None and self._stop.eof_means_stop:
            return ([], StatefulLogic.RETAIN)  # a graceful stop: the windows go on next run
        emitted = self.windows.on_eof(self._now(), self._clock.max_event_time)
        return (_flatten(emitted), self._discard())

    def notify_at(self) -> Optional[datetime]:
        return self.windows.next_deadline()

    def snapshot(self) -> WindowState:
        return self.windows.to_state()

    def _emit(self, emitted: Emitted) -> tuple[Iterable[WindowOutput], bool]:
        if self.windows.is_finished:
            return (_flatten(emitted), self._discard())
        return (_flatten(emitted), StatefulLogic.RETAIN)

    def _discard(self) -> bool:
        """`DISCARD`, leaving the live count once (Bytewax drops the logic after it)."""
        if self._live is not None:
            self._live.closed()
            self._live = None
        return StatefulLogic.DISCARD


def _flatten(emitted: Emitted) -> list[WindowOutput]:
    return [*emitted.decisions, *emitted.late]


@dataclass(frozen=True)
class DecisionWindowOut:
    """Streams returned from `decision_window`."""

    decisions: KeyedStream[ShipmentDecision]
    late: KeyedStream[LateEvent]


@operator
def decision_window(
    step_id: str,
    up: KeyedStream[EnrichedEvent],
    *,
    settings: Settings,
    clock: Optional[StreamClock] = None,
    now: Callable[[], datetime] = utc_now,
    stop: Optional[StopSignal] = None,
) -> DecisionWindowOut:
    """Decide per shipment over tumbling event-time windows, with a stuck timer.

    Consumes: `(shipment_id, EnrichedEvent)`.

    Emits: `decisions`, one `ShipmentDecision` (without enrichment) per closed window
    (`window_closed`, or `end_of_input` when a bounded input ends) and one `stuck_timer`
    escalation for a shipment with no scan for `stuck_after_hours`; `late`, a `LateEvent` for
    every event whose window had already closed. Windows are `window_minutes` long, aligned to
    the UTC epoch, and close once the shipment's watermark (its largest event time plus the wall
    time since) passes their end by `allowed_lateness_minutes`; timers fire by wall time.

    State per shipment: the scans of its open windows, its last scan, its delay count, the starts
    of its last closed windows and its event clock, as a versioned dict of plain values. It is
    dropped once no window is open and the shipment is delivered or reported stuck, and at the
    end of a bounded input; `surgeflow_live_state_keys{flow,step}` counts the shipments holding
    state in this process. A key restored from a snapshot also restores its event time into
    the stream clock, so the end-of-input stuck judgement after a resume sees the event time
    reached before the restart.

    :arg step_id: Unique ID.

    :arg up: Enriched scans keyed by `shipment_id`.

    :arg settings: Window length, lateness, stuck timeout and rule thresholds.

    :arg clock: The stream's event clock, shared by the workers of this process; it tells, at
        the end of the input, whether a quiet shipment is stuck. A new one when not given.

    :arg now: The wall clock (timezone-aware UTC).

    :arg stop: A graceful stop (`operators.shutdown`): an EOF it calls a stop keeps every
        shipment's windows for the next run instead of closing them as `end_of_input`.

    :returns: The decisions and the late events, both keyed by `shipment_id`.
    """
    stream_clock = clock if clock is not None else StreamClock(now=now)
    params = WindowParams.from_settings(settings)
    flow, _, step = step_id.partition(".")
    live = live_keys(flow, step or flow)

    def observe(item: tuple[str, EnrichedEvent]) -> tuple[str, EnrichedEvent]:
        stream_clock.observe(item[1].event.occurred_at)
        return item

    def build(state: Optional[WindowState]) -> DecisionWindowLogic:
        if state is None:
            windows = ShipmentWindows(params)
        else:
            windows = ShipmentWindows.from_state(state, params)
            if windows.latest_event_time is not None:
                stream_clock.observe(windows.latest_event_time)
        return DecisionWindowLogic(windows, now=now, clock=stream_clock, live=live, stop=stop)

    observed = op.map("observe_clock", up, observe)
    outputs = op.stateful("decide", observed, build)
    split = op.branch("split", outputs, lambda item: isinstance(item[1], ShipmentDecision))
    return DecisionWindowOut(decisions=split.trues, late=split.falses)
