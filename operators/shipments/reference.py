"""The shipments flow's reference data: carriers and hubs (`data/carriers.csv`, `data/hubs.csv`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources.abc import Traversable

import polars as pl

from operators.runtime.reference import (
    DATA_DIR,
    check_range,
    check_unique,
    read_table,
)


@dataclass(frozen=True)
class ShipmentReference:
    """Carriers (`carrier_id, carrier_name, sla_hours, reliability`) and hubs
    (`hub_id, region, congestion`)."""

    carriers: pl.DataFrame
    hubs: pl.DataFrame

    @functools.cached_property
    def carrier_rows(self) -> dict[str, tuple[str, float, float]]:
        """`carrier_id` → (carrier_name, sla_hours, reliability), built on first use; a carrier
        without a name is left out (unknown, as a left join leaves it)."""
        rows = self.carriers.select("carrier_id", "carrier_name", "sla_hours", "reliability")
        return {c: (n, sla, r) for c, n, sla, r in rows.iter_rows() if n is not None}

    @functools.cached_property
    def hub_rows(self) -> dict[str, tuple[str, float]]:
        """`hub_id` → (region, congestion), built on first use; a hub without a region is left
        out (unknown, as a left join leaves it)."""
        rows = self.hubs.select("hub_id", "region", "congestion")
        return {h: (region, c) for h, region, c in rows.iter_rows() if region is not None}

    @classmethod
    def load(cls, data_dir: Traversable = DATA_DIR) -> ShipmentReference:
        carriers_path, hubs_path = data_dir / "carriers.csv", data_dir / "hubs.csv"
        carriers = read_table(
            carriers_path,
            {
                "carrier_id": pl.String,
                "name": pl.String,
                "sla_hours": pl.Float64,
                "reliability": pl.Float64,
            },
        ).rename({"name": "carrier_name"})
        check_unique(carriers, "carrier_id", carriers_path)
        check_range(carriers, "sla_hours", 1, 24 * 60, carriers_path)
        check_range(carriers, "reliability", 0, 1, carriers_path)
        hubs = read_table(
            hubs_path,
            {"hub_id": pl.String, "region": pl.String, "congestion": pl.Float64},
        )
        check_unique(hubs, "hub_id", hubs_path)
        check_range(hubs, "congestion", 0, 1, hubs_path)
        return cls(carriers=carriers, hubs=hubs)
