"""What a flow's process does around the records: recovery and shutdown, logs and preflight."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from operators.config.group import SettingsGroup, conventional


class RecoverySettings(SettingsGroup):
    """Recovery (mirrors `python -m bytewax.run -r/-s/-b`; all three or none) and the graceful
    stop."""

    directory: Optional[Path] = Field(
        default=None,
        validation_alias=conventional("BYTEWAX_RECOVERY_DIRECTORY"),
        description="directory of the recovery partitions (`python -m bytewax.recovery DIR N`)",
    )
    snapshot_interval_seconds: Optional[int] = Field(
        default=None,
        gt=0,
        validation_alias=conventional("BYTEWAX_SNAPSHOT_INTERVAL"),
        description="whole seconds between snapshots (Bytewax parses an integer)",
    )
    backup_interval_seconds: Optional[int] = Field(
        default=None,
        ge=0,
        validation_alias=conventional("BYTEWAX_RECOVERY_BACKUP_INTERVAL"),
        description="whole seconds old snapshots are kept for backups of the partitions",
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        ge=0,
        le=3600,
        description="on SIGTERM/SIGINT, how long in-flight LLM calls may finish before the rest "
        "is kept in the final snapshot; the process ends at most 5 s later (keep the sum below "
        "Kubernetes' terminationGracePeriodSeconds, 30 by default)",
    )

    @model_validator(mode="after")
    def _all_or_none(self) -> RecoverySettings:
        """Refuse a half-configured recovery: Bytewax needs the directory and both intervals."""
        given = {
            "BYTEWAX_RECOVERY_DIRECTORY (-r)": self.directory,
            "BYTEWAX_SNAPSHOT_INTERVAL (-s)": self.snapshot_interval_seconds,
            "BYTEWAX_RECOVERY_BACKUP_INTERVAL (-b)": self.backup_interval_seconds,
        }
        missing = [name for name, value in given.items() if value is None]
        if missing and len(missing) < len(given):
            raise ValueError(
                "recovery needs all three of BYTEWAX_RECOVERY_DIRECTORY (-r), "
                "BYTEWAX_SNAPSHOT_INTERVAL (-s) and BYTEWAX_RECOVERY_BACKUP_INTERVAL (-b), or "
                f"none of them; missing: {', '.join(missing)}"
            )
        return self


class ProcessSettings(SettingsGroup):
    """Logs and the start-up checks."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    preflight: bool = Field(
        default=True,
        description="check the configured services when a flow is built; false for air-gapped "
        "starts",
    )
    preflight_timeout_seconds: float = Field(
        default=3.0, gt=0, le=60, description="bound of each preflight check (they run together)"
    )
    gc_tuning: bool = Field(
        default=True,
        description="freeze what start-up allocated and collect the young generation less often "
        "(`operators.runtime.gc_policy`); false keeps Python's default collector settings",
    )
    malloc_trim_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="seconds between two returns of the C heap's free pages to the system "
        "(glibc `malloc_trim`, `operators.runtime.malloc_policy`); 0 turns it off",
    )
