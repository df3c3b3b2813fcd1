"""`benchmarks.rules_path --profile`: how py-spy's samples become the reported shares."""

from __future__ import annotations

import pytest

from benchmarks.rules_path import IN_RUST, instruction_rows, profile_of


def test_the_profile_leaves_out_start_up_and_counts_own_and_inclusive_samples() -> None:
    raw = "\n".join(
        [
            "<module> (<string>);build_flow (flows/shipments.py);x (a.py) 40",
            "<module> (<string>);<module> (importlib/x.py) 7",
            "<module> (<string>);validate.<locals>.parse_batch (operators/runtime/validate.py);"
            "parse_record (operators/runtime/validate.py);v (pydantic/m.py) 6",
            "<module> (<string>);validate.<locals>.parse_batch (operators/runtime/validate.py);"
            "parse_record (operators/runtime/validate.py) 2",
            f"{IN_RUST} 2",
        ]
    )
    found = profile_of(raw, top=2)
    assert found["top"] == [
        ("v (pydantic/m.py)", pytest.approx(60.0)),
        ("parse_record (operators/runtime/validate.py)", pytest.approx(20.0)),
    ]
    items = dict(found["items"])
    assert items["validate (bytes → ShipmentEvent)"] == pytest.approx(80.0)
    assert items["pydantic (everywhere)"] == pytest.approx(60.0)
    assert items["publish (serialise, count)"] == 0.0


def test_an_empty_profile_reports_nothing() -> None:
    assert profile_of("") == {"items": [], "top": []}


def test_instruction_counts_are_reported_against_the_first_tree() -> None:
    rows = instruction_rows({"baseline": 600_000.0, "this tree": 480_000.0})
    assert rows[-2:] == ["| baseline | 600,000 | 1.00× |", "| this tree | 480,000 | 0.80× |"]
