"""The seeded surge generators: determinism, stream shape, kinds, schema validity, realism."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from operators.runtime.resources import data_file
from operators.shipments.surge import iter_shipment_surge, shipment_surge
from operators.surge.__main__ import main
from operators.surge.engine import SURGE_START, Generated
from operators.surge.templates import (
    TEMPLATES_DIR,
    TemplateDataError,
    load_shipment_notes,
    load_ticket_texts,
)
from operators.tickets.surge import TEXT_NEEDS, iter_ticket_surge, ticket_surge
from schemas.shipments import ShipmentEvent
from schemas.tickets import Route, TicketMessage

ROOT = Path(__file__).resolve().parents[3]
DATA = data_file()
SCHEMA_VALID = ("valid", "duplicate", "late", "unknown_reference")
COMMON_MALFORMED = {
    "broken_json",
    "json_array",
    "empty_bytes",
    "null",
    "non_utf8",
    "extra_field",
    "naive_timestamp",
    "deep_nesting",
    "control_chars",
}
SHIPMENT_MALFORMED = COMMON_MALFORMED | {
    "missing_shipment_id",
    "wrong_type",
    "unknown_scan_type",
    "occurred_before_shipped",
    "huge_note",
    "negative_delay",
}
TICKET_MALFORMED = COMMON_MALFORMED | {
    "missing_session_id",
    "wrong_type",
    "unknown_channel",
    "empty_body",
    "huge_body",
    "unknown_tier",
}


@pytest.fixture(scope="module")
def shipments() -> list[Generated]:
    return list(iter_shipment_surge())


@pytest.fixture(scope="module")
def tickets() -> list[Generated]:
    return list(iter_ticket_surge())


def _csv_column(name: str, column: str) -> set[str]:
    with (DATA / name).open(newline="", encoding="utf-8") as rows:
        return {row[column] for row in csv.DictReader(rows)}


def _validates(model: type[BaseModel], value: bytes) -> bool:
    try:
        model.model_validate_json(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def _json(item: Generated) -> dict:
    return json.loads(item.record.value)


def _time(item: Generated, field: str) -> datetime:
    return datetime.fromisoformat(_json(item)[field])


# --- determinism and laziness --------------------------------------------------------------------


@pytest.mark.parametrize("generate", [iter_shipment_surge, iter_ticket_surge])
def test_same_arguments_give_identical_output_and_other_seeds_differ(generate):
    first = list(generate(seed=11, steady_events=200, burst_factor=5))
    again = list(generate(seed=11, steady_events=200, burst_factor=5))
    other = list(generate(seed=12, steady_events=200, burst_factor=5))
    assert first == again
    assert [g.record.value for g in first] != [g.record.value for g in other]


@pytest.mark.parametrize("generate", [shipment_surge, ticket_surge])
def test_record_iterators_are_lazy_and_match_the_generated_records(generate):
    huge = generate(steady_events=5_000_000)
    assert len(list(itertools.islice(huge, 50))) == 50
    detailed = iter_shipment_surge if generate is shipment_surge else iter_ticket_surge
    small = {"seed": 3, "steady_events": 50, "burst_factor": 2}
    assert list(generate(**small)) == [g.record for g in detailed(**small)]


def test_start_must_be_timezone_aware():
    with pytest.raises(ValueError):
        next(iter_shipment_surge(start=datetime(2026, 11, 27)))


def test_start_and_topic_are_honoured():
    start = datetime(2026, 12, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    items = list(iter_ticket_surge(steady_events=20, burst_factor=2, start=start, topic="t.in"))
    assert {g.record.topic for g in items} == {"t.in"}
    first_valid = next(g for g in items if g.kind == "valid")
    assert _time(first_valid, "sent_at") >= start


# --- stream shape --------------------------------------------------------------------------------


@pytest.mark.parametrize("flow", ["shipments", "tickets"])
def test_records_are_numbered_and_keyed_like_kafka_messages(flow, shipments, tickets):
    items = shipments if flow == "shipments" else tickets
    key_field = "shipment_id" if flow == "shipments" else "session_id"
    topic = "shipments.events" if flow == "shipments" else "tickets.messages"
    assert len(items) == 2000 * (1 + 10)
    assert [g.record.offset for g in items] == list(range(len(items)))
    assert {(g.record.topic, g.record.partition) for g in items} == {(topic, None)}
    for g in items:
        if g.kind == f"malformed:missing_{key_field}":
            assert g.record.key is None
            continue
        assert g.record.key
        try:
            payload = _json(g)
        except ValueError:
            continue
        if isinstance(payload, dict):
            assert payload[key_field] == g.record.key


@pytest.mark.parametrize(("flow", "field"), [("shipments", "occurred_at"), ("tickets", "sent_at")])
def test_burst_phase_has_burst_factor_times_the_steady_rate(flow, field, shipments, tickets):
    items = shipments if flow == "shipments" else tickets
    times = [_time(g, field) for g in items if g.kind == "valid"]
    half, end = SURGE_START + timedelta(hours=12), SURGE_START + timedelta(hours=24)
    assert min(times) >= SURGE_START and max(times) < end
    steady = sum(t < half for t in times)
    burst = len(times) - steady
    assert 9.0 < burst / steady < 11.0


@pytest.mark.parametrize(("flow", "field"), [("shipments", "occurred_at"), ("tickets", "sent_at")])
def test_event_time_order_is_roughly_increasing_except_late_records(
    flow, field, shipments, tickets
):
    items = shipments if flow == "shipments" else tickets
    latest = SURGE_START
    for g in items:
        if g.kind not in ("valid", "late"):
            continue
        at = _time(g, field)
        if g.kind == "late":
            assert latest - at >= timedelta(hours=1.5)
        else:
            assert latest - at <= timedelta(minutes=10)
            latest = max(latest, at)


def test_small_runs_have_exact_counts():
    for steady, factor in ((0, 10), (1, 1), (7, 3)):
        assert len(list(shipment_surge(steady_events=steady, burst_factor=factor))) == steady * (
            1 + factor
        )


# --- kinds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flow", ["shipments", "tickets"])
def test_every_kind_is_present_at_its_rate(flow, shipments, tickets):
    items = shipments if flow == "shipments" else tickets
    kinds = Counter(g.kind for g in items)
    malformed = {k.removeprefix("malformed:") for k in kinds if k.startswith("malformed:")}
    expected = SHIPMENT_MALFORMED if flow == "shipments" else TICKET_MALFORMED
    assert malformed == expected
    total = len(items)
    assert 0.012 < kinds["duplicate"] / total < 0.03
    assert 0.001 < kinds["late"] / total < 0.004
    assert 0.003 < sum(n for k, n in kinds.items() if k.startswith("malformed:")) / total < 0.008
    if flow == "shipments":
        assert 0.0015 < kinds["unknown_reference"] / total < 0.005
    else:
        assert "unknown_reference" not in kinds


@pytest.mark.parametrize("flow", ["shipments", "tickets"])
def test_valid_records_validate_and_malformed_ones_do_not(flow, shipments, tickets):
    items = shipments if flow == "shipments" else tickets
    model = ShipmentEvent if flow == "shipments" else TicketMessage
    for g in items:
        if g.kind in SCHEMA_VALID:
            assert _validates(model, g.record.value), (g.kind, g.record.value[:300])
        else:
            assert g.kind.startswith("malformed:")
            assert not _validates(model, g.record.value), (g.kind, g.record.value[:300])


@pytest.mark.parametrize("flow", ["shipments", "tickets"])
def test_valid_timestamps_are_utc_iso_8601(flow, shipments, tickets):
    items = shipments if flow == "shipments" else tickets
    fields = ("occurred_at", "shipped_at", "eta") if flow == "shipments" else ("sent_at",)
    for g in items[:3000]:
        if g.kind == "valid":
            payload = _json(g)
            assert all(payload[f].endswith("Z") for f in fields if f in payload)


@pytest.mark.parametrize("flow", ["shipments", "tickets"])
def test_duplicates_repeat_the_bytes_of_an_earlier_valid_record(flow, shipments, tickets):
    items = shipments if flow == "shipments" else tickets
    seen: set[bytes] = set()
    for g in items:
        if g.kind == "duplicate":
            assert g.record.value in seen
        elif g.kind == "valid":
            assert g.record.value not in seen
            seen.add(g.record.value)


def test_unknown_references_name_a_carrier_or_hub_missing_from_the_csvs(shipments):
    carriers = _csv_column("carriers.csv", "carrier_id")
    hubs = _csv_column("hubs.csv", "hub_id")
    for g in shipments:
        payload = _json(g) if g.kind in ("valid", "unknown_reference") else None
        if g.kind == "valid":
            assert payload["carrier_id"] in carriers and payload["hub_id"] in hubs
        elif g.kind == "unknown_reference":
            assert payload["carrier_id"] not in carriers or payload["hub_id"] not in hubs


def test_malformed_records_carry_the_defect_their_kind_names(shipments, tickets):
    by_kind = {g.kind: g.record.value for g in [*shipments, *tickets] if "malformed" in g.kind}
    assert by_kind["malformed:empty_bytes"] == b""
    assert by_kind["malformed:null"] == b"null"
    with pytest.raises(UnicodeDecodeError):
        by_kind["malformed:non_utf8"].decode("utf-8")
    with pytest.raises(ValueError):
        json.loads(by_kind["malformed:broken_json"])
    assert isinstance(json.loads(by_kind["malformed:json_array"]), list)
    assert by_kind["malformed:deep_nesting"].count(b"[") >= 100
    assert len(json.loads(by_kind["malformed:huge_note"])["note"]) > 4000
    assert len(json.loads(by_kind["malformed:huge_body"])["body"]) > 8000
    assert json.loads(by_kind["malformed:negative_delay"])["delay_minutes"] < 0
    assert "shipment_id" not in json.loads(by_kind["malformed:missing_shipment_id"])


# --- shipments realism ---------------------------------------------------------------------------


def _shipment_scans(shipments: list[Generated]) -> dict[str, list[dict]]:
    scans: dict[str, list[dict]] = defaultdict(list)
    for g in shipments:
        if g.kind in ("valid", "late", "unknown_reference"):
            payload = _json(g)
            scans[payload["shipment_id"]].append(payload)
    for events in scans.values():
        events.sort(key=lambda e: e["occurred_at"])
    return scans


def test_shipments_follow_their_lifecycle_with_bounded_scan_gaps(shipments):
    scans = _shipment_scans(shipments)
    gaps = []
    for events in scans.values():
        times = [datetime.fromisoformat(e["occurred_at"]) for e in events]
        gaps += [b - a for a, b in itertools.pairwise(times)]
        types = [e["scan_type"] for e in events]
        assert types.count("picked_up") <= 1 and types.count("delivered") <= 1
        if "picked_up" in types:
            assert types[0] == "picked_up"
            assert events[0]["occurred_at"] == events[0]["shipped_at"]
        if "delivered" in types:
            assert types[-1] == "delivered"
            assert types.index("out_for_delivery") < types.index("delivered")
    assert len(scans) > 2000
    assert sum(gap > timedelta(hours=5) for gap in gaps) <= len(gaps) / 1000
    assert sum(gap < timedelta(minutes=20) for gap in gaps) <= len(gaps) / 1000


def test_shipments_carry_sla_delays_exceptions_and_stuck_parcels(shipments):
    with (DATA / "carriers.csv").open(newline="", encoding="utf-8") as rows:
        sla = {r["carrier_id"]: float(r["sla_hours"]) for r in csv.DictReader(rows)}
    scans = _shipment_scans(shipments)
    end = max(e["occurred_at"] for events in scans.values() for e in events)
    late_eta = repeated_delays = stuck = 0
    notes = set()
    for events in scans.values():
        first = next((e for e in events if e["carrier_id"] in sla), None)
        if first is None:
            continue
        due = datetime.fromisoformat(first["shipped_at"]) + timedelta(
            hours=sla[first["carrier_id"]]
        )
        late_eta += any(e.get("eta") and datetime.fromisoformat(e["eta"]) > due for e in events)
        repeated_delays += sum(e["scan_type"] == "delay" for e in events) >= 2
        notes |= {e["note"] for e in events if e["scan_type"] == "exception"}
        last = events[-1]
        quiet = datetime.fromisoformat(end) - datetime.fromisoformat(last["occurred_at"])
        stuck += last["scan_type"] not in ("delivered", "exception") and quiet > timedelta(hours=8)
    assert sum(e.get("eta") is not None for ev in scans.values() for e in ev) > 0.6 * sum(
        len(ev) for ev in scans.values()
    )
    assert late_eta > 0.03 * len(scans) and repeated_delays > 0.02 * len(scans)
    assert len(notes) >= 15
    assert stuck > 0.01 * len(scans)


def test_reference_csvs_have_the_documented_shape():
    with (DATA / "carriers.csv").open(newline="", encoding="utf-8") as rows:
        carriers = list(csv.DictReader(rows))
    with (DATA / "hubs.csv").open(newline="", encoding="utf-8") as rows:
        hubs = list(csv.DictReader(rows))
    assert 8 <= len(carriers) <= 12 and 15 <= len(hubs) <= 25
    assert all(24 <= float(c["sla_hours"]) <= 120 for c in carriers)
    assert all(0.70 <= float(c["reliability"]) <= 0.99 for c in carriers)
    assert all(0 <= float(h["congestion"]) <= 1 and len(h["region"]) <= 40 for h in hubs)
    assert 30 <= len(_csv_column("products.csv", "product")) <= 50


# --- tickets realism -----------------------------------------------------------------------------


def test_tickets_cover_every_route_and_label_only_schema_valid_messages(tickets):
    routes = Counter(g.intent for g in tickets if g.kind == "valid")
    assert set(routes) == set(get_args(Route))
    assert min(routes.values()) > 0.03 * sum(routes.values())
    assert all(g.intent is None for g in tickets if g.kind.startswith("malformed:"))
    assert all(g.intent in routes for g in tickets if g.kind in ("duplicate", "late"))


def test_ticket_sessions_have_several_messages_on_every_channel(tickets):
    sessions: dict[str, list[dict]] = defaultdict(list)
    for g in tickets:
        if g.kind == "valid":
            sessions[g.record.key].append(_json(g))
    sizes = Counter(len(messages) for messages in sessions.values())
    assert max(sizes) >= 5 and sum(n for size, n in sizes.items() if size > 1) > 0.3 * len(sessions)
    channels = Counter(messages[0]["channel"] for messages in sessions.values())
    assert set(channels) == {"email", "chat", "it"}
    tiers = Counter(messages[0]["customer_tier"] for messages in sessions.values())
    assert set(tiers) == {"standard", "gold", "platinum"}
    for messages in sessions.values():
        assert len({(m["channel"], m["sender"]) for m in messages}) == 1
        if messages[0]["channel"] == "email":
            assert "@" in messages[0]["sender"] and messages[0]["subject"]


def test_ticket_texts_mention_orders_products_and_emails(tickets):
    products = _csv_column("products.csv", "product")
    bodies = [_json(g)["body"] for g in tickets if g.kind == "valid"]
    assert len(set(bodies)) > 0.5 * len(bodies)
    assert sum("ORD-" in b for b in bodies) > 0.2 * len(bodies)
    assert sum("@" in b for b in bodies) > 0.02 * len(bodies)
    mentioned = {p for b in bodies[:5000] for p in products if p.lower() in b.lower()}
    assert len(mentioned) > 0.8 * len(products)


# --- template files ------------------------------------------------------------------------------


def _broken_templates(tmp_path: Path, name: str, change) -> Path:
    """A copy of data/templates/ with `change(data)` applied to the JSON of file `name`."""
    for source in TEMPLATES_DIR.iterdir():
        if source.name.endswith(".json"):
            (tmp_path / source.name).write_bytes(source.read_bytes())
    path = tmp_path / name
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    return tmp_path


def _load_all(directory: Path) -> None:
    load_shipment_notes(directory)
    load_ticket_texts(TEXT_NEEDS, directory)


def test_template_files_load_with_every_route_and_channel():
    notes = load_shipment_notes()
    texts = load_ticket_texts(TEXT_NEEDS)
    assert set(notes.exception_notes) == set(notes.exception_weights)
    assert None in notes.delay_notes
    assert set(TEXT_NEEDS.customer_routes) <= set(texts.customer)
    assert set(TEXT_NEEDS.staff_routes) <= set(texts.staff)
    assert set(texts.follow_ups) == set(texts.switch_leads) == {"email", "chat", "it"}
    assert set(texts.customer) | set(texts.staff) <= set(get_args(Route))


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("ticket_messages.json", lambda d: d.pop("subjects"), "missing keys ['subjects']"),
        ("ticket_framing.json", lambda d: d.update(signoffs=[]), "unexpected keys ['signoffs']"),
        ("ticket_messages.json", lambda d: d["customer"].pop("refund"), "lacks entries"),
        ("ticket_messages.json", lambda d: d["staff"].update(general=[]), "non-empty list"),
        ("ticket_framing.json", lambda d: d.update(greetings=["Hi {customer},"]), "{customer}"),
        ("ticket_framing.json", lambda d: d.update(closings=["Best }"]), "not a valid template"),
        ("ticket_senders.json", lambda d: d.update(staff_domain=7), "must be a non-blank"),
        ("shipment_notes.json", lambda d: d["exceptions"]["lost"].update(weight=-1), ">= 0"),
        ("shipment_notes.json", lambda d: d.update(delay_notes=[None, 3]), "delay_notes[1]"),
    ],
)
def test_malformed_template_files_are_rejected_with_the_file_and_entry(
    tmp_path, name, change, message
):
    directory = _broken_templates(tmp_path, name, change)
    with pytest.raises(TemplateDataError) as error:
        _load_all(directory)
    assert name in str(error.value)
    assert message in str(error.value)


def test_template_files_that_are_missing_or_not_json_are_rejected(tmp_path):
    with pytest.raises(TemplateDataError, match="cannot read"):
        load_shipment_notes(tmp_path)
    (tmp_path / "shipment_notes.json").write_text('{"exceptions": ', encoding="utf-8")
    with pytest.raises(TemplateDataError, match="not valid UTF-8 JSON"):
        load_shipment_notes(tmp_path)


# --- command line and samples --------------------------------------------------------------------


def test_cli_writes_one_utf8_record_per_line_and_reports_skips(tmp_path, capsys):
    out = tmp_path / "shipments.jsonl"
    assert (
        main(["shipments", "--seed", "5", "--steady", "100", "--burst", "10", "--out", str(out)])
        == 0
    )
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b""
    expected = [
        g.record.value
        for g in iter_shipment_surge(seed=5, steady_events=100, burst_factor=10)
        if g.record.value and b"\n" not in g.record.value and _is_utf8(g.record.value)
    ]
    assert lines[:-1] == expected
    err = capsys.readouterr().err
    assert f"skipped {1100 - len(expected)} records" in err


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_cli_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "operators.surge", "tickets", "--steady", "5", "--burst", "2"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    assert len(done.stdout.splitlines()) <= 15
    assert b"skipped" in done.stderr


@pytest.mark.parametrize(
    ("name", "model"), [("shipments", ShipmentEvent), ("tickets", TicketMessage)]
)
def test_sample_files_are_valid_utf8_jsonl_with_some_bad_lines(name, model):
    lines = (DATA / "samples" / f"{name}.sample.jsonl").read_text(encoding="utf-8").splitlines()
    assert 250 <= len(lines) <= 350
    valid = sum(_validates(model, line.encode("utf-8")) for line in lines)
    assert 0.9 * len(lines) < valid < len(lines)
