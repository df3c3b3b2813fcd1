"""The tickets flow's rules path answers exactly as pinned (`tests.flows.tickets_pinned`)."""

from __future__ import annotations

from collections import Counter

from tests.flows.pinned import assert_matches_pinned, read_pinned
from tests.flows.tickets_pinned import PINNED, pinned_lines, run_pinned


def test_outputs_match_the_pinned_file() -> None:
    assert_matches_pinned(PINNED, pinned_lines(run_pinned()))


def test_the_pinned_file_covers_every_route_and_dead_letters() -> None:
    """The pin is worth something: many routes, follow-ups with history, and dead letters."""
    lines = read_pinned(PINNED)
    routes = Counter(line["route"] for line in lines if "route" in line)
    assert len(routes) == 8
    assert any(line.get("history", 0) > 0 for line in lines)
    assert any(line["topic"] == "dlq" for line in lines)
