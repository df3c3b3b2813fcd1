"""Fixtures shared by the operator tests of several packages."""

from pathlib import Path

import pytest


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "carriers.csv").write_text(
        "carrier_id,name,sla_hours,reliability\nCAR-A,Alpha,48,0.95\nCAR-B,Beta,24,0.8\n"
    )
    (tmp_path / "hubs.csv").write_text(
        "hub_id,name,region,congestion\nHUB-1,One,eu-west,0.2\nHUB-2,Two,us-east,0.9\n"
    )
    (tmp_path / "channels.csv").write_text(
        "channel,base_priority,response_sla_minutes\nemail,normal,240\nchat,high,5\n"
    )
    return tmp_path
