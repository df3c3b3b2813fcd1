"""The records' quick constructors give what the plain ones gave.

`RawRecord`, `Valid` and `EnrichedEvent` set their `__dict__` in one call; `source_ref` builds a
`SourceRef` without its validators when the values need none. Hypothesis compares `source_ref`
with `SourceRef(...)` on topics, partitions and offsets that validation keeps, changes or
refuses; the dataclasses are checked for what a frozen dataclass promises.
"""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime
from typing import Any, Optional

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from operators.runtime.records import OutRecord, RawRecord, Valid, source_ref
from operators.shipments.domain import EnrichedEvent
from schemas.dead_letter import SourceRef
from schemas.shipments import ShipmentEvent

PAD = st.sampled_from(["", " ", "\t", "\u00a0", "\x1c", "\u200b"])
TOPIC = st.one_of(
    st.from_regex(r"\A[a-zA-Z0-9._-]{1,249}\Z"),
    st.builds(lambda a, t, b: a + t + b, PAD, st.text(max_size=260), PAD),
)
NUMBER = st.one_of(st.none(), st.integers(min_value=-3, max_value=2**40), st.booleans())


@settings(max_examples=500, deadline=None)
@given(TOPIC, NUMBER, NUMBER)
@example("shipments.events", 0, 0)
@example(" shipments.events", 1, 2)
@example("x" * 250, None, None)
@example("t", True, -1)
def test_source_ref_is_what_validation_makes(
    topic: str, partition: Optional[int], offset: Optional[int]
) -> None:
    try:
        expected = SourceRef(topic=topic, partition=partition, offset=offset)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as raised:
            source_ref(topic, partition, offset)
        assert raised.value.errors(include_url=False) == exc.errors(include_url=False)
        return
    got = source_ref(topic, partition, offset)
    assert got == expected
    assert got.model_dump_json() == expected.model_dump_json()
    assert got.__dict__ == expected.__dict__
    assert list(got.__dict__) == list(expected.__dict__)
    assert {k: type(v) for k, v in got.__dict__.items()} == {
        k: type(v) for k, v in expected.__dict__.items()
    }
    assert got.__pydantic_fields_set__ == expected.__pydantic_fields_set__
    assert got.model_copy(update={"offset": 5}) == expected.model_copy(update={"offset": 5})


def _frozen_dataclass_behaviour(made: Any, again: Any, field: str, other: Any) -> None:
    assert made == again and hash(made) == hash(again)
    assert repr(made) == repr(again)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, field, other)
    changed = dataclasses.replace(made, **{field: other})
    assert getattr(changed, field) == other and changed != made
    assert pickle.loads(pickle.dumps(made)) == made
    assert [f.name for f in dataclasses.fields(made)] == list(vars(made))


def test_raw_record_keeps_its_defaults_and_order() -> None:
    raw = RawRecord(b"{}", "k", "shipments.events", offset=7)
    assert vars(raw) == {
        "value": b"{}", "key": "k", "topic": "shipments.events", "partition": None,
        "offset": 7, "error": None, "error_type": "consumer_error",
    }  # fmt: skip
    _frozen_dataclass_behaviour(
        raw, RawRecord(b"{}", "k", "shipments.events", offset=7), "key", "j"
    )
    assert raw.source_ref() == SourceRef(topic="shipments.events", offset=7)


def test_valid_and_enriched_event_are_frozen_dataclasses() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    event = ShipmentEvent(
        event_id="E1", shipment_id="S1", carrier_id="C1", hub_id="H1", scan_type="delay",
        occurred_at=now, shipped_at=now,
    )  # fmt: skip
    ref = SourceRef(topic="t", partition=0, offset=1)
    valid = Valid(event, ref)
    _frozen_dataclass_behaviour(
        valid, Valid(model=event, source=ref), "source", SourceRef(topic="u")
    )
    fields = dict(
        event=event, source=ref, carrier_name="Fast", sla_hours=24.0, carrier_reliability=0.9,
        region="eu", hub_congestion=0.2, sla_due_at=now,
    )  # fmt: skip
    enriched = EnrichedEvent(**fields)  # type: ignore[arg-type]
    assert vars(enriched) == fields
    _frozen_dataclass_behaviour(enriched, EnrichedEvent(*fields.values()), "region", "us")  # type: ignore[arg-type]


def test_out_record_and_a_subclass_of_a_record_are_built_as_before() -> None:
    out = OutRecord("t", "k", b"{}")
    assert vars(out) == {"topic": "t", "key": "k", "value": b"{}", "headers": ()}
    _frozen_dataclass_behaviour(out, OutRecord(topic="t", key="k", value=b"{}"), "key", "j")

    @dataclasses.dataclass(frozen=True, init=False)
    class Traced(RawRecord):  # the base's `__init__` sets a subclass's `__dict__` too
        pass

    traced = Traced(b"{}", "k", "t", 1, 2)
    assert type(traced) is Traced and vars(traced) == vars(RawRecord(b"{}", "k", "t", 1, 2))
