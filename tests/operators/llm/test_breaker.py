"""The circuit breaker's state machine, stepped with a fake clock."""

from __future__ import annotations

import logging

import pytest

from operators.llm.breaker import Breakers, CircuitBreaker, State
from operators.llm.types import BreakerOpen, LLMUnavailable
from tests.operators.llm.service_calls import FakeClock, sample


def breaker(clock: FakeClock, failures: int = 3, reset: float = 10.0) -> CircuitBreaker:
    return CircuitBreaker(
        "breaker-test-model", flow="test", failures=failures, reset_seconds=reset, clock=clock
    )


def test_opens_after_consecutive_failures_only() -> None:
    clock = FakeClock()
    b = breaker(clock)
    for _ in range(2):
        b.failed(b.admit())
    b.succeeded(b.admit())
    for _ in range(2):
        b.failed(b.admit())
    assert b.state is State.CLOSED, "a success resets the count"
    b.failed(b.admit())
    assert b.state is State.OPEN
    with pytest.raises(BreakerOpen) as raised:
        b.admit()
    assert isinstance(raised.value, LLMUnavailable) and raised.value.reason == "breaker_open"
    assert (
        sample(
            "surgeflow_llm_breaker_state", flow="test", gen_ai_request_model="breaker-test-model"
        )
        == 2
    )


def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=1)
    b.failed(b.admit())
    clock.advance(9.9)
    with pytest.raises(BreakerOpen):
        b.admit()
    clock.advance(0.1)
    probe = b.admit()
    assert probe.probe and b.state is State.HALF_OPEN
    with pytest.raises(BreakerOpen):
        b.admit()
    b.check(probe)
    b.succeeded(probe)
    assert b.state is State.CLOSED and not b.admit().probe


def test_failed_probe_opens_for_another_reset_period() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=1)
    b.failed(b.admit())
    clock.advance(10)
    b.failed(b.admit())
    assert b.state is State.OPEN
    clock.advance(9)
    with pytest.raises(BreakerOpen):
        b.admit()
    clock.advance(1)
    assert b.admit().probe


def test_released_probe_passes_the_probe_to_the_next_call() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=1)
    b.failed(b.admit())
    clock.advance(10)
    b.released(b.admit())
    assert b.state is State.OPEN
    assert b.admit().probe, "no new wait: the next call probes at once"


def test_attempts_of_calls_admitted_before_the_breaker_opened_stop() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=1)
    early = b.admit()
    b.failed(b.admit())
    with pytest.raises(BreakerOpen):
        b.check(early)


def test_breakers_are_per_model() -> None:
    breakers = Breakers(flow="test", failures=1, reset_seconds=5, clock=FakeClock())
    breakers["model-a"].failed(breakers["model-a"].admit())
    assert breakers["model-a"].state is State.OPEN
    assert breakers["model-b"].state is State.CLOSED
    assert breakers["model-a"] is breakers["model-a"]


def test_trip_opens_at_once_whatever_the_count() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=100)
    b.trip(b.admit(), "status 404 from http://127.0.0.1:1/v1")
    assert b.state is State.OPEN
    clock.advance(10)
    probe = b.admit()
    b.trip(probe, "status 404 from http://127.0.0.1:1/v1")
    assert b.state is State.OPEN, "a tripped probe opens it again"


def test_a_probe_stops_once_it_reopened_the_breaker() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=1)
    b.failed(b.admit())
    clock.advance(10)
    probe = b.admit()
    b.failed(probe, "no answer within 1 s")  # its attempt timed out
    with pytest.raises(BreakerOpen):
        b.check(probe)


def test_every_transition_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="operators.llm.breaker")
    clock = FakeClock()
    b = breaker(clock, failures=2)
    for _ in range(2):
        b.failed(b.admit(), "status 500")
    for _ in range(3):
        with pytest.raises(BreakerOpen):
            b.admit()
    clock.advance(10)
    b.failed(b.admit(), "status 500")
    clock.advance(10)
    b.succeeded(b.admit())
    b.succeeded(b.admit())
    seen = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in seen] == [
        logging.WARNING,
        logging.INFO,
        logging.INFO,
        logging.INFO,
        logging.INFO,
    ], seen
    opened, half, again, half_again, closed = (message for _, message in seen)
    assert "open: 2 failed calls in a row, the last: status 500" in opened
    assert "half-open" in half and "half-open" in half_again
    assert "open again" in again and "closed" in closed
