"""The cache: canonical keys, the in-process backend's TTLs, bounds, counters and thread safety."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading

import pytest

from operators.llm.cache import InProcessCache, cache_key, canonical_json


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_key_is_namespaced_sha256_of_canonical_json() -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "é"}]}
    expected = hashlib.sha256(
        '{"messages":[{"content":"é","role":"user"}],"model":"m"}'.encode()
    ).hexdigest()
    assert cache_key("chat", payload) == f"surgeflow:v1:chat:{expected}"


@pytest.mark.parametrize(
    "text",
    ["plain", 'quote " backslash \\ slash /', "line\nbreak\ttab\x01\x1f\x7f", "é 中 😀",
     "\u2028\u2029 separators", "\ud7ff\ue000\ufffd"],
)  # fmt: skip
def test_canonical_json_is_the_standard_librarys_compact_sorted_text(text: str) -> None:
    """Keys written before the encoder changed stay valid: the text is byte for byte the same."""
    payload = {"z": [text, 0, 1, True, None, {"b": text, "a": -3}], "a": {"y": 2, "x": text}}
    standard = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(payload) == standard


def test_key_does_not_depend_on_dict_order_at_any_depth() -> None:
    a = {"model": "m", "parameters": {"max_tokens": 10, "temperature": 0}, "prompt_version": "v1"}
    b = {"prompt_version": "v1", "parameters": {"temperature": 0, "max_tokens": 10}, "model": "m"}
    assert canonical_json(a) == canonical_json(b)
    assert cache_key("chat", a) == cache_key("chat", b)


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("embedding", {"model": "m", "parameters": {"max_tokens": 10}, "prompt_version": "v1"}),
        ("chat", {"model": "m2", "parameters": {"max_tokens": 10}, "prompt_version": "v1"}),
        ("chat", {"model": "m", "parameters": {"max_tokens": 11}, "prompt_version": "v1"}),
        ("chat", {"model": "m", "parameters": {"max_tokens": 10}, "prompt_version": "v2"}),
    ],
)
def test_key_changes_with_kind_and_every_field(kind: str, payload: dict) -> None:
    base = {"model": "m", "parameters": {"max_tokens": 10}, "prompt_version": "v1"}
    assert cache_key(kind, payload) != cache_key("chat", base)


def test_message_order_matters() -> None:
    first = [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]
    assert cache_key("chat", {"messages": first}) != cache_key(
        "chat", {"messages": list(reversed(first))}
    )


def test_round_trip_and_counters() -> None:
    cache = InProcessCache(flow="test", max_entries=10, ttl_seconds=60)

    async def scenario() -> tuple[dict[str, bytes], dict[str, bytes]]:
        await cache.set_many({"a": b"1", "b": b"2"}, ttl_seconds=60)
        return await cache.get_many(["a", "b", "c"]), await cache.get_many(["c"])

    found, missing = asyncio.run(scenario())
    assert found == {"a": b"1", "b": b"2"}
    assert missing == {}
    assert cache.stats() == {"hits": 2, "misses": 2, "entries": 2}


def test_cache_ttl_expires_entries() -> None:
    clock = FakeClock()
    cache = InProcessCache(flow="test", max_entries=10, ttl_seconds=100, clock=clock)
    cache.set_many_now({"long": b"x"}, ttl_seconds=1000)
    cache.set_many_now({"short": b"y"}, ttl_seconds=10)
    clock.now += 11
    assert cache.get_many_now(["long", "short"]) == {"long": b"x"}
    clock.now += 90
    assert cache.get_many_now(["long"]) == {}


def test_entries_are_bounded() -> None:
    cache = InProcessCache(flow="test", max_entries=3, ttl_seconds=60)
    cache.set_many_now({f"k{i}": b"v" for i in range(10)}, ttl_seconds=60)
    assert len(cache) == 3
    assert cache.get_many_now(["k9"]) == {"k9": b"v"}


def test_zero_entries_disables_storage() -> None:
    cache = InProcessCache(flow="test", max_entries=0, ttl_seconds=60)
    cache.set_many_now({"a": b"1"}, ttl_seconds=60)
    assert cache.get_many_now(["a"]) == {}
    assert len(cache) == 0


def test_clear_drops_entries_and_counters() -> None:
    cache = InProcessCache(flow="test", max_entries=5, ttl_seconds=60)
    cache.set_many_now({"a": b"1"}, ttl_seconds=60)
    cache.get_many_now(["a", "b"])
    cache.clear()
    assert cache.stats() == {"hits": 0, "misses": 0, "entries": 0}


def test_concurrent_use_from_threads_is_consistent() -> None:
    cache = InProcessCache(flow="test", max_entries=1000, ttl_seconds=60)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(200):
                key = f"w{worker}-{i % 50}"
                cache.set_many_now({key: str(i).encode()}, ttl_seconds=60)
                cache.get_many_now([key, "absent"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = cache.stats()
    assert stats["hits"] == 8 * 200
    assert stats["misses"] == 8 * 200
    assert stats["entries"] == 8 * 50
