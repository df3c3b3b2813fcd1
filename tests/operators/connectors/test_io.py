"""Embedded sources and sinks through real Bytewax dataflows."""

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from prometheus_client import REGISTRY
from pydantic import BaseModel, field_serializer

from operators.connectors.sinks import DirectorySink, StdoutSink, read_topic
from operators.connectors.sources import GeneratorSource, JsonLinesSource
from operators.runtime.io import publish
from operators.runtime.metrics import output_count
from operators.runtime.records import OutRecord, RawRecord
from schemas.dead_letter import DeadLetter, SourceRef
from schemas.enrichment import Enrichment


def _records(n: int):
    return (RawRecord(value=f'{{"n":{i}}}'.encode(), key=str(i), offset=i) for i in range(n))


def test_jsonl_source_reads_every_line_with_offsets(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a":1}\n\n{"a":2}\r\nnot json\n\xff\xfe\n{"a":3}')
    out: list[RawRecord] = []
    flow = Dataflow("jsonl")
    s = op.input("in", flow, JsonLinesSource(path, topic="t", batch_size=2))
    op.output("out", s, TestingSink(out))
    run_main(flow)
    assert [r.value for r in out] == [b'{"a":1}', b'{"a":2}', b"not json", b"\xff\xfe", b'{"a":3}']
    assert [r.offset for r in out] == [0, 9, 18, 27, 30]
    assert {r.topic for r in out} == {"t"}


def test_jsonl_partition_resumes_from_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":2}\n{"a":3}\n')
    source = JsonLinesSource(path, topic="t", batch_size=1)
    part = source.build_part("s", "file:in.jsonl", None)
    assert [r.value for r in part.next_batch()] == [b'{"a":1}']
    resumed = source.build_part("s", "file:in.jsonl", part.snapshot())
    assert [r.value for r in resumed.next_batch()] == [b'{"a":2}']


def test_generator_source_resumes_after_position() -> None:
    source = GeneratorSource(lambda: _records(10), batch_size=4)
    part = source.build_part("s", "surge-0", None)
    assert [r.offset for r in part.next_batch()] == [0, 1, 2, 3]
    resumed = source.build_part("s", "surge-0", part.snapshot())
    assert [r.offset for r in resumed.next_batch()] == [4, 5, 6, 7]


def test_generator_source_paces_by_wall_clock() -> None:
    now = [datetime(2026, 11, 27, tzinfo=UTC)]
    source = GeneratorSource(lambda: _records(100), batch_size=50, rate=10.0, now=lambda: now[0])
    part = source.build_part("s", "surge-0", None)
    assert part.next_batch() == []
    assert part.next_awake() == now[0] + timedelta(seconds=0.1)
    now[0] += timedelta(seconds=2)
    assert len(part.next_batch()) == 20
    now[0] += timedelta(seconds=60)
    assert len(part.next_batch()) == 50


def test_directory_sink_writes_one_file_per_topic_and_worker(tmp_path: Path) -> None:
    items = [OutRecord(topic="a", key="k", value=b'{"x":1}'), OutRecord("b", None, b'{"y":2}')]
    flow = Dataflow("dir")
    op.output("out", op.input("in", flow, TestingSource(items)), DirectorySink(tmp_path))
    run_main(flow)
    assert read_topic(tmp_path, "a") == [b'{"x":1}']
    assert read_topic(tmp_path, "b") == [b'{"y":2}']
    assert (tmp_path / "a-w0.jsonl").is_file()


def test_stdout_sink_prints_topic_key_and_value() -> None:
    buffer = io.StringIO()
    items = [OutRecord(topic="t", key='k"1', value=b'{"x":1}'), OutRecord("t", None, b"{}")]
    flow = Dataflow("stdout")
    op.output("out", op.input("in", flow, TestingSource(items)), StdoutSink(buffer))
    run_main(flow)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert lines == [
        {"topic": "t", "key": 'k"1', "value": {"x": 1}},
        {"topic": "t", "key": None, "value": {}},
    ]


class _Reading(BaseModel):
    """A model whose JSON form cannot be written for one value (its serialiser raises)."""

    key: str
    value: float

    @field_serializer("value")
    def _value(self, value: float) -> float:
        if value < 0:
            raise ValueError(f"cannot write {value}")
        return value


def test_a_model_that_cannot_be_serialised_is_a_dead_letter_and_the_rest_are_written() -> None:
    written: list[OutRecord] = []
    dead: list[DeadLetter] = []
    flow = Dataflow("publish_test")
    models = op.input(
        "in",
        flow,
        TestingSource([_Reading(key=k, value=v) for k, v in [("a", 1.0), ("b", -1.0), ("c", 2.0)]]),
    )
    unwritable = publish(
        "publish", models, topic="out", key=lambda m: m.key, sink=TestingSink(written),
        flow_name="tickets", source=lambda _: SourceRef(topic="in"),
    )  # fmt: skip
    op.output("dead", unwritable, TestingSink(dead))
    run_main(flow)
    assert [r.key for r in written] == ["a", "c"]
    (letter,) = dead
    assert letter.error_type == "processing_error" and letter.key == "b"
    assert letter.step == "publish_test.publish.serialise" and "cannot write -1.0" in letter.error
    assert letter.source == SourceRef(topic="in")


class _Enriched(BaseModel):
    key: str
    value: float
    kind: str
    enrichment: Optional[Enrichment] = None

    @field_serializer("value")
    def _value(self, value: float) -> float:
        if value < 0:
            raise ValueError(f"cannot write {value}")
        return value


_KINDS = output_count(
    "surgeflow_test_publish_kinds", "Test outputs by kind.", "kind", lambda m: m.kind
)


def test_publish_counts_enrichments_rules_labels_and_written_records_per_batch() -> None:
    """Each record counts once by enrichment source, each policy rule it broke, its label and
    its topic; one that cannot be serialised counts as enriched but not as written."""
    rules = Enrichment(source="rules", prompt_version="v1")
    blocked = Enrichment(
        source="rules", prompt_version="v1", outcome="policy_blocked",
        policy_violations=("link_domain", "refund_promise"),
    )  # fmt: skip
    llm = Enrichment(source="llm", prompt_version="v1")
    items = [
        _Enriched(key="a", value=1.0, kind="x", enrichment=rules),
        _Enriched(key="b", value=1.0, kind="y", enrichment=blocked),
        _Enriched(key="c", value=-1.0, kind="x", enrichment=blocked),  # not serialisable
        _Enriched(key="d", value=1.0, kind="x"),
        _Enriched(key="e", value=1.0, kind="y", enrichment=llm),
        _Enriched(key="f", value=1.0, kind="x", enrichment=rules),
    ]
    flow_name = "tickets"
    sample = REGISTRY.get_sample_value
    watched = {
        "rules": ("surgeflow_enrichments_total", {"flow": flow_name, "source": "rules"}),
        "llm": ("surgeflow_enrichments_total", {"flow": flow_name, "source": "llm"}),
        "link": (
            "surgeflow_reply_policy_blocked_total",
            {"flow": flow_name, "rule": "link_domain"},
        ),
        "refund": (
            "surgeflow_reply_policy_blocked_total",
            {"flow": flow_name, "rule": "refund_promise"},
        ),
        "x": ("surgeflow_test_publish_kinds_total", {"flow": flow_name, "kind": "x"}),
        "y": ("surgeflow_test_publish_kinds_total", {"flow": flow_name, "kind": "y"}),
        "out": ("surgeflow_records_out_total", {"flow": flow_name, "topic": "counted-out"}),
    }
    before = {name: sample(*where) or 0.0 for name, where in watched.items()}
    written: list[OutRecord] = []
    dead: list[DeadLetter] = []
    flow = Dataflow("publish_counts")
    models = op.input("in", flow, TestingSource(items, batch_size=4))
    unwritable = publish(
        "publish", models, topic="counted-out", key=lambda m: m.key, sink=TestingSink(written),
        flow_name=flow_name, source=lambda _: SourceRef(topic="in"), count=_KINDS,
    )  # fmt: skip
    op.output("dead", unwritable, TestingSink(dead))
    run_main(flow)
    assert [r.key for r in written] == ["a", "b", "d", "e", "f"]
    assert [d.key for d in dead] == ["c"]
    after = {name: sample(*where) or 0.0 for name, where in watched.items()}
    grown = {name: after[name] - before[name] for name in watched}
    assert grown == {"rules": 4, "llm": 1, "link": 2, "refund": 2, "x": 3, "y": 2, "out": 5}
