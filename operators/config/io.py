"""Embedded input and output, input guards and the surge generator (`SURGEFLOW_*`,
`SURGEFLOW_SURGE_*`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Optional

from pydantic import AwareDatetime, Field, model_validator
from pydantic_settings import SettingsConfigDict

from operators.config.group import SettingsGroup

EVENT_TIME_FLOOR = datetime(1000, 1, 1, tzinfo=UTC)
EVENT_TIME_CEILING = datetime(9000, 1, 1, tzinfo=UTC)
"""The widest settable range of input timestamps: a millennium from each end of the calendar."""


class IOSettings(SettingsGroup):
    """Where records come from and go without Kafka, and what an input record may be."""

    input_file: Optional[Path] = None
    output_dir: Optional[Path] = None
    batch_size: int = Field(default=500, ge=1, le=100_000)
    max_record_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_json_depth: int = Field(default=32, ge=2, le=512)
    event_time_min: AwareDatetime = Field(
        default=datetime(2000, 1, 1, tzinfo=UTC),
        description="earliest timestamp an input record may carry; earlier ones are dead letters",
    )
    event_time_max: AwareDatetime = Field(
        default=datetime(2100, 1, 1, tzinfo=UTC),
        description="latest timestamp an input record may carry (ETAs and SLAs included)",
    )
    max_future_skew_hours: float = Field(
        default=24.0, gt=0, le=24 * 365 * 100,
        description="how far ahead of the wall clock a record's own event time may be",
    )  # fmt: skip
    dead_letter_raw: Optional[Literal["bounded", "hash", "none"]] = Field(
        default=None,
        description="raw input a dead letter keeps: the first 4 KiB, its sha256 and length, or "
        "its length only; unset = the flow's default (shipments bounded, tickets hash)",
    )

    @model_validator(mode="after")
    def _event_time_range(self) -> IOSettings:
        """Refuse an empty range, or one so near the ends of the calendar that adding a window,
        a timer or an SLA to an accepted timestamp could overflow."""
        if not EVENT_TIME_FLOOR <= self.event_time_min < self.event_time_max <= EVENT_TIME_CEILING:
            raise ValueError(
                "SURGEFLOW_EVENT_TIME_MIN must be before SURGEFLOW_EVENT_TIME_MAX, both within "
                f"{EVENT_TIME_FLOOR.date()} .. {EVENT_TIME_CEILING.date()}"
            )
        return self


class SurgeSettings(SettingsGroup):
    """The bundled seeded surge generator (the embedded input)."""

    model_config = SettingsConfigDict(env_prefix="SURGEFLOW_SURGE_")

    seed: int = 7
    steady_events: int = Field(default=2000, ge=0, le=50_000_000)
    burst_factor: int = Field(default=10, ge=1, le=100)
    rate: float = Field(default=0.0, ge=0.0, description="events/s wall pacing; 0 = unpaced")
