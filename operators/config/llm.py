"""LLM settings: the endpoint, models, limits, breaker, budgets, concurrency, embeddings, prices
and the reply policy's link allow-list (`SURGEFLOW_LLM_*`, `OPENAI_*`, `SURGEFLOW_EMBED_*`,
`SURGEFLOW_REPLY_LINK_DOMAINS`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, SecretStr, StringConstraints, model_validator
from pydantic_settings import SettingsConfigDict

from operators.config.group import SettingsGroup, conventional
from operators.config.redact import redacted_url

_DOMAIN_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
LinkDomain = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, min_length=3, max_length=253,
        pattern=rf"^(\*\.)?{_DOMAIN_LABEL}(\.{_DOMAIN_LABEL})+$",
    ),
]  # fmt: skip
"""A domain name for the reply policy's link allow-list (`*.` prefix allowed, same meaning)."""

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    # USD per 1M tokens: (input, output)
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
}

StructuredOutput = Literal["json_schema", "json_object_schema", "json_object", "none"]
"""How a server is asked for a JSON answer of a schema (the server's dialect):

- `json_schema`: OpenAI's `response_format: {"type": "json_schema", "json_schema": {...}}`;
- `json_object_schema`: `{"type": "json_object", "schema": {...}}` (llama.cpp's server);
- `json_object`: `{"type": "json_object"}`, the schema in the prompt;
- `none`: no `response_format`, the schema in the prompt.

Whatever the dialect, the answer is parsed and validated against the full schema here."""

Task = Literal["classify", "route", "reply", "embeddings"]
"""What a call is for; each task may have its own endpoint (`SURGEFLOW_LLM_<TASK>_BASE_URL`)."""

TASKS: tuple[Task, ...] = ("classify", "route", "reply", "embeddings")

EmbeddingRole = Literal["query", "passage"]
"""What a text is to its embedding model: a query (a message to route) or a passage (an intent
example). Models trained with roles (e5: "query: " / "passage: ") need to be told."""


@dataclass(frozen=True)
class Endpoint:
    """Where one task's calls go: an OpenAI-compatible base URL (None = OpenAI's), its key, and
    the structured-output dialect its server speaks."""

    base_url: Optional[str]
    api_key: Optional[SecretStr]
    structured_output: StructuredOutput

    def __repr__(self) -> str:
        url = redacted_url(self.base_url) if self.base_url else None
        key = "**********" if self.api_key else None
        dialect = self.structured_output
        return f"Endpoint(base_url={url!r}, api_key={key!r}, structured_output={dialect!r})"


MAX_REQUEST_SECONDS = 600.0
"""The longest timeout any one provider request may have."""

Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""USD per 1M tokens: finite and not negative (a negative price would make a call earn money)."""


class LLMSettings(SettingsGroup):
    """The OpenAI-compatible endpoint and everything that bounds the calls made to it."""

    model_config = SettingsConfigDict(env_prefix="SURGEFLOW_LLM_")

    # --- endpoint (unset = the rules engine) ---
    api_key: Optional[SecretStr] = Field(
        default=None, validation_alias=conventional("OPENAI_API_KEY")
    )
    base_url: Optional[str] = Field(default=None, validation_alias=conventional("OPENAI_BASE_URL"))
    structured_output: StructuredOutput = Field(
        default="json_schema",
        description="how the endpoint is asked for JSON of a schema: json_schema (OpenAI), "
        "json_object_schema (llama.cpp), json_object or none (schema in the prompt)",
    )

    # --- per-task endpoints (each unset part falls back to the shared endpoint above) ---
    classify_base_url: Optional[str] = None
    classify_api_key: Optional[SecretStr] = None
    classify_structured_output: Optional[StructuredOutput] = None
    route_base_url: Optional[str] = None
    route_api_key: Optional[SecretStr] = None
    route_structured_output: Optional[StructuredOutput] = None
    reply_base_url: Optional[str] = None
    reply_api_key: Optional[SecretStr] = None
    reply_structured_output: Optional[StructuredOutput] = None
    embeddings_base_url: Optional[str] = None
    embeddings_api_key: Optional[SecretStr] = None
    embeddings_query_prefix: str = Field(
        default="", max_length=64,
        description="put before each text embedded as a query (a ticket message), e.g. "
        "'query: ' for e5 models",
    )  # fmt: skip
    embeddings_passage_prefix: str = Field(
        default="", max_length=64,
        description="put before each text embedded as a passage (an intent example); e5 models "
        "compare messages with examples best with 'query: ' on both sides",
    )  # fmt: skip

    # --- models and prices ---
    model_classify: str = "gpt-4o-mini"
    model_route: str = "gpt-4o-mini"
    model_reply: str = "gpt-4o-mini"
    model_embeddings: str = "text-embedding-3-small"
    route_models: dict[str, str] = Field(
        default_factory=dict,
        description="chat model per ticket route, as JSON; overrides data/intents.json's "
        "worker models (a route not listed keeps its own, else model_reply)",
    )
    model_fallback: Optional[str] = Field(
        default="gpt-4.1-nano",
        description="cheaper chat model used when the budget cannot pay the configured one; "
        "empty = go straight to the rules engine",
    )
    prices: dict[str, tuple[Price, Price]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per 1M tokens (input, output) by model; each >= 0",
    )
    endpoint_prices: dict[str, dict[str, tuple[Price, Price]]] = Field(
        default_factory=dict,
        description="price tables by base URL, as JSON {base_url: {model: [input, output]}}, "
        "'*' for any model; calls to a listed base URL are priced by its table only",
    )

    # --- one call ---
    timeout_seconds: float = Field(default=20.0, gt=0, le=MAX_REQUEST_SECONDS)
    max_retries: int = Field(default=2, ge=0, le=10)
    retry_initial_seconds: float = Field(default=0.5, ge=0, le=60)
    retry_max_seconds: float = Field(default=8.0, ge=0, le=600)
    max_tokens: int = Field(default=300, ge=16, le=16_384)
    max_input_tokens: int = Field(
        default=1000, ge=16, le=100_000, description="bound on user text in one prompt"
    )

    # --- concurrency (per worker) ---
    max_concurrency: int = Field(default=16, ge=1, le=1024)
    min_concurrency: int = Field(default=1, ge=1, le=1024)
    max_pending: int = Field(
        default=512, ge=1, le=1_000_000,
        description="calls queued or in flight per worker before the worker waits for one to "
        "end; keep below concurrency x max limiter wait / mean latency, or queued calls outwait "
        "the limiter wait and go to the rules engine",
    )  # fmt: skip
    lanes: int = Field(
        default=64, ge=1, le=65_536, description="keyed lanes of each async agent step"
    )
    poll_seconds: float = Field(
        default=0.02, gt=0, le=5, description="how often finished calls are emitted without input"
    )

    # --- shared limits, breaker, budgets ---
    requests_per_minute: int = Field(
        default=0, ge=0, description="per model, shared by every process through Redis; 0 = none"
    )
    tokens_per_minute: int = Field(
        default=0, ge=0, description="per model, prompt + max_tokens reserved; 0 = none"
    )
    rate_burst_seconds: float = Field(
        default=1.0, gt=0, le=60, description="requests/tokens per minute admitted in one burst"
    )
    max_limiter_wait_seconds: float = Field(
        default=30.0, ge=0, le=600, description="longest wait for the rate limits before fallback"
    )
    breaker_failures: int = Field(
        default=5, ge=1, le=10_000, description="consecutive failed calls that open the breaker"
    )
    breaker_reset_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="time open before one probe call is let through"
    )
    budget_tokens_per_minute: int = Field(
        default=0, ge=0, description="per flow, reserved before each call; 0 = none"
    )
    budget_usd_per_minute: float = Field(
        default=0.0, ge=0, description="per flow, reserved before each call; 0 = none"
    )

    # --- embeddings ---
    embed_batch_size: int = Field(
        default=256, ge=1, le=2048, validation_alias="SURGEFLOW_EMBED_BATCH_SIZE"
    )
    embed_batch_wait_seconds: float = Field(
        default=0.01, ge=0, le=5, validation_alias="SURGEFLOW_EMBED_BATCH_WAIT_SECONDS"
    )
    embed_timeout_per_text_seconds: float = Field(
        default=0.05, ge=0, le=10, allow_inf_nan=False,
        validation_alias="SURGEFLOW_EMBED_TIMEOUT_PER_TEXT_SECONDS",
        description="added to timeout_seconds per text of an embedding request (a CPU server "
        "takes time per text); a full batch's timeout may not exceed 600 s",
    )  # fmt: skip

    # --- reply policy (drafted replies and messages) ---
    reply_link_domains: Optional[list[LinkDomain]] = Field(
        default=None,
        max_length=1000,
        validation_alias="SURGEFLOW_REPLY_LINK_DOMAINS",
        description="domains (with their subdomains) a drafted reply or message may link to, "
        "as JSON; unset = the list in data/reply_policy.json",
    )

    @model_validator(mode="after")
    def _embed_timeout_bounded(self) -> LLMSettings:
        """Refuse a per-text allowance that gives a full embedding batch more than 600 s (the
        bound of any one request)."""
        if self.embed_timeout(self.embed_batch_size) > MAX_REQUEST_SECONDS:
            raise ValueError(
                "SURGEFLOW_LLM_TIMEOUT_SECONDS + SURGEFLOW_EMBED_BATCH_SIZE x "
                "SURGEFLOW_EMBED_TIMEOUT_PER_TEXT_SECONDS must not exceed "
                f"{MAX_REQUEST_SECONDS:g} s"
            )
        return self

    def embed_timeout(self, texts: int) -> float:
        """The timeout of an embedding request of `texts` texts: the request timeout plus the
        per-text allowance for each."""
        return self.timeout_seconds + texts * self.embed_timeout_per_text_seconds

    @property
    def enabled(self) -> bool:
        """An OpenAI-compatible endpoint is configured (base URL or API key), shared or for a
        task."""
        return any(self.endpoint(task) is not None for task in TASKS)

    def endpoint(self, task: Task) -> Optional[Endpoint]:
        """Where `task`'s calls go: its own base URL/key/dialect, each part falling back to the
        shared one; None when neither configures an endpoint (the task uses the rules)."""
        base_url = getattr(self, f"{task}_base_url") or self.base_url
        api_key = getattr(self, f"{task}_api_key") or self.api_key
        if not (base_url or api_key):
            return None
        dialect = getattr(self, f"{task}_structured_output", None) or self.structured_output
        return Endpoint(base_url, api_key, dialect)

    def endpoints(self) -> list[tuple[Optional[str], Optional[str]]]:
        """Each distinct (base URL, API key) some task uses, in task order (for start-up
        checks); the key as plain text."""
        found: list[tuple[Optional[str], Optional[str]]] = []
        for task in TASKS:
            endpoint = self.endpoint(task)
            if endpoint is None:
                continue
            key = endpoint.api_key.get_secret_value() if endpoint.api_key else None
            if (endpoint.base_url, key) not in found:
                found.append((endpoint.base_url, key))
        return found

    def __repr_args__(self) -> Iterator[tuple[Optional[str], Any]]:
        """Fields as pydantic shows them, with the credentials of the base URL masked."""
        for name, value in super().__repr_args__():
            if name is not None and name.endswith("base_url") and value is not None:
                yield name, redacted_url(value)
            elif name == "endpoint_prices":
                yield name, {redacted_url(url): table for url, table in value.items()}
            else:
                yield name, value
