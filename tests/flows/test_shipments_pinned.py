"""The shipments flow's rules path answers exactly as pinned (`tests.flows.shipments_pinned`)."""

from __future__ import annotations

from collections import Counter

from tests.flows.pinned import assert_matches_pinned, read_pinned
from tests.flows.shipments_pinned import PINNED, pinned_lines, run_pinned


def test_outputs_match_the_pinned_file() -> None:
    assert_matches_pinned(PINNED, pinned_lines(run_pinned()))


def test_the_pinned_file_covers_every_action_trigger_and_dead_letter_kind() -> None:
    """The pin is worth something: four actions (no scan of the input is delayed at a hub
    congested enough to reroute), every trigger, and dead letters of each step."""
    lines = read_pinned(PINNED)
    decisions = [line for line in lines if line["topic"] == "decisions"]
    assert {d["action"] for d in decisions} == {"ok", "notify_customer", "expedite", "escalate"}
    assert {d["trigger"] for d in decisions} == {"window_closed", "end_of_input", "stuck_timer"}
    errors = Counter(line["error"] for line in lines if line["topic"] == "dlq")
    assert {"late_event", "validation_error", "unknown_reference", "invalid_json"} <= set(errors)
