"""An OpenAI-compatible HTTP server on loopback, for tests and benchmarks of the LLM layer.

It answers `POST /v1/chat/completions` and `POST /v1/embeddings` in the documented shapes, with
`usage`, so the real `openai` client talks to it over real HTTP:

- chat: when `response_format` carries a JSON schema, the content is an instance of that schema
  (enums chosen by keywords of the user text where possible); otherwise a short sentence. A test
  may install `server.responder = fn(request_json) -> content`.
- embeddings: deterministic hashed bag-of-words vectors (dimension 256, L2-normalised), so texts
  sharing words get similar vectors; `encoding_format` `float` or `base64` (little-endian float32).
- latency: `server.latency` is fixed seconds or a zero-argument callable returning seconds;
  `lognormal_latency(p50, p99)` gives the heavy-tailed distribution LLM providers show.
- faults: `rate_limit_next`, `fail_next`, `hang_next`, `malformed_next` affect the next N requests.
- log: `server.requests`, `server.count(path)`, `server.retries(path)` (attempts the client marked
  as retries with `x-stainless-retry-count`), `server.calls(path)` (first attempts).

The answers themselves (schema instances, vectors, payloads) come from `tests.support.fake_outputs`.

    with OpenAITestServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.fake_outputs import (
    DEFAULT_KEYWORDS,
    chat_completion,
    chat_content,
    embeddings_list,
)

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"


Z_99 = 2.3263478740408408
"""The standard normal's 99th percentile."""


def lognormal_latency(p50: float, p99: float, *, seed: int | None = None) -> Callable[[], float]:
    """Seconds drawn from the lognormal whose median is `p50` and 99th percentile is `p99`."""
    if not 0 < p50 <= p99:
        raise ValueError("need 0 < p50 <= p99")
    mu, sigma = math.log(p50), math.log(p99 / p50) / Z_99
    rng = random.Random(seed)
    lock = threading.Lock()

    def draw() -> float:
        with lock:
            return rng.lognormvariate(mu, sigma)

    return draw


@dataclass(frozen=True)
class Fault:
    """What to do instead of a normal answer: `status`, `hang` or `malformed`."""

    kind: str
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    path: str | None = None


@dataclass
class LoggedRequest:
    """One request as the server saw it (logged on arrival; `status` is 0 until answered)."""

    path: str
    body: Any
    headers: dict[str, str]
    retry_count: int
    fault: str | None
    status: int = 0
    at: float = field(default_factory=time.time)


class OpenAITestServer:
    """A threaded OpenAI-compatible server on 127.0.0.1 and a free port; a context manager."""

    def __init__(
        self,
        *,
        latency: float | Callable[[], float] = 0.0,
        responder: Callable[[dict[str, Any]], str] | None = None,
        keywords: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.latency = latency
        self.responder = responder
        self.keywords = dict(DEFAULT_KEYWORDS if keywords is None else keywords)
        self._faults: deque[Fault] = deque()
        self._log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> OpenAITestServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
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

    # --- fault injection ---

    def rate_limit_next(
        self, times: int = 1, *, retry_after: float = 0.05, path: str | None = None
    ) -> None:
        """The next `times` requests get 429 with `Retry-After: <retry_after>`."""
        self._add(times, Fault("status", status=429, retry_after=retry_after, path=path))

    def fail_next(
        self,
        times: int = 1,
        *,
        status: int = 500,
        retry_after: float | None = None,
        path: str | None = None,
    ) -> None:
        """The next `times` requests get `status` with an OpenAI error body."""
        self._add(times, Fault("status", status=status, retry_after=retry_after, path=path))

    def hang_next(self, times: int = 1, *, seconds: float = 5.0, path: str | None = None) -> None:
        """The next `times` requests wait `seconds` (or until the server stops) before answering."""
        self._add(times, Fault("hang", seconds=seconds, path=path))

    def malformed_next(self, times: int = 1, *, path: str | None = None) -> None:
        """The next `times` requests get 200 with a truncated JSON body."""
        self._add(times, Fault("malformed", path=path))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add(self, times: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or _same_path(fault.path, path):
                    self._faults.remove(fault)
                    return fault
        return None

    # --- request log ---

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def count(self, path: str | None = None) -> int:
        """Requests received (every attempt) on `path` (`/v1/embeddings`, `embeddings`) or all."""
        return len(self._matching(path))

    def calls(self, path: str | None = None) -> int:
        """First attempts only: logical calls as the client counts them."""
        return sum(1 for r in self._matching(path) if r.retry_count == 0)

    def retries(self, path: str | None = None) -> int:
        """Attempts the client marked as retries (`x-stainless-retry-count` > 0)."""
        return sum(1 for r in self._matching(path) if r.retry_count > 0)

    def reset(self) -> None:
        """Forget the log and pending faults."""
        with self._lock:
            self._log.clear()
            self._faults.clear()

    def _matching(self, path: str | None) -> list[LoggedRequest]:
        return [r for r in self.requests if path is None or _same_path(path, r.path)]

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _delay(self) -> float:
        latency = self.latency
        return float(latency() if callable(latency) else latency)

    # --- answers ---

    def chat_response(self, body: dict[str, Any]) -> dict[str, Any]:
        """The chat completion answering `body`."""
        content = self.responder(body) if self.responder else chat_content(body, self.keywords)
        return chat_completion(body, content)

    def embeddings_response(self, body: dict[str, Any]) -> dict[str, Any]:
        """The embeddings answering `body` (float lists or base64 float32)."""
        return embeddings_list(body)


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAITestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        owner = self.owner
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        retry_count = int(self.headers.get("x-stainless-retry-count") or 0)
        fault = owner._take_fault(self.path)
        entry = LoggedRequest(
            path=self.path,
            body=body,
            headers={k.lower(): v for k, v in self.headers.items()},
            retry_count=retry_count,
            fault=fault.kind if fault else None,
        )
        owner._record(entry)
        entry.status = self._answer(body, fault)

    def _answer(self, body: Any, fault: Fault | None) -> int:
        owner = self.owner
        delay = owner._delay()
        if fault is not None and fault.kind == "hang":
            delay = max(delay, fault.seconds)
        if delay > 0 and owner._stopping.wait(delay):
            return self._send(503, _error("server stopping", "server_error"))
        if fault is not None and fault.kind == "status":
            headers = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after else {}
            kind = "rate_limit_exceeded" if fault.status == 429 else "server_error"
            return self._send(fault.status, _error(f"injected {fault.status}", kind), headers)
        if fault is not None and fault.kind == "malformed":
            return self._send(200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess')
        if not isinstance(body, dict):
            return self._send(400, _error("body is not a JSON object", "invalid_request_error"))
        if _same_path(CHAT_PATH, self.path):
            return self._send(200, json.dumps(owner.chat_response(body)).encode())
        if _same_path(EMBEDDINGS_PATH, self.path):
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


def _error(message: str, kind: str) -> bytes:
    error = {"message": message, "type": kind, "param": None, "code": kind}
    return json.dumps({"error": error}).encode()


def _same_path(wanted: str, path: str) -> bool:
    path = path.split("?", 1)[0].rstrip("/")
    return path == wanted.rstrip("/") or path.endswith("/" + wanted.strip("/"))
