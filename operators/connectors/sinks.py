"""Embedded sinks: JSON lines on stdout or in one file per topic (Bytewax connectors).

Both take `OutRecord`s. On stdout every line is `{"topic", "key", "value"}` so decisions and
dead letters can be told apart; in a directory each topic gets `<topic>-w<worker>.jsonl` holding
the values only, one file per worker so parallel workers never interleave partial lines. Logs go to
stderr, never to stdout.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import IO, Optional

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from operators.runtime.records import OutRecord

_STDOUT_LOCK = threading.Lock()


def _stdout_line(record: OutRecord) -> str:
    key = "null" if record.key is None else _json_string(record.key)
    return f'{{"topic":{_json_string(record.topic)},"key":{key},"value":{record.value.decode()}}}\n'


def _json_string(text: str) -> str:
    return orjson.dumps(text).decode()


class _StdoutPartition(StatelessSinkPartition[OutRecord]):
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write_batch(self, items: list[OutRecord]) -> None:
        text = "".join(_stdout_line(r) for r in items)
        with _STDOUT_LOCK:
            self._stream.write(text)
            self._stream.flush()


class StdoutSink(DynamicSink[OutRecord]):
    """Write every record as one JSON line on stdout (thread-safe across workers)."""

    def __init__(self, stream: Optional[IO[str]] = None) -> None:
        self._stream = stream

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StdoutPartition:
        return _StdoutPartition(self._stream or sys.stdout)


class _DirectoryPartition(StatelessSinkPartition[OutRecord]):
    def __init__(self, directory: Path, worker_index: int) -> None:
        self._directory = directory
        self._worker_index = worker_index
        self._files: dict[str, IO[bytes]] = {}

    def _file(self, topic: str) -> IO[bytes]:
        handle = self._files.get(topic)
        if handle is None:
            path = self._directory / f"{topic}-w{self._worker_index}.jsonl"
            handle = self._files[topic] = path.open("ab")
        return handle

    def write_batch(self, items: list[OutRecord]) -> None:
        by_topic: dict[str, list[bytes]] = {}
        for record in items:
            by_topic.setdefault(record.topic, []).append(record.value + b"\n")
        for topic, lines in by_topic.items():
            handle = self._file(topic)
            handle.write(b"".join(lines))
            handle.flush()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()


class DirectorySink(DynamicSink[OutRecord]):
    """Append each record's value to `<directory>/<topic>-w<worker>.jsonl`."""

    def __init__(self, directory: Path) -> None:
        self._directory = Path(directory)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DirectoryPartition:
        self._directory.mkdir(parents=True, exist_ok=True)
        return _DirectoryPartition(self._directory, worker_index)


def read_topic(directory: Path, topic: str) -> list[bytes]:
    """All values written for `topic` under `directory` by every worker (for tools and tests)."""
    lines: list[bytes] = []
    for path in sorted(Path(directory).glob(f"{topic}-w*.jsonl")):
        lines.extend(line for line in path.read_bytes().splitlines() if line)
    return lines
