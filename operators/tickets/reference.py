"""The tickets flow's reference data: channels (`data/channels.csv`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any

import polars as pl

from operators.runtime.reference import (
    DATA_DIR,
    ReferenceDataError,
    check_unique,
    read_table,
)
from schemas.tickets import Priority


@dataclass(frozen=True)
class ChannelReference:
    """Channels (`channel, base_priority, response_sla_minutes`)."""

    channels: pl.DataFrame

    @functools.cached_property
    def channel_rows(self) -> dict[str, tuple[Priority, Any]]:
        """`channel` → (base_priority, response_sla_minutes), built on first use; a channel
        without a base priority is left out (unknown, as a left join leaves it), and a missing
        response target is None (as the join gave it)."""
        rows = self.channels.select("channel", "base_priority", "response_sla_minutes")
        return {c: (p, sla) for c, p, sla in rows.iter_rows() if p is not None}

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
