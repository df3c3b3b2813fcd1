"""The circuit breaker's state machine, stepped with a fake clock."""

from __future__ import annotations

import pytest

from operators.llm.breaker import Breakers, CircuitBreaker, State
from operators.llm.types import BreakerOpen, LLMUnavailable
from tests.operators.llm.service_calls import FakeClock, sample


def breaker(clock: FakeClock, failures: int = 3, reset: float = 10.0) -> CircuitBreaker:
    return CircuitBreaker("breaker-test-model", failures=failures, reset_seconds=reset, clock=clock)


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
    assert sample("surgeflow_llm_breaker_state", gen_ai_request_model="breaker-test-model") == 2


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
    breakers = Breakers(failures=1, reset_seconds=5, clock=FakeClock())
    breakers["model-a"].failed(breakers["model-a"].admit())
    assert breakers["model-a"].state is State.OPEN
    assert breakers["model-b"].state is State.CLOSED
    assert breakers["model-a"] is breakers["model-a"]
