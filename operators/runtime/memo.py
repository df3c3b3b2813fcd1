"""`remember`: the bounded memos of the rules paths (a dict per kind of value, emptied whole when
full).

A memo is a plain dict read with `get` on the hot path; only a miss calls `remember`. Emptying
the whole dict when it is full, instead of evicting the oldest entry, is one atomic step, so
worker threads that share a memo need no lock, and a memo of values that repeat refills at once.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(memo: dict[K, V], limit: int, key: K, value: V) -> V:
    """Keep `value` under `key` in `memo`, emptying `memo` first when it holds `limit` entries
    or more; return `value`."""
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value
    return value
