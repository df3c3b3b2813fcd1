"""`Wire`: an item bound for another process is pickled once however often its pickle is asked
for, arrives as itself, and an item that stays in its process is never pickled."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

from operators.runtime.wire import Wire, unwire
from schemas.dead_letter import SourceRef
from schemas.shipments import ShipmentEvent


class Counted:
    """Counts how often it is pickled."""

    pickled = 0

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> tuple[object, tuple[int]]:
        Counted.pickled += 1
        return (Counted, (self.value,))


def test_an_item_asked_twice_for_its_pickle_is_pickled_once() -> None:
    Counted.pickled = 0
    wire = Wire(Counted(7))
    first, second = pickle.dumps(wire), pickle.dumps(wire)  # Bytewax sizes, then writes
    assert first == second
    assert Counted.pickled == 1
    arrived = pickle.loads(second)
    assert isinstance(arrived, Counted) and arrived.value == 7


def test_an_item_that_stays_is_never_pickled() -> None:
    Counted.pickled = 0
    item = Counted(3)
    assert unwire(Wire(item)) is item
    assert Counted.pickled == 0


def test_a_scan_arrives_equal_with_its_utc_times() -> None:
    at = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    scan = ShipmentEvent(
        event_id="EVT-1", shipment_id="SHP-1", carrier_id="CAR-1", hub_id="HUB-1",
        scan_type="delay", occurred_at=at, shipped_at=at, delay_minutes=30, note="late",
    )  # fmt: skip
    arrived = unwire(pickle.loads(pickle.dumps(Wire((scan, SourceRef(topic="t", offset=4))))))
    assert arrived == (scan, SourceRef(topic="t", offset=4))
    assert arrived[0].occurred_at.tzinfo is UTC
    assert arrived[0].model_fields_set == scan.model_fields_set


def test_unwire_passes_an_unwrapped_item_through() -> None:
    item = {"a": 1}
    assert unwire(item) is item
