"""The tickets flow's parse and format steps run a batch at a time: a message either step raises
on is a `processing_error` dead letter naming the step, and every other message of its batch
gets the response it gets when nothing raises."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from flows import tickets as tickets_flow
from operators.tickets import parse, respond
from operators.tickets.domain import DraftedTicket, EnrichedTicket
from tests.flows.tickets_pinned import run_pinned

FAILING = "MSG-WK3D-000000001"  # the first message of the sample file (first batch)


def without_wall_clock(value: bytes) -> str:
    record = json.loads(value)
    stable = {k: v for k, v in record.items() if k not in ("responded_at", "failed_at")}
    return json.dumps(stable, sort_keys=True)


@pytest.fixture(scope="module")
def plain() -> list[str]:
    return [without_wall_clock(r.value) for r in run_pinned()]


@pytest.mark.parametrize("step", ["parse", "format_response"])
def test_a_message_a_batch_step_raises_on_is_a_dead_letter_and_its_batch_goes_on(
    step: str, plain: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if step == "parse":
        real_parse = parse.parse_tickets

        def parse_or_raise(batch: list[EnrichedTicket], **kwargs: object) -> object:
            if any(t.message.message_id == FAILING for t in batch):
                raise RuntimeError("parser broke")
            return real_parse(batch, **kwargs)  # type: ignore[arg-type]

        # the flow's step calls `parse_tickets` (one batch at a time; the guard retries a batch
        # that raised one message at a time)
        monkeypatch.setattr(tickets_flow, "parse_tickets", parse_or_raise)
    else:
        real_format = respond.format_response

        def format_or_raise(t: DraftedTicket, **kwargs: object) -> object:
            if t.message.message_id == FAILING:
                raise RuntimeError("formatter broke")
            return real_format(t, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(respond, "format_response", format_or_raise)
    out = [json.loads(without_wall_clock(r.value)) for r in run_pinned()]
    failed = [r for r in out if r.get("error_type") == "processing_error"]
    assert failed and all(d["step"] == f"tickets.{step}" for d in failed), failed
    assert all(d["key"] == "SES-WK3D-00000001" for d in failed)
    rest = Counter(json.dumps(r, sort_keys=True) for r in out if r not in failed)
    expected = Counter(r for r in plain if json.loads(r).get("message_id") != FAILING)
    assert sum(expected.values()) == len(plain) - len(failed)
    assert rest == expected
