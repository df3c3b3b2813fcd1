"""The settings of each flow's own decisions: shipments (windows, lateness, stuck, SLA) and
tickets (sessions, router)."""

from __future__ import annotations

from pydantic import Field

from operators.config.group import SettingsGroup


class ShipmentsSettings(SettingsGroup):
    """Decision windows and escalation rules of the shipments flow."""

    window_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    allowed_lateness_minutes: int = Field(default=15, ge=0, le=24 * 60)
    catch_up_lag_records: int = Field(
        default=1000, ge=0,
        description="an input partition this many records behind its end is catching up: "
        "windows then close on event time only (no wall-time advance); 0 = never",
    )  # fmt: skip
    stuck_after_hours: float = Field(default=6.0, gt=0, le=24 * 30)
    repeated_delay_count: int = Field(default=2, ge=1, le=100)
    sla_warning_hours: float = Field(default=4.0, ge=0, le=24 * 365)


class TicketsSettings(SettingsGroup):
    """Sessions and the router of the tickets flow."""

    session_max_messages: int = Field(default=10, ge=1, le=1000)
    session_ttl_minutes: float = Field(default=30.0, gt=0, le=365 * 24 * 60)
    router_confidence_threshold: float = Field(default=0.35, ge=0.0, le=1.0)
    router_conflict_ratio: float = Field(
        default=0.5, gt=0.0, le=1.0,
        description="an LLM route whose embedding weight is below this times the best route's "
        "is flagged route_conflict",
    )  # fmt: skip
