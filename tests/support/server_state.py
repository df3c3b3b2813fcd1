"""The fault plan and the request log of `tests.support.openai_server.OpenAITestServer`.

`FaultPlan` holds the faults a test injects: one-shot faults for the next N requests (of one path,
or of any) and standing faults per model. `RequestLog` records every request on arrival (path,
body, headers, the attempt number from `x-stainless-retry-count`, the fault applied, the status
once answered, the arrival time) and the most requests answered at once. The server is both.
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
from typing import Any

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
    """What to do instead of a normal answer: `status`, `hang`, `malformed` or `content`."""

    kind: str
    status: int = 500
    retry_after: float | None = None
    retry_after_ms: float | None = None
    seconds: float = 0.0
    path: str | None = None
    content: str = ""
    immediate: bool = False  # answered at once, without the server's latency (a 429 of a limit)

    def headers(self) -> dict[str, str]:
        """The `Retry-After` / `retry-after-ms` headers of a status fault."""
        headers = {}
        if self.retry_after is not None:
            headers["retry-after"] = f"{self.retry_after:g}"
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = f"{self.retry_after_ms:g}"
        return headers


class ProviderLimits:
    """What a provider does under load, for every request without an injected fault (thread-safe).

    - `requests_per_minute`: a request arriving when `requests_per_minute` requests were admitted
      in the last 60 s gets 429 at once, with `Retry-After` (whole seconds, rounded up) and
      `retry-after-ms` saying when the oldest of them leaves the window; 0 = no limit. Refused
      requests do not count against the limit.
    - `error_rate`: the share of admitted requests answered with `error_status` (500) after the
      usual latency; drawn from a generator seeded with `seed`.

    `refused` and `failed` count what was refused by the limit and failed by the error rate.
    """

    def __init__(
        self,
        *,
        requests_per_minute: int = 0,
        error_rate: float = 0.0,
        error_status: int = 500,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests_per_minute < 0 or not 0.0 <= error_rate <= 1.0:
            raise ValueError("need requests_per_minute >= 0 and 0 <= error_rate <= 1")
        self.requests_per_minute = requests_per_minute
        self.error_rate = error_rate
        self.error_status = error_status
        self._rng = random.Random(seed)
        self._clock = clock
        self._admitted: deque[float] = deque()
        self._lock = threading.Lock()
        self.refused = 0
        self.failed = 0

    def take(self) -> Fault | None:
        """The fault this request gets from the limits, or None for a normal answer."""
        with self._lock:
            now = self._clock()
            if self.requests_per_minute:
                while self._admitted and self._admitted[0] <= now - 60.0:
                    self._admitted.popleft()
                if len(self._admitted) >= self.requests_per_minute:
                    self.refused += 1
                    wait = max(self._admitted[0] + 60.0 - now, 0.001)
                    return Fault(
                        "status",
                        status=429,
                        retry_after=float(math.ceil(wait)),
                        retry_after_ms=round(wait * 1000.0, 1),
                        immediate=True,
                    )
                self._admitted.append(now)
            if self.error_rate and self._rng.random() < self.error_rate:
                self.failed += 1
                return Fault("status", status=self.error_status)
        return None


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


class FaultPlan:
    """Faults to apply instead of normal answers (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._model_faults: dict[str, Fault] = {}

    def rate_limit_next(
        self,
        times: int = 1,
        *,
        retry_after: float | None = 0.05,
        retry_after_ms: float | None = None,
        path: str | None = None,
    ) -> None:
        """The next `times` requests get 429 with `Retry-After` and/or `retry-after-ms`."""
        fault = Fault(
            "status", status=429, retry_after=retry_after, retry_after_ms=retry_after_ms, path=path
        )
        self._add(times, fault)

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

    def violate_schema_next(
        self, times: int = 1, *, content: str = '{"unexpected": true}', path: str | None = None
    ) -> None:
        """The next `times` chat requests get a well-formed completion carrying `content`."""
        self._add(times, Fault("content", content=content, path=path or CHAT_PATH))

    def fail_model(
        self, model: str, *, status: int = 500, retry_after: float | None = None
    ) -> None:
        """Every request for `model` gets `status` until `clear_model(model)`."""
        with self._lock:
            self._model_faults[model] = Fault("status", status=status, retry_after=retry_after)

    def clear_model(self, model: str) -> None:
        with self._lock:
            self._model_faults.pop(model, None)

    def hang_next(self, times: int = 1, *, seconds: float = 5.0, path: str | None = None) -> None:
        """The next `times` requests wait `seconds` (or until the server stops) before answering."""
        self._add(times, Fault("hang", seconds=seconds, path=path))

    def malformed_next(self, times: int = 1, *, path: str | None = None) -> None:
        """The next `times` requests get 200 with a truncated JSON body."""
        self._add(times, Fault("malformed", path=path))

    def clear_faults(self) -> None:
        """Forget pending faults and model faults."""
        with self._lock:
            self._faults.clear()
            self._model_faults.clear()

    def _add(self, times: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def _take_fault(self, path: str, body: Any) -> Fault | None:
        model = body.get("model") if isinstance(body, dict) else None
        with self._lock:
            if isinstance(model, str) and model in self._model_faults:
                return self._model_faults[model]
            for fault in self._faults:
                if fault.path is None or same_path(fault.path, path):
                    self._faults.remove(fault)
                    return fault
        return None


class RequestLog:
    """Every request the server received, and how many it answered at once (thread-safe)."""

    def __init__(self) -> None:
        self._log_lock = threading.Lock()
        self._log: list[LoggedRequest] = []
        self._in_flight = 0
        self.peak_in_flight = 0

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._log_lock:
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

    def attempts_per_call(self, path: str | None = None) -> list[int]:
        """Requests per distinct body (a logical call and its retries), by first arrival."""
        counts: dict[str, int] = {}
        for r in self._matching(path):
            body = json.dumps(r.body, sort_keys=True)
            counts[body] = counts.get(body, 0) + 1
        return list(counts.values())

    def clear_log(self) -> None:
        """Forget every logged request."""
        with self._log_lock:
            self._log.clear()
            self.peak_in_flight = 0

    def _matching(self, path: str | None) -> list[LoggedRequest]:
        return [r for r in self.requests if path is None or same_path(path, r.path)]

    def _record(self, entry: LoggedRequest) -> None:
        with self._log_lock:
            self._log.append(entry)
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def _answered(self) -> None:
        with self._log_lock:
            self._in_flight -= 1


def same_path(wanted: str, path: str) -> bool:
    path = path.split("?", 1)[0].rstrip("/")
    return path == wanted.rstrip("/") or path.endswith("/" + wanted.strip("/"))
