"""Reference data (carriers, hubs, channels) loaded from the shipped `data/` as polars DataFrames.

Each table is checked when it is loaded (columns, types, ranges, unique ids), so a broken
reference file stops the flow at start-up with a clear message instead of mid-stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources.abc import Traversable

import polars as pl

from operators.runtime.resources import data_file

DATA_DIR = data_file()


class ReferenceDataError(ValueError):
    """A reference file is missing, malformed or out of range."""


def _read(path: Traversable, schema: dict[str, pl.DataType]) -> pl.DataFrame:
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


def _check_unique(frame: pl.DataFrame, column: str, path: Traversable) -> None:
    if frame[column].n_unique() != frame.height:
        raise ReferenceDataError(f"{path}: {column} values are not unique")


def _check_range(
    frame: pl.DataFrame, column: str, low: float, high: float, path: Traversable
) -> None:
    bad = frame.filter((pl.col(column) < low) | (pl.col(column) > high))
    if bad.height:
        raise ReferenceDataError(f"{path}: {column} outside [{low}, {high}] in {bad.row(0)}")


@dataclass(frozen=True)
class ShipmentReference:
    """Carriers (`carrier_id, carrier_name, sla_hours, reliability`) and hubs
    (`hub_id, region, congestion`)."""

    carriers: pl.DataFrame
    hubs: pl.DataFrame

    @classmethod
    def load(cls, data_dir: Traversable = DATA_DIR) -> ShipmentReference:
        carriers_path, hubs_path = data_dir / "carriers.csv", data_dir / "hubs.csv"
        carriers = _read(
            carriers_path,
            {
                "carrier_id": pl.String,
                "name": pl.String,
                "sla_hours": pl.Float64,
                "reliability": pl.Float64,
            },
        ).rename({"name": "carrier_name"})
        _check_unique(carriers, "carrier_id", carriers_path)
        _check_range(carriers, "sla_hours", 1, 24 * 60, carriers_path)
        _check_range(carriers, "reliability", 0, 1, carriers_path)
        hubs = _read(
            hubs_path,
            {"hub_id": pl.String, "region": pl.String, "congestion": pl.Float64},
        )
        _check_unique(hubs, "hub_id", hubs_path)
        _check_range(hubs, "congestion", 0, 1, hubs_path)
        return cls(carriers=carriers, hubs=hubs)


@dataclass(frozen=True)
class ChannelReference:
    """Channels (`channel, base_priority, response_sla_minutes`)."""

    channels: pl.DataFrame

    @classmethod
    def load(cls, data_dir: Traversable = DATA_DIR) -> ChannelReference:
        path = data_dir / "channels.csv"
        channels = _read(
            path,
            {"channel": pl.String, "base_priority": pl.String, "response_sla_minutes": pl.Int64},
        )
        _check_unique(channels, "channel", path)
        allowed = {"low", "normal", "high", "urgent"}
        wrong = set(channels["base_priority"]) - allowed
        if wrong:
            raise ReferenceDataError(f"{path}: unknown base_priority values {sorted(wrong)}")
        return cls(channels=channels)
