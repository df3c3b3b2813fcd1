"""What `tests.support.openai_server.OpenAITestServer` answers, as JSON-ready values.

- chat: `chat_content` is an instance of the request's JSON schema (`request_schema`: in any
  structured-output dialect) when `response_format` carries
  one (enums chosen by keywords of the user text where possible), otherwise a short sentence;
  `chat_completion` wraps a content in a chat completion with `usage`.
- embeddings: `embed_text` is a deterministic hashed bag-of-words vector (dimension 256,
  L2-normalised), so texts sharing words get similar vectors; `embeddings_list` answers a request
  with them, as float lists or base64 (little-endian float32).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import time
from typing import Any

EMBEDDING_DIM = 256

DEFAULT_KEYWORDS: dict[str, tuple[str, ...]] = {
    # shipments exception categories
    "damaged": ("damaged", "broken", "crushed"),
    "address_issue": ("address", "unclear", "incomplete", "wrong street"),
    "customs_hold": ("customs",),
    "weather": ("storm", "snow", "weather", "flood"),
    "lost": ("missing", "lost", "cannot locate"),
    "refused": ("refused",),
    # ticket routes
    "refund": ("refund", "money back"),
    "shipping_delay": ("late", "delayed", "delay"),
    "damaged_item": ("damaged", "broken", "cracked"),
    "account_access": ("password", "log in", "login", "locked out"),
    "billing": ("invoice", "charged", "billing"),
    "it_incident": ("vpn", "outage", "server", "laptop"),
    "order_status": ("where is my order", "order status", "tracking"),
}


def chat_content(body: dict[str, Any], keywords: dict[str, tuple[str, ...]]) -> str:
    """The content answering a chat request: a JSON instance of its schema, or a sentence."""
    schema = request_schema(body)
    user_text = " ".join(
        str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user"
    ).lower()
    if schema is None:
        return "This is a test answer."
    maker = SchemaInstanceMaker(schema, user_text, keywords)
    return json.dumps(maker.make(schema, "root"))


def chat_completion(body: dict[str, Any], content: str) -> dict[str, Any]:
    """The chat completion answering `body` with `content`, with token usage."""
    prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
    prompt_tokens = _tokens(prompt) + 4 * len(body.get("messages", []))
    completion_tokens = _tokens(content)
    message = {"role": "assistant", "content": content, "refusal": None}
    return {
        "id": f"chatcmpl-{hashlib.sha1(content.encode()).hexdigest()[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "test-model"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def embeddings_list(body: dict[str, Any]) -> dict[str, Any]:
    """The embeddings answering `body` (float lists or base64 float32)."""
    inputs = body.get("input", [])
    texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = embed_text(text)
        encoded: Any = vector
        if as_base64:
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(_tokens(t) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", "test-embedding"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def embed_text(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """A hashed bag-of-words vector of `text`: shared words give similar vectors."""
    vector = [0.0] * dim
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dim
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


class SchemaInstanceMaker:
    """Builds one JSON instance of a JSON Schema (as pydantic emits them)."""

    def __init__(self, root: dict[str, Any], text: str, keywords: dict[str, tuple[str, ...]]):
        self.defs = root.get("$defs", {})
        self.text = text
        self.keywords = keywords

    def make(self, schema: dict[str, Any], name: str) -> Any:
        if "$ref" in schema:
            return self.make(self.defs[schema["$ref"].rsplit("/", 1)[-1]], name)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.choose(schema["enum"])
        for union in ("anyOf", "oneOf", "allOf"):
            if union in schema:
                options = [s for s in schema[union] if s.get("type") != "null"] or schema[union]
                return self.make(options[0], name)
        kind = schema.get("type", "string")
        kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
        return getattr(self, f"_{kind}", self._string)(schema, name)

    def choose(self, values: list[Any]) -> Any:
        """The enum value whose keywords (or name) occur in the user text, else the first."""
        for value in values:
            words = self.keywords.get(str(value), ())
            if any(_has_word(self.text, w) for w in words):
                return value
        for value in values:
            if _has_word(self.text, str(value)) or _has_word(
                self.text, str(value).replace("_", " ")
            ):
                return value
        return values[0]

    def _object(self, schema: dict[str, Any], name: str) -> dict[str, Any]:
        props = schema.get("properties", {})
        return {key: self.make(sub, key) for key, sub in props.items()}

    def _array(self, schema: dict[str, Any], name: str) -> list[Any]:
        count = max(int(schema.get("minItems", 1)), 1)
        count = min(count, int(schema.get("maxItems", count)))
        return [self.make(schema.get("items", {}), name) for _ in range(count)]

    def _string(self, schema: dict[str, Any], name: str) -> str:
        text = f"Test {name.replace('_', ' ')} for this request."
        text = text.ljust(int(schema.get("minLength", 0)), ".")
        return text[: int(schema.get("maxLength", len(text)))]

    def _number(self, schema: dict[str, Any], name: str) -> float:
        low = schema.get("minimum", schema.get("exclusiveMinimum", -math.inf))
        high = schema.get("maximum", schema.get("exclusiveMaximum", math.inf))
        value: float = min(max(0.5, low), high)
        return value

    def _integer(self, schema: dict[str, Any], name: str) -> int:
        return int(max(schema.get("minimum", 0), 0))

    def _boolean(self, schema: dict[str, Any], name: str) -> bool:
        return True

    def _null(self, schema: dict[str, Any], name: str) -> None:
        return None


PROMPT_SCHEMA = re.compile(r"JSON Schema:\s*(\{.*\})\s*$", re.DOTALL)
"""Where a prompt spells out the schema (`operators.llm.structured.SCHEMA_INSTRUCTION`)."""


def request_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a chat request asks its answer to follow, in whichever dialect it is
    asked: OpenAI's `json_schema` response format, llama.cpp's `json_object` with `schema`, or
    spelled out at the end of the system prompt (`json_object` without schema, or none)."""
    response_format = body.get("response_format")
    schema: Any = None
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
    elif isinstance(response_format, dict) and "schema" in response_format:
        schema = response_format.get("schema")
    else:
        system = [m for m in body.get("messages", []) if m.get("role") == "system"]
        found = PROMPT_SCHEMA.search(str(system[0].get("content", ""))) if system else None
        if found is not None:
            try:
                schema = json.loads(found.group(1))
            except ValueError:
                schema = None
    return schema if isinstance(schema, dict) else None


def _has_word(text: str, word: str) -> bool:
    return bool(word) and re.search(rf"\b{re.escape(word.lower())}\b", text) is not None


def _tokens(text: str) -> int:
    return max(len(text.split()), 1)
