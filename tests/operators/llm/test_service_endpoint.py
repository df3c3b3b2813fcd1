"""A misconfigured endpoint, through the real client and the loopback server.

A wrong path (404 on every call), a wrong API key (401) or a model the endpoint does not serve
(404) cannot be cured by retries or by later calls: the first answer opens the breaker, it is
not retried, and it is logged once at ERROR with the status and the base URL (no credentials);
the probes after each reset period are logged at INFO, not as another ERROR per call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from operators.config.settings import Settings
from operators.llm.breaker import Breakers, State
from operators.llm.provider import endpoint_for_log
from operators.llm.service import OpenAIService
from operators.llm.types import BreakerOpen, LLMCallError
from scripts.redis_server import free_port
from tests.operators.llm.service_calls import MODEL, FakeClock, classify, run
from tests.support.openai_server import OpenAITestServer

CALLS = 8
RESET = 30.0
WRONG_KEY = "sk-wrong-secret-4242"


def misconfigured(
    case: str, openai_server: OpenAITestServer, llm_settings: Callable[..., Settings]
) -> Settings:
    """Settings that get `case`'s status on every call from the test server."""
    if case == "wrong path":
        base_url = f"http://127.0.0.1:{openai_server.port}/not-the-api"
        return llm_settings(openai_base_url=base_url, llm_breaker_reset_seconds=RESET)
    if case == "wrong key":
        openai_server.api_key = "sk-the-right-key"
        return llm_settings(openai_api_key=WRONG_KEY, llm_breaker_reset_seconds=RESET)
    openai_server.fail_model(MODEL, status=404)  # "The model does not exist"
    return llm_settings(llm_breaker_reset_seconds=RESET)


@pytest.mark.parametrize(
    ("case", "status"), [("wrong path", 404), ("wrong key", 401), ("unknown model", 404)]
)
def test_an_endpoint_that_refuses_every_call_opens_the_breaker_once_and_says_so_once(
    openai_server: OpenAITestServer,
    llm_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
    case: str,
    status: int,
) -> None:
    caplog.set_level(logging.DEBUG, logger="operators.llm")
    settings = misconfigured(case, openai_server, llm_settings)
    clock = FakeClock()
    breakers = Breakers.from_settings(settings.llm, flow="test", clock=clock)
    service = OpenAIService(settings, flow="misconfigured", breakers=breakers)

    async def work() -> list[str]:
        reasons = []
        for n in range(CALLS):
            try:
                await classify(service, f"note {n}")
            except (LLMCallError, BreakerOpen) as exc:
                reasons.append(exc.reason)
        clock.advance(RESET)  # the probe meets the same status: open again, logged at INFO
        with pytest.raises(LLMCallError):
            await classify(service, "the probe")
        return reasons

    reasons = run(service, work)
    requests = len(openai_server.requests)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    print(f"{case}: {requests} requests for {CALLS + 1} calls, {len(errors)} ERROR lines")
    assert reasons == ["call_error"] + ["breaker_open"] * (CALLS - 1)
    assert requests == 2, "the first call and the probe; none retried"
    assert breakers[MODEL].state is State.OPEN
    assert len(errors) == 1, errors
    assert (
        f"status {status}" in errors[0] and endpoint_for_log(settings.llm.base_url) in (errors[0])
    )
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("half-open" in m for m in info) and any("open again" in m for m in info)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert WRONG_KEY not in logged and "sk-the-right-key" not in logged


def test_endpoint_for_log_drops_credentials_query_and_fragment() -> None:
    url = "https://user:s3cret@llm.example.com:8443/v1?api-key=k3y#frag"
    assert endpoint_for_log(url) == "https://llm.example.com:8443/v1"
    assert endpoint_for_log(None) == "https://api.openai.com/v1"


def test_a_refused_endpoint_opens_the_breaker_after_its_failures_with_one_warning(
    llm_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="operators.llm")
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    settings = llm_settings(
        openai_base_url=base_url,
        llm_breaker_failures=3,
        llm_retry_initial_seconds=0.01,
        llm_retry_max_seconds=0.02,
    )
    service = OpenAIService(settings, flow="refused")

    async def work() -> list[str]:
        reasons = []
        for n in range(CALLS):
            try:
                await classify(service, f"note {n}")
            except (LLMCallError, BreakerOpen) as exc:
                reasons.append(exc.reason)
        return reasons

    assert run(service, work) == ["call_error"] * 3 + ["breaker_open"] * (CALLS - 3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and base_url in warnings[0] and "connection" in warnings[0].lower()
