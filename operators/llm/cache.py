"""The prompt and embedding cache: a batched async interface, canonical keys, an in-process backend.

Keys are namespaced and versioned (`surgeflow:v1:<kind>:<sha256>`), and the hash is taken over
canonical JSON (sorted keys, no whitespace), so two requests that differ only in the order of
their parameters share one entry. The interface is batched and async so that a Redis backend can
answer many lookups in one round trip from the worker's event loop; `InProcessCache` is the
embedded default and the small front cache of such a backend.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson
from cachetools import TTLCache

from operators.runtime.metrics import CACHE_LOOKUPS

KEY_NAMESPACE = "surgeflow:v1"
"""Prefix of every cache key; bump the version to orphan every entry after a format change."""


def canonical_json(payload: Mapping[str, Any]) -> str:
    """The one JSON text of `payload`: sorted keys, no whitespace, non-ASCII kept as is.

    Written by orjson (a key costs microseconds, not tens of them); the text is the same as
    `json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`, so keys
    did not change when the encoder did.
    """
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode("utf-8")


def cache_key(kind: str, payload: Mapping[str, Any]) -> str:
    """The cache key of a request: `surgeflow:v1:<kind>:` + sha256 of its canonical JSON.

    A chat payload holds the model, the messages, the parameters and the prompt version; an
    embedding payload holds one text and its model.
    """
    digest = hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()
    return f"{KEY_NAMESPACE}:{kind}:{digest}"


def chat_key(
    *,
    model: str,
    messages: Sequence[Mapping[str, str]],
    parameters: Mapping[str, Any],
    prompt_version: str,
) -> str:
    """The key of a chat request: model, messages (in order), parameters and prompt version."""
    payload = {
        "model": model,
        "messages": list(messages),
        "parameters": dict(parameters),
        "prompt_version": prompt_version,
    }
    return cache_key("chat", payload)


def embedding_key(*, model: str, text: str) -> str:
    """The key of one text's embedding by one model."""
    return cache_key("embedding", {"model": model, "text": text})


def pack_vector(vector: Sequence[float]) -> bytes:
    """An embedding as cached: little-endian float32."""
    return struct.pack(f"<{len(vector)}f", *vector)


def unpack_vector(raw: bytes) -> list[float]:
    """The embedding of a cached value written by `pack_vector`."""
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class PromptCache(Protocol):
    """What the LLM layer needs from a cache: batched lookups and batched writes with a TTL."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored values of those `keys` that are present (missing keys are left out)."""
        ...

    async def set_many(self, items: Mapping[str, bytes], ttl_seconds: int) -> None:
        """Store every item, each expiring after `ttl_seconds`."""
        ...


class InProcessCache:
    """A bounded, thread-safe in-process cache (`cachetools.TTLCache`) with per-write TTLs.

    The `TTLCache` evicts least-recently-used entries beyond `max_entries` and drops entries
    older than `ttl_seconds`; a shorter TTL given to `set_many` is kept with the entry and checked
    on read. `max_entries=0` disables storage. `hits` and `misses` count key lookups, which are
    also counted in `surgeflow_cache_lookups_total{backend="memory"}` under `flow` (the flow
    whose service looks keys up here).
    """

    def __init__(
        self,
        *,
        flow: str,
        max_entries: int = 50_000,
        ttl_seconds: float = 7 * 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._ttl_seconds = ttl_seconds
        self._enabled = max_entries > 0
        self._entries: TTLCache[str, tuple[float, bytes]] = TTLCache(
            maxsize=max(max_entries, 1), ttl=ttl_seconds, timer=clock
        )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._hits = CACHE_LOOKUPS.labels(flow, "memory", "hit")
        self._misses = CACHE_LOOKUPS.labels(flow, "memory", "miss")

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return self.get_many_now(keys)

    async def set_many(self, items: Mapping[str, bytes], ttl_seconds: int) -> None:
        self.set_many_now(items, ttl_seconds)

    def get_many_now(self, keys: Sequence[str], *, count_misses: bool = True) -> dict[str, bytes]:
        """`get_many` without an event loop (for synchronous callers). `count_misses=False` for
        a first look whose misses are looked up again (and counted) on the event loop."""
        found: dict[str, bytes] = {}
        with self._lock:
            now = self._clock()
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None and entry[0] > now:
                    found[key] = entry[1]
                elif entry is not None:
                    del self._entries[key]
            self.hits += len(found)
            self.misses += len(keys) - len(found)
            if not count_misses:
                self.misses -= len(keys) - len(found)
        self._hits.inc(len(found))
        if count_misses:
            self._misses.inc(len(keys) - len(found))
        return found

    def set_many_now(self, items: Mapping[str, bytes], ttl_seconds: float) -> None:
        """`set_many` without an event loop (for synchronous callers)."""
        if not self._enabled or ttl_seconds <= 0:
            return
        with self._lock:
            expires = self._clock() + ttl_seconds
            for key, value in items.items():
                self._entries[key] = (expires, bytes(value))

    @property
    def ttl_seconds(self) -> float:
        """The longest an entry is kept (the TTL given at construction)."""
        return self._ttl_seconds

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def stats(self) -> dict[str, int]:
        """Hits, misses and current entries, for metrics and tests."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries)}

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._entries.clear()
            self.hits = 0
            self.misses = 0
