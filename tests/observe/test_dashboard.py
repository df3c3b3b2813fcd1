"""The Grafana dashboard (k8s/grafana/surgeflow.json) against a real Prometheus that scraped both
flows: every panel's PromQL, with the template variables substituted as Grafana would, parses and
returns data; so a panel naming a metric or a label that does not exist fails here. No Grafana is
packaged for this machine, so the JSON model is checked by its queries and its structure.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ObservedFlows

DASHBOARD = Path(__file__).resolve().parents[2] / "k8s" / "grafana" / "surgeflow.json"
ROWS = {
    "Throughput and lag", "Decisions by action, responses by route", "Dead letters", "LLM",
    "Redis backends", "State and recovery",
}  # fmt: skip
SELECTOR = re.compile(r"\b((?:surgeflow|gen_ai)_[a-z_]+)(\{[^}]*\})?")
"""A selector of one of the flows' own series (all carry `flow`), with its braces if any."""
GROUPING = re.compile(r"\b(?:by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)")


def load() -> dict[str, Any]:
    model: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return model


def targets() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} / {target['refId']}", target["expr"])
        for panel in load()["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def substitute(expr: str, flow: str) -> str:
    """The query Grafana sends: `$flow` and `$__rate_interval` replaced."""
    return expr.replace("$__rate_interval", "1m").replace("$flow", flow)


def test_the_model_has_a_row_per_concern_and_a_flow_variable() -> None:
    model = load()
    rows = [p["title"] for p in model["panels"] if p["type"] == "row"]
    assert set(rows) == ROWS and len(rows) == len(ROWS)
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["flow"]["query"]["query"] == "label_values(surgeflow_records_in_total, flow)"
    for _, expr in targets():
        assert "$flow" in expr, expr  # every panel follows the chosen flow


def test_every_selector_of_the_flows_series_filters_on_the_flow_variable() -> None:
    """Every Surgeflow and GenAI series carries `flow`, so each selector of one filters on it
    directly (Bytewax's series by their `step_id`, the process's through a Surgeflow series)."""
    for panel, expr in targets():
        for name, braces in SELECTOR.findall(GROUPING.sub("", expr)):
            assert 'flow=~"$flow"' in braces, f"{panel}: {name}{braces} does not filter on $flow"
        assert "bytewax_" not in expr or 'step_id=~"($flow)' in expr, f"{panel}: {expr}"


def test_the_decisions_row_counts_decisions_by_action_and_responses_by_route() -> None:
    model = load()
    panels = model["panels"]
    start = next(i for i, p in enumerate(panels) if p["title"].startswith("Decisions by action"))
    row = list(itertools.takewhile(lambda p: p["type"] != "row", panels[start + 1 :]))
    exprs = " ".join(t["expr"] for p in row for t in p["targets"])
    assert "sum by (flow, action) (rate(surgeflow_decisions_total" in exprs
    assert "sum by (flow, route) (rate(surgeflow_responses_total" in exprs
    assert "surgeflow_records_out_total" not in exprs  # not the stand-in by topic


def test_the_flow_variable_lists_both_flows(observed_flows: ObservedFlows) -> None:
    result = observed_flows.query("group by (flow) (surgeflow_records_in_total)")
    assert {r["metric"]["flow"] for r in result} == {"shipments", "tickets"}


@pytest.mark.parametrize(("panel", "expr"), targets(), ids=[name for name, _ in targets()])
def test_every_panel_query_parses_and_returns_data(
    observed_flows: ObservedFlows, panel: str, expr: str
) -> None:
    answered = []
    for flow in (".+", "shipments", "tickets"):  # All, then each flow alone
        query = substitute(expr, flow)
        result = observed_flows.query(query)  # fails with Prometheus's error if it does not parse
        if any(r["value"][1] != "NaN" for r in result):  # NaN alone: a ratio of nothing
            answered.append(flow)
    assert ".+" in answered, f"{panel}: no data for {substitute(expr, '.+')}"
    assert len(answered) >= 2, f"{panel}: no data for either flow alone"
