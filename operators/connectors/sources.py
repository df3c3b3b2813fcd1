"""Embedded sources: the bundled surge generator and a JSON-lines file.

The two embedded sources are `FixedPartitionedSource`s with one partition whose resume state is a
plain position (records emitted, or byte offset), so recovery resumes after the last snapshot.
Records are emitted as `RawRecord` bytes; nothing is parsed here, so a bad line becomes a dead
letter downstream instead of crashing the input.

"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Optional, TypeVar

from bytewax.inputs import (
    FixedPartitionedSource,
    StatefulSourcePartition,
)

from operators.runtime.records import RawRecord

X = TypeVar("X")

RecordFactory = Callable[[], Iterator[RawRecord]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _GeneratorPartition(StatefulSourcePartition[RawRecord, int]):
    def __init__(
        self,
        records: Iterator[RawRecord],
        position: int,
        *,
        batch_size: int,
        rate: float,
        now: Callable[[], datetime],
    ) -> None:
        self._records = records
        self._position = position
        self._batch_size = batch_size
        self._rate = rate
        self._now = now
        self._started = now()
        self._emitted = 0

    def next_batch(self) -> list[RawRecord]:
        size = self._batch_size
        if self._rate > 0:
            elapsed = (self._now() - self._started).total_seconds()
            size = min(size, max(0, int(elapsed * self._rate) - self._emitted))
        batch = list(itertools.islice(self._records, size))
        if not batch and size:
            raise StopIteration()
        self._position += len(batch)
        self._emitted += len(batch)
        return batch

    def next_awake(self) -> Optional[datetime]:
        if self._rate <= 0:
            return None
        return self._started + timedelta(seconds=(self._emitted + 1) / self._rate)

    def snapshot(self) -> int:
        return self._position


class GeneratorSource(FixedPartitionedSource[RawRecord, int]):
    """A deterministic record generator as a one-partition source.

    `factory` must return the same sequence every time it is called (the surge generators are
    seeded); on resume the first `position` records are skipped. `rate` > 0 paces the output to
    that many records per second of wall time; 0 emits as fast as downstream takes them.
    """

    def __init__(
        self,
        factory: RecordFactory,
        *,
        name: str = "surge",
        batch_size: int = 500,
        rate: float = 0.0,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._factory = factory
        self._name = name
        self._batch_size = batch_size
        self._rate = rate
        self._now = now

    def list_parts(self) -> list[str]:
        return [f"{self._name}-0"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Optional[int]
    ) -> _GeneratorPartition:
        position = resume_state or 0
        records = itertools.islice(self._factory(), position, None)
        return _GeneratorPartition(
            records, position, batch_size=self._batch_size, rate=self._rate, now=self._now
        )


class _JsonLinesPartition(StatefulSourcePartition[RawRecord, int]):
    def __init__(self, path: Path, offset: int, *, topic: str, batch_size: int) -> None:
        self._file = path.open("rb")
        self._file.seek(offset)
        self._topic = topic
        self._batch_size = batch_size
        self._line_no = 0 if offset == 0 else None

    def next_batch(self) -> list[RawRecord]:
        batch = []
        for _ in range(self._batch_size):
            offset = self._file.tell()
            line = self._file.readline()
            if not line:
                break
            value = line.rstrip(b"\r\n")
            if value.strip():
                batch.append(RawRecord(value=value, topic=self._topic, offset=offset))
        if not batch and self._at_end():
            raise StopIteration()
        return batch

    def _at_end(self) -> bool:
        here = self._file.tell()
        more = self._file.read(1)
        self._file.seek(here)
        return not more

    def snapshot(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class JsonLinesSource(FixedPartitionedSource[RawRecord, int]):
    """A JSON-lines file as a one-partition source; each non-blank line is one record.

    The record's `offset` is its byte offset in the file (the resume state is the byte offset of
    the next line), its `topic` is the flow's input topic and its key is unknown (None), so the
    record's key field is taken from the JSON itself.
    """

    def __init__(self, path: Path, *, topic: str, batch_size: int = 500) -> None:
        self._path = Path(path)
        self._topic = topic
        self._batch_size = batch_size

    def list_parts(self) -> list[str]:
        return [f"file:{self._path.name}"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Optional[int]
    ) -> _JsonLinesPartition:
        return _JsonLinesPartition(
            self._path, resume_state or 0, topic=self._topic, batch_size=self._batch_size
        )
