"""What the JSON tests of the schemas share: wild text and floats, enrichments of every outcome,
and the check that a model's own JSON writer gives the bytes pydantic gives.

`decision_json` and `response_json` write a model's JSON with orjson (`json_bytes`), which
`to_out_record` used to get from `__pydantic_serializer__.to_json`: `assert_same_json` holds them
to pydantic's bytes, or to pydantic's error when pydantic refuses the model.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import strategies as st
from pydantic import BaseModel

from operators.runtime.records import to_out_record
from schemas.enrichment import Enrichment

E = TypeVar("E", bound=Enrichment)
M = TypeVar("M", bound=BaseModel)

SPECIAL = st.sampled_from(['"', "\\", "/", "\x00", "\x1f", "\x7f", "\u2028", "é", "😀"])
TEXT = st.text(
    alphabet=st.one_of(st.characters(blacklist_categories=("Cs",)), SPECIAL), max_size=40
).map(str.strip)
FLOAT = st.one_of(
    st.floats(min_value=0.0, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1e-7, 5e-324, 1e16, 1e22, 0.1 + 0.2, 123456789.0, 2.5e-05]),
)
"""Costs and latencies: tiny, huge, with many digits."""


def enrichments(
    cls: type[E],
    *,
    prompt_versions: Sequence[str],
    outcomes: Sequence[Any],
    violations: Sequence[str],
    **more: st.SearchStrategy[Any],
) -> st.SearchStrategy[E]:
    """Enrichments of `cls` of every source and of the given outcomes, with wild text and floats
    (`more`: strategies of `cls`'s own fields)."""
    return st.builds(
        cls,
        source=st.sampled_from(["llm", "cache", "rules"]),
        model=st.one_of(st.none(), TEXT.map(lambda t: t[:100])),
        prompt_version=st.sampled_from(prompt_versions),
        tokens_in=st.integers(min_value=0, max_value=2**40),
        tokens_out=st.integers(min_value=0, max_value=500),
        cost_usd=FLOAT,
        latency_ms=FLOAT,
        outcome=st.sampled_from(outcomes),
        fallback_reason=st.sampled_from([None, "disabled", "timeout"]),
        policy_violations=st.lists(st.sampled_from(violations), max_size=3, unique=True).map(tuple),
        **more,
    )


def assert_same_json(model: M, write: Callable[[M], bytes]) -> None:
    """`write(model)`, the model's `json_bytes` and its out record give pydantic's JSON bytes
    (`write` twice: the second from its enrichment memo), or raise pydantic's error."""
    try:
        expected = model.__pydantic_serializer__.to_json(model)
    except ValueError as exc:  # pydantic's error, raised again by `write`
        with pytest.raises(type(exc), match=re.escape(str(exc))):
            write(model)
        return
    assert write(model) == expected
    assert model.json_bytes() == expected  # type: ignore[attr-defined]
    assert to_out_record("t", "k", model).value == expected
    assert write(model) == expected  # the second time, from the enrichment memo


def rss_growth(make: Callable[[], bytes], count: int = 20_000) -> float:
    """RSS growth (bytes) while `count` results of `make` are kept."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * page

    before = rss()
    kept = [make() for _ in range(count)]
    grown = rss() - before
    del kept
    return grown
