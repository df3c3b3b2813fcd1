"""`remember` keeps values until its memo is full, then starts the memo again."""

from __future__ import annotations

from operators.runtime.memo import remember


def test_keeps_values_until_full_then_empties_the_memo_first() -> None:
    memo: dict[str, int] = {}
    assert [remember(memo, 3, key, len(key)) for key in ("a", "bb", "ccc")] == [1, 2, 3]
    assert memo == {"a": 1, "bb": 2, "ccc": 3}
    assert remember(memo, 3, "dddd", 4) == 4
    assert memo == {"dddd": 4}


def test_a_key_kept_again_takes_the_new_value() -> None:
    memo = {"a": 1}
    assert remember(memo, 10, "a", 2) == 2
    assert memo == {"a": 2}
