"""The tickets flow's reference data: channels (`data/channels.csv`)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources.abc import Traversable

import polars as pl

from operators.runtime.reference import (
    DATA_DIR,
    ReferenceDataError,
    check_unique,
    read_table,
)


@dataclass(frozen=True)
class ChannelReference:
    """Channels (`channel, base_priority, response_sla_minutes`)."""

    channels: pl.DataFrame

    @classmethod
    def load(cls, data_dir: Traversable = DATA_DIR) -> ChannelReference:
        path = data_dir / "channels.csv"
        channels = read_table(
            path,
            {"channel": pl.String, "base_priority": pl.String, "response_sla_minutes": pl.Int64},
        )
        check_unique(channels, "channel", path)
        allowed = {"low", "normal", "high", "urgent"}
        wrong = set(channels["base_priority"]) - allowed
        if wrong:
            raise ReferenceDataError(f"{path}: unknown base_priority values {sorted(wrong)}")
        return cls(channels=channels)
