"""Reference tables loaded from the shipped `data/` as polars DataFrames, for the flow domains'
reference data (`operators.shipments.reference`, `operators.tickets.reference`).

Each table is checked when it is loaded (columns, types, ranges, unique ids), so a broken
reference file stops the flow at start-up with a clear message instead of mid-stream.
"""

from __future__ import annotations

from importlib.resources.abc import Traversable

import polars as pl

from operators.errors import SurgeflowError
from operators.runtime.resources import data_file

DATA_DIR = data_file()


class ReferenceDataError(SurgeflowError, ValueError):
    """A reference file is missing, malformed or out of range."""


def read_table(path: Traversable, schema: dict[str, type[pl.DataType]]) -> pl.DataFrame:
    if not path.is_file():
        raise ReferenceDataError(f"reference file {path} does not exist")
    try:
        frame = pl.read_csv(path.read_bytes(), schema_overrides=schema)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ReferenceDataError(f"cannot read {path}: {exc}") from exc
    missing = set(schema) - set(frame.columns)
    if missing:
        raise ReferenceDataError(f"{path} lacks columns {sorted(missing)}")
    frame = frame.select(list(schema))
    if frame.null_count().sum_horizontal().item() > 0:
        raise ReferenceDataError(f"{path} has empty cells")
    return frame


def check_unique(frame: pl.DataFrame, column: str, path: Traversable) -> None:
    if frame[column].n_unique() != frame.height:
        raise ReferenceDataError(f"{path}: {column} values are not unique")


def check_range(
    frame: pl.DataFrame, column: str, low: float, high: float, path: Traversable
) -> None:
    bad = frame.filter((pl.col(column) < low) | (pl.col(column) > high))
    if bad.height:
        raise ReferenceDataError(f"{path}: {column} outside [{low}, {high}] in {bad.row(0)}")
