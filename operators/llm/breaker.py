"""A circuit breaker per model: repeated failed calls send later calls to the rules engine.

    closed ──(failures consecutive failed calls)──▶ open ──(reset_seconds)──▶ half-open
      ▲                                              ▲                            │
      └──────────────(the probe succeeds)────────────┼────(the probe fails)───────┘

Closed, every call passes and failed logical calls (after their retries) are counted; a success
resets the count. Open, every call raises `BreakerOpen` until `reset_seconds` have passed; then
the next call becomes the one probe (half-open) while every other call still raises. The
probe's success closes the breaker, its failure opens it for another `reset_seconds`; a probe
that ends without reaching the provider (a limit, the budget) gives the probe to the next call.

Attempts check their permit again before each retry: once the breaker is open, only the probe's
attempts reach the provider, and only while it is half-open (a probe whose attempt timed out
reopens it at once and stops). `trip` opens it at once, whatever the count: a status that no
retry or later call can cure (a wrong base URL or API key) sends every call to the rules engine
after the first one.

Every transition is logged once, when it happens: opening at WARNING (ERROR when tripped),
half-open, a failed probe and closing at INFO.

Written here rather than taken from a library: it is a few lines of state, works the same from
any event loop (the worker loops of one process share it; a lock guards it), keys by model, and
takes the clock as a dependency so tests step time instead of sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from operators.config.llm import LLMSettings
from operators.llm.metrics import BREAKER_STATE
from operators.llm.types import BreakerOpen

log = logging.getLogger(__name__)


class State(IntEnum):
    """Breaker states, as the `surgeflow_llm_breaker_state` gauge reports them."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class Permit:
    """Leave to make one logical call; `probe` is the half-open breaker's one trial call."""

    model: str
    probe: bool = False


class CircuitBreaker:
    """The breaker of one model."""

    def __init__(
        self,
        model: str,
        *,
        flow: str,
        failures: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self._gauge = BREAKER_STATE.labels(flow, model)
        self._threshold = max(failures, 1)
        self._reset = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._report()

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    def admit(self) -> Permit:
        """A permit for one call, or `BreakerOpen` (open, or half-open with its probe out)."""
        with self._lock:
            if self._state is State.CLOSED:
                return Permit(self.model)
            waited = self._clock() - self._opened_at
            if self._state is State.OPEN and waited >= self._reset:
                self._set(State.HALF_OPEN)
                log.info("circuit breaker of %s half-open: one probe call goes through", self.model)
                return Permit(self.model, probe=True)
        raise BreakerOpen(f"circuit breaker of {self.model} is {self.state.name.lower()}")

    def check(self, permit: Permit) -> None:
        """Before another attempt (or while waiting for one): `BreakerOpen` unless closed, or
        half-open and `permit` is the probe."""
        with self._lock:
            state = self._state
        if not (state is State.CLOSED or (permit.probe and state is State.HALF_OPEN)):
            raise BreakerOpen(f"circuit breaker of {self.model} opened during the call")

    def succeeded(self, permit: Permit) -> None:
        """The call reached the provider and got an answer: close, forget the failures."""
        with self._lock:
            if permit.probe or self._state is State.CLOSED:
                self._failures = 0
                if self._state is not State.CLOSED:
                    log.info("circuit breaker of %s closed: the probe call answered", self.model)
                self._set(State.CLOSED)

    def failed(self, permit: Permit, cause: str = "a provider failure") -> None:
        """A failed call (or a timed-out attempt): count it; open at the threshold or on the
        probe. `cause` says what failed, for the log."""
        with self._lock:
            if permit.probe and self._state is State.HALF_OPEN:
                self._open(cause)
            elif self._state is State.CLOSED:
                self._failures += 1
                if self._failures >= self._threshold:
                    self._open(f"{self._failures} failed calls in a row, the last: {cause}")

    def trip(self, permit: Permit, cause: str) -> None:
        """Open now, whatever the count: `cause` cannot be cured by retries or later calls."""
        with self._lock:
            if self._state is State.CLOSED or (permit.probe and self._state is State.HALF_OPEN):
                self._open(cause, level=logging.ERROR)

    def released(self, permit: Permit) -> None:
        """The call ended without a verdict on the provider: a probe goes to the next call."""
        with self._lock:
            if permit.probe and self._state is State.HALF_OPEN:
                self._state = State.OPEN
                self._opened_at = self._clock() - self._reset
                self._report()

    def _open(self, cause: str, *, level: int = logging.WARNING) -> None:
        if self._state is State.HALF_OPEN:
            log.info(
                "circuit breaker of %s open again: the probe call failed (%s); next probe in %g s",
                self.model,
                cause,
                self._reset,
            )
        else:
            log.log(
                level,
                "circuit breaker of %s open: %s; calls go to the rules engine, next probe in %g s",
                self.model,
                cause,
                self._reset,
            )
        self._opened_at = self._clock()
        self._failures = 0
        self._set(State.OPEN)

    def _set(self, state: State) -> None:
        self._state = state
        self._report()

    def _report(self) -> None:
        self._gauge.set(int(self._state))


class Breakers:
    """One `CircuitBreaker` per model, made on first use with the settings' thresholds; their
    states are reported under `flow`."""

    def __init__(
        self,
        *,
        flow: str,
        failures: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._flow = flow
        self._failures = failures
        self._reset = reset_seconds
        self._clock = clock
        self._by_model: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, llm: LLMSettings, *, flow: str, clock: Callable[[], float] = time.monotonic
    ) -> Breakers:
        return cls(
            flow=flow,
            failures=llm.breaker_failures,
            reset_seconds=llm.breaker_reset_seconds,
            clock=clock,
        )

    def __getitem__(self, model: str) -> CircuitBreaker:
        with self._lock:
            found = self._by_model.get(model)
            if found is None:
                found = self._by_model[model] = CircuitBreaker(
                    model, flow=self._flow, failures=self._failures, reset_seconds=self._reset,
                    clock=self._clock,
                )  # fmt: skip
            return found
