"""Prometheus metrics of the LLM layer (prometheus-client's default registry, served by `/metrics`).

Operation duration and token usage follow the OpenTelemetry GenAI semantic conventions in their
Prometheus form (`gen_ai_client_operation_duration_seconds`, `gen_ai_client_token_usage`, with
`gen_ai_operation_name` = `chat` or `embeddings`); everything else is `surgeflow_llm_*`. Every
series carries `flow`, the flow of the `OpenAIService` that made the call (see
`operators.runtime.metrics`); the objects of a service are given its flow when it builds them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROVIDER = "openai"
"""`gen_ai_provider_name` of calls through the OpenAI-compatible client."""

DURATION_BUCKETS = tuple(0.01 * 2**i for i in range(14))  # 0.01 … 81.92 s
TOKEN_BUCKETS = tuple(4**i for i in range(14))  # 1, 4, 16 … 67108864

OPERATION_DURATION = Histogram(
    "gen_ai_client_operation_duration_seconds",
    "Duration of one provider operation (one attempt), by operation, model and error type.",
    ["flow", "gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"],
    buckets=DURATION_BUCKETS,
)
TOKEN_USAGE = Histogram(
    "gen_ai_client_token_usage",
    "Tokens used by one provider operation, by token type (input, output).",
    [
        "flow",
        "gen_ai_operation_name",
        "gen_ai_provider_name",
        "gen_ai_request_model",
        "gen_ai_token_type",
    ],
    buckets=TOKEN_BUCKETS,
)
CALLS = Counter(
    "surgeflow_llm_calls",
    "Logical LLM calls by outcome: success, cache_hit, merged (joined an identical call in "
    "flight), fallback (answered by a cheaper model or the rules engine), failure.",
    ["flow", "operation", "outcome"],
)
RETRIES = Counter(
    "surgeflow_llm_retries",
    "Provider attempts that were retried, by reason (rate_limited, timeout, server_error, "
    "connection).",
    ["flow", "operation", "reason"],
)
FALLBACKS = Counter(
    "surgeflow_llm_fallbacks",
    "Calls sent away from the configured model, by reason (budget, breaker_open, rate_limit_wait, "
    "invalid_output, call_error, timeout) and target (fallback_model, rules).",
    ["flow", "reason", "target"],
)
IN_FLIGHT = Gauge(
    "surgeflow_llm_in_flight",
    "Provider calls in flight in this process.",
    ["flow"],
)
CONCURRENCY_LIMIT = Gauge(
    "surgeflow_llm_concurrency_limit",
    "Current adaptive concurrency limit of provider calls, one series per worker event loop.",
    ["flow", "loop"],
)
LIMITER_WAIT = Histogram(
    "surgeflow_llm_limiter_wait_seconds",
    "Time a call waited for the shared request and token limits before it was sent.",
    ["flow"],
    buckets=(0.0, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LIMITER_BACKEND_UP = Gauge(
    "surgeflow_llm_limiter_backend_up",
    "1 while the shared limits are kept in Redis, 0 while they are kept per process.",
    ["flow"],
)
BREAKER_STATE = Gauge(
    "surgeflow_llm_breaker_state",
    "Circuit breaker state per model: 0 closed, 1 half-open, 2 open.",
    ["flow", "gen_ai_request_model"],
)
COST = Counter(
    "surgeflow_llm_cost_usd",
    "Cost of provider calls in USD, from the price table in the settings.",
    ["flow", "gen_ai_request_model"],
)
COST_SAVED = Counter(
    "surgeflow_llm_cost_saved_usd",
    "Cost the cache and in-flight merging saved: what the answers they served had cost.",
    ["flow", "gen_ai_request_model"],
)
