"""Checks on what flows run as subprocesses wrote: every input accounted for once outputs are
deduplicated by id, copies of a decision agreeing, and two runs' outputs compared."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Optional

from operators.config.settings import Settings
from operators.surge.engine import Generated
from tests.flows.kafka_runs import Consumed
from tests.flows.recovery_runs import TopicFollower

# --- accounting ----------------------------------------------------------------------------------


def by_id(records: Iterable[Consumed], id_field: str) -> dict[str, list[dict]]:
    """Output values grouped by their id, copies in the order they were written."""
    groups: dict[str, list[dict]] = {}
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        value = record.json()
        groups.setdefault(value[id_field], []).append(value)
    return groups


def unaccounted_inputs(
    generated: Sequence[Generated],
    placed: Sequence[tuple[int, int]],
    decisions: dict[str, list[dict]],
    dead: dict[str, list[dict]],
) -> list[str]:
    """Inputs with neither a decision covering their event nor a dead letter for their record.

    `decisions` and `dead` are outputs deduplicated by id (`by_id`). A valid, duplicate or late
    scan is accounted for by a decision listing its `event_id` (a duplicate is counted in the
    decision holding the original) or by a dead letter at its partition and offset; any other
    record must have a dead letter.
    """
    covered = {e for copies in decisions.values() for e in copies[0]["event_ids"]}
    dead_at = {
        (copies[0]["source"]["partition"], copies[0]["source"]["offset"])
        for copies in dead.values()
    }
    missing = []
    for g, where in zip(generated, placed, strict=True):
        event_id = _event_id(g) if g.kind in ("valid", "duplicate", "late") else None
        if where not in dead_at and (event_id is None or event_id not in covered):
            missing.append(f"{g.kind} record at {where} (event {event_id})")
    return missing


def unanswered_messages(
    generated: Sequence[Generated],
    placed: Sequence[tuple[int, int]],
    responses: dict[str, list[dict]],
    dead: dict[str, list[dict]],
) -> list[str]:
    """Ticket messages with neither a response nor a dead letter for their record (outputs
    deduplicated by id); a message sent twice is answered by the one response of its id."""
    answered = {copies[0]["message_id"] for copies in responses.values()}
    dead_at = {
        (copies[0]["source"]["partition"], copies[0]["source"]["offset"])
        for copies in dead.values()
    }
    missing = []
    for g, where in zip(generated, placed, strict=True):
        valid = g.kind in ("valid", "duplicate", "late")
        message_id = json.loads(g.record.value)["message_id"] if valid else None
        if where not in dead_at and (message_id is None or message_id not in answered):
            missing.append(f"{g.kind} record at {where} (message {message_id})")
    return missing


def _event_id(g: Generated) -> Optional[str]:
    return json.loads(g.record.value)["event_id"]


DECIDED = ("action", "reasons", "risk", "trigger", "window_start", "window_end", "event_ids")
"""Fields that copies of one decision must agree on (the rest say when and how it was made)."""


def disagreeing_copies(decisions: dict[str, list[dict]]) -> list[str]:
    """Ids whose copies differ in what was decided."""
    return [
        decision_id
        for decision_id, copies in decisions.items()
        if any({f: c[f] for f in DECIDED} != {f: copies[0][f] for f in DECIDED} for c in copies)
    ]


def events_in_two_decisions(decisions: dict[str, list[dict]]) -> list[str]:
    """Event ids listed by more than one distinct decision."""
    seen: dict[str, str] = {}
    twice = []
    for decision_id, copies in decisions.items():
        for event_id in copies[0]["event_ids"]:
            if seen.setdefault(event_id, decision_id) != decision_id:
                twice.append(event_id)
    return twice


def decided(decisions: dict[str, list[dict]]) -> dict[str, tuple]:
    """Per decision id, what was decided (first copy)."""
    return {i: tuple(str(copies[0][f]) for f in DECIDED) for i, copies in decisions.items()}


# --- comparing runs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outputs:
    """A shipments run's decisions and dead letters, each grouped by id."""

    decisions: dict[str, list[dict]]
    dead: dict[str, list[dict]]

    @classmethod
    def read(cls, settings: Settings) -> Outputs:
        with TopicFollower(settings, [settings.topics.shipments_decisions]) as follower:
            decisions = by_id(follower.read_to_end(), "decision_id")
        with TopicFollower(settings, [settings.topics.shipments_dlq]) as follower:
            dead = by_id(follower.read_to_end(), "dead_letter_id")
        return cls(decisions, dead)

    @property
    def copies(self) -> int:
        """Records written beyond one per id (replays)."""
        groups = [*self.decisions.values(), *self.dead.values()]
        return sum(len(copies) - 1 for copies in groups)


def clock_spread(
    generated: Sequence[Generated], placed: Sequence[tuple[int, int]]
) -> tuple[str, str]:
    """The smallest and largest of the input partitions' latest event times (ISO UTC).

    A process's stream clock is the latest event time of the partitions it read, so it lies in
    this range; at the end of the input it decides which quiet shipments are stuck.
    """
    latest: dict[int, str] = {}
    for g, (partition, _) in zip(generated, placed, strict=True):
        if g.kind in ("valid", "duplicate", "late"):
            at = _utc(json.loads(g.record.value)["occurred_at"])
            latest[partition] = max(latest.get(partition, at), at)
    return min(latest.values()), max(latest.values())


def _utc(stamp: str) -> str:
    return datetime.fromisoformat(stamp).astimezone(UTC).isoformat()


def differences(one: Outputs, other: Outputs, spread: tuple[str, str]) -> list[str]:
    """What `other` decided or dead-lettered differently from `one`.

    Identical except for end-of-input stuck reports of shipments whose stuck time falls within
    `spread` (`clock_spread`): each process judges those by its own stream clock.
    """
    found = []
    if set(one.dead) != set(other.dead):
        found.append(f"dead letters differ: {sorted(set(one.dead) ^ set(other.dead))[:5]}")
    a, b = decided(one.decisions), decided(other.decisions)
    for decision_id in set(a) | set(b):
        if a.get(decision_id) == b.get(decision_id):
            continue
        copy = (one.decisions.get(decision_id) or other.decisions[decision_id])[0]
        due = _utc(copy["window_end"])
        explained = decision_id not in a or decision_id not in b
        explained = explained and copy["trigger"] == "stuck_timer" and spread[0] <= due <= spread[1]
        if not explained:
            found.append(f"decision {decision_id}: {a.get(decision_id)} != {b.get(decision_id)}")
    return found
