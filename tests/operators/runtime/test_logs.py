"""Logging setup pieces that are plain logic: the rate-limited sink and the line formats."""

from __future__ import annotations

import json
import logging
import threading

from flows.startup import cluster_position
from operators.runtime.logs import (
    JsonLinesFormatter,
    RateLimitedLog,
    UtcFormatter,
    WorkerContext,
    bind_worker,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def collecting_logger(name: str) -> tuple[logging.Logger, Collect]:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = Collect()
    logger.handlers = [handler]
    return logger, handler


def test_one_line_per_kind_per_interval_and_the_held_back_count() -> None:
    logger, out = collecting_logger("tests.logs.rate")
    clock = FakeClock()
    sink = RateLimitedLog(logger, interval=10.0, clock=clock)
    for _ in range(400):  # a 25 s broker outage: librdkafka's FAIL line per reconnect
        sink.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connection refused")
        clock.now += 0.0625
    sink.log(logging.WARNING, "%s [%s] %s", "REQTMOUT", "rdkafka#producer-1", "timed out")
    assert out.lines[0] == "FAIL [rdkafka#consumer-1] Connection refused"
    assert len([line for line in out.lines if line.startswith("FAIL")]) == 3  # 25 s: t=0, 10, 20
    assert out.lines[1].endswith("(and 159 more like it in the last 10 s)")
    assert out.lines[-1] == "REQTMOUT [rdkafka#producer-1] timed out"
    assert sink.held_back() == 79


def test_lines_below_the_level_are_not_counted() -> None:
    logger, out = collecting_logger("tests.logs.level")
    logger.setLevel(logging.WARNING)
    sink = RateLimitedLog(logger, clock=FakeClock())
    sink.log(logging.INFO, "%s [%s] %s", "CONNECT", "c", "connecting")
    assert out.lines == [] and sink.held_back() == 0


def record(message: str) -> logging.LogRecord:
    rec = logging.LogRecord("operators.x", logging.WARNING, __file__, 1, message, (), None)
    rec.created = 0.5  # 1970-01-01T00:00:00.500 UTC
    WorkerContext("tickets", workers_per_process=2).filter(rec)  # main thread: not a worker
    return rec


def test_text_lines_carry_utc_time_level_logger_flow_and_worker() -> None:
    formatter = UtcFormatter("%(asctime)s %(levelname)s %(name)s [%(flow)s %(worker)s] %(message)s")
    line = formatter.format(record("Redis is back"))
    assert line == "1970-01-01T00:00:00.500+00:00 WARNING operators.x [tickets -] Redis is back"


def test_json_lines_carry_the_same_fields() -> None:
    line = json.loads(JsonLinesFormatter().format(record('a "quoted" word')))
    assert line == {
        "time": "1970-01-01T00:00:00.500+00:00", "level": "WARNING", "logger": "operators.x",
        "flow": "tickets", "worker": "-", "message": 'a "quoted" word',
    }  # fmt: skip


def test_the_cluster_position_comes_from_the_run_flags_or_the_environment() -> None:
    assert cluster_position(["flows.tickets", "-w", "2", "-i", "1", "-a", "x;y"], {}) == (1, 2)
    assert cluster_position(None, {"BYTEWAX_PROCESS_ID": "3"}) == (3, 1)
    pod = {"BYTEWAX_POD_NAME": "tickets-2", "BYTEWAX_STATEFULSET_NAME": "tickets"}
    assert cluster_position(None, {**pod, "BYTEWAX_WORKERS_PER_PROCESS": "4"}) == (2, 4)
    assert cluster_position(["flows.tickets"], {}) == (0, 1)


def test_a_worker_thread_is_named_by_its_cluster_wide_index() -> None:
    context = WorkerContext("tickets", process=1, workers_per_process=2)
    seen: list[str] = []

    def work() -> None:
        bind_worker(3)
        seen.append(context.worker_label())
        bind_worker(None)
        seen.append(context.worker_label())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == ["w3", "-"]


def test_with_one_worker_per_process_the_main_thread_is_that_worker() -> None:
    assert WorkerContext("tickets", process=3, workers_per_process=1).worker_label() == "w3"
    assert WorkerContext("tickets", process=3, workers_per_process=2).worker_label() == "-"
