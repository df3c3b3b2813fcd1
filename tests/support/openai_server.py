"""An OpenAI-compatible HTTP server on loopback, for tests and benchmarks of the LLM layer.

It answers `POST /v1/chat/completions` and `POST /v1/embeddings` in the documented shapes, with
`usage`, so the real `openai` client talks to it over real HTTP:

- chat: when `response_format` carries a JSON schema, the content is an instance of that schema
  (enums chosen by keywords of the user text where possible); otherwise a short sentence. A test
  may install `server.responder = fn(request_json) -> content`. With `obey_injections` set, the
  server plays a model that obeys instructions in the user's text: a chat request whose user
  message holds `ANSWER: {json}` (also inside a JSON string value) is answered with the first such
  object that has the fields the response schema asks for (`injected_answer`); other requests get
  the usual answer.
- embeddings: deterministic hashed bag-of-words vectors (dimension 256, L2-normalised), so texts
  sharing words get similar vectors; `encoding_format` `float` or `base64` (little-endian float32).
- latency: `server.latency` is fixed seconds or a zero-argument callable returning seconds;
  `lognormal_latency(p50, p99)` gives the heavy-tailed distribution LLM providers show. An
  embeddings request also waits `server.embedding_seconds_per_text` per input text, as a CPU
  embedding server's time grows with the batch.
- dialects: with `server.response_formats` set (e.g. `{"text", "json_object"}`), a chat
  request with another `response_format` type gets 500 and the text llama.cpp's server sends;
  the schema of an answer is read from any dialect (`fake_outputs.request_schema`).
- usage: with `server.usage` set to (prompt, completion) tokens, every chat completion reports
  those instead of the counts of its text (a test can then tell what reached the accounting).
- API key: with `server.api_key` set, a request without `Authorization: Bearer <api_key>` gets
  401 `invalid_api_key`, as OpenAI answers a wrong key (None, the default, accepts any key).
- faults: `rate_limit_next`, `fail_next`, `hang_next`, `malformed_next` (a truncated body) and
  `violate_schema_next` (a well-formed completion whose content breaks the schema) affect the next
  N requests (of one path, or of any); `fail_model(model, ...)` fails every request for a model
  until `clear_model(model)`. 429 and 5xx faults may carry `Retry-After` and `retry-after-ms`.
- load: `server.limits`, a `ProviderLimits`, answers 429 (with `Retry-After`) past a
  requests-per-minute limit and a share of requests with 5xx, as a provider under load does.
- models: `GET /v1/models` lists `server.models` (what a preflight asks); it is counted in
  `server.model_listings`, not in the request log, and takes no fault.
- log: `server.requests` (with arrival times), `server.count(path)`, `server.retries(path)`
  (attempts marked as retries with `x-stainless-retry-count`), `server.calls(path)` (first
  attempts), `server.attempts_per_call(path)` (attempts per distinct request body, in order of
  first arrival), `server.peak_in_flight` (most requests being answered at once).

The answers themselves (schema instances, vectors, payloads) come from `tests.support.fake_outputs`.

    with OpenAITestServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.fake_outputs import (
    DEFAULT_KEYWORDS,
    chat_completion,
    chat_content,
    embeddings_list,
)
from tests.support.server_state import (
    CHAT_PATH,
    EMBEDDINGS_PATH,
    Fault,
    FaultPlan,
    LoggedRequest,
    ProviderLimits,
    RequestLog,
    lognormal_latency,
    same_path,
)

__all__ = [
    "CHAT_PATH",
    "EMBEDDINGS_PATH",
    "Fault",
    "LoggedRequest",
    "OpenAITestServer",
    "ProviderLimits",
    "lognormal_latency",
]


class OpenAITestServer(FaultPlan, RequestLog):
    """A threaded OpenAI-compatible server on 127.0.0.1 and a free port; a context manager."""

    def __init__(
        self,
        *,
        latency: float | Callable[[], float] = 0.0,
        responder: Callable[[dict[str, Any]], str] | None = None,
        keywords: dict[str, tuple[str, ...]] | None = None,
        obey_injections: bool = False,
    ) -> None:
        self.latency = latency
        self.responder = responder
        self.obey_injections = obey_injections
        self.keywords = dict(DEFAULT_KEYWORDS if keywords is None else keywords)
        self.api_key: str | None = None
        self.usage: tuple[int, int] | None = None
        self.response_formats: frozenset[str] | None = None
        self.limits: ProviderLimits | None = None
        self.embedding_seconds_per_text = 0.0
        FaultPlan.__init__(self)
        RequestLog.__init__(self)
        self.models = ["gpt-4o-mini", "gpt-4.1-nano", "text-embedding-3-small"]
        self.model_listings = 0
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> OpenAITestServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openai-test-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The `base_url` to give the client (`http://127.0.0.1:<port>/v1`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self) -> None:
        """Forget the log, pending faults and model faults."""
        self.clear_faults()
        self.clear_log()

    def _delay(self) -> float:
        latency = self.latency
        return float(latency() if callable(latency) else latency)

    # --- answers ---

    def chat_response(self, body: dict[str, Any]) -> dict[str, Any]:
        """The chat completion answering `body`."""
        injected = injected_answer(body) if self.obey_injections else None
        if injected is not None:
            return self.completion(body, injected)
        content = self.responder(body) if self.responder else chat_content(body, self.keywords)
        return self.completion(body, content)

    def completion(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        """The chat completion carrying `content`, with `usage` when set."""
        completion = chat_completion(body, content)
        if self.usage is not None:
            prompt, answer = self.usage
            completion["usage"] = {
                "prompt_tokens": prompt, "completion_tokens": answer,
                "total_tokens": prompt + answer,
            }  # fmt: skip
        return completion

    def refused_format(self, body: dict[str, Any]) -> str | None:
        """With `response_formats` set, the text a server that takes only those
        `response_format` types answers another with (500, as llama.cpp's server does)."""
        response_format = body.get("response_format")
        if self.response_formats is None or not isinstance(response_format, dict):
            return None
        kind = response_format.get("type")
        if kind in self.response_formats:
            return None
        allowed = " or ".join(f"'{k}'" for k in sorted(self.response_formats))
        return (
            f"[{{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
            f"'msg': \"Input should be {allowed}\", 'input': '{kind}'}}]"
        )

    def embeddings_response(self, body: dict[str, Any]) -> dict[str, Any]:
        """The embeddings answering `body` (float lists or base64 float32)."""
        return embeddings_list(body)


INJECTED_ANSWER = re.compile(r"ANSWER:\s*")
"""The instruction an obedient model follows: `ANSWER: {json}` anywhere in the user's text."""


def injected_answer(body: dict[str, Any]) -> str | None:
    """The content a model that obeys injected text would answer `body` with, if any.

    The first `ANSWER: {...}` object in the user messages (their text, and every string value
    when the text is JSON) whose keys include every required field of the response schema and
    no field the schema lacks; None without a schema or such an object.
    """
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    fields, required = set(schema.get("properties", {})), set(schema.get("required", []))
    if not fields:
        return None
    decoder = json.JSONDecoder()
    for text in _user_texts(body):
        for match in INJECTED_ANSWER.finditer(text):
            try:
                answer, _ = decoder.raw_decode(text, match.end())
            except ValueError:
                continue
            if isinstance(answer, dict) and required <= set(answer) <= fields:
                return json.dumps(answer)
    return None


def _user_texts(body: dict[str, Any]) -> Iterator[str]:
    for message in body.get("messages", []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if not isinstance(content, str):
            continue
        yield content
        try:
            yield from _strings(json.loads(content))
        except ValueError:
            continue


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


class _Server(ThreadingHTTPServer):
    """A threaded server whose listen backlog takes a burst of concurrent connections."""

    request_queue_size = 1024
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAITestServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        if not same_path(MODELS_PATH, self.path):
            self._send(404, _error(f"no route {self.path}", "invalid_request_error"))
            return
        self.owner.model_listings += 1
        listed = [
            {"id": m, "object": "model", "created": 0, "owned_by": "test"}
            for m in self.owner.models
        ]
        self._send(200, json.dumps({"object": "list", "data": listed}).encode())

    def do_POST(self) -> None:
        owner = self.owner
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        retry_count = int(self.headers.get("x-stainless-retry-count") or 0)
        fault = owner._take_fault(self.path, body)
        if fault is None and owner.limits is not None and self.path != MODELS_PATH:
            fault = owner.limits.take()
        entry = LoggedRequest(
            path=self.path,
            body=body,
            headers={k.lower(): v for k, v in self.headers.items()},
            retry_count=retry_count,
            fault=fault.kind if fault else None,
        )
        owner._record(entry)
        try:
            entry.status = self._answer(body, fault)
        finally:
            owner._answered()

    def _answer(self, body: Any, fault: Fault | None) -> int:
        owner = self.owner
        if owner.api_key is not None and self.headers.get("authorization") != (
            f"Bearer {owner.api_key}"
        ):
            return self._send(401, _error("Incorrect API key provided", "invalid_api_key"))
        delay = 0.0 if fault is not None and fault.immediate else owner._delay()
        if isinstance(body, dict) and same_path(EMBEDDINGS_PATH, self.path):
            delay += owner.embedding_seconds_per_text * _input_count(body)
        if fault is not None and fault.kind == "hang":
            delay = max(delay, fault.seconds)
        if delay > 0 and owner._stopping.wait(delay):
            return self._send(503, _error("server stopping", "server_error"))
        if fault is not None and fault.kind == "status":
            headers = fault.headers()
            kind = "rate_limit_exceeded" if fault.status == 429 else "server_error"
            return self._send(fault.status, _error(f"injected {fault.status}", kind), headers)
        if fault is not None and fault.kind == "malformed":
            return self._send(200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess')
        if fault is not None and fault.kind == "content" and isinstance(body, dict):
            return self._send(200, json.dumps(owner.completion(body, fault.content)).encode())
        if not isinstance(body, dict):
            return self._send(400, _error("body is not a JSON object", "invalid_request_error"))
        refused = owner.refused_format(body)
        if refused is not None and same_path(CHAT_PATH, self.path):
            return self._send(500, _error(refused, "server_error"))
        if same_path(CHAT_PATH, self.path):
            return self._send(200, json.dumps(owner.chat_response(body)).encode())
        if same_path(EMBEDDINGS_PATH, self.path):
            return self._send(200, json.dumps(owner.embeddings_response(body)).encode())
        return self._send(404, _error(f"no route {self.path}", "invalid_request_error"))

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> int:
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("x-request-id", f"req-{time.monotonic_ns()}")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return status


MODELS_PATH = "/v1/models"


def _input_count(body: dict[str, Any]) -> int:
    """Texts in an embeddings request (`input` a string or a list)."""
    inputs = body.get("input")
    return len(inputs) if isinstance(inputs, list) else 1


def _error(message: str, kind: str) -> bytes:
    error = {"message": message, "type": kind, "param": None, "code": kind}
    return json.dumps({"error": error}).encode()


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.support.openai_server [--p50 S] [--p99 S] [--rpm N] [--error-rate X]`:
    serve until SIGTERM or SIGINT, printing the base URL as the first line of stdout."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m tests.support.openai_server")
    parser.add_argument("--p50", type=float, default=0.4, help="median latency, seconds")
    parser.add_argument("--p99", type=float, default=4.0, help="99th percentile latency, seconds")
    parser.add_argument("--rpm", type=int, default=0, help="requests per minute; 0 = no limit")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share answered with 500")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    latency = lognormal_latency(args.p50, args.p99, seed=args.seed) if args.p50 > 0 else 0.0
    server = OpenAITestServer(latency=latency)
    server.limits = ProviderLimits(
        requests_per_minute=args.rpm, error_rate=args.error_rate, seed=args.seed
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        print(server.base_url, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
