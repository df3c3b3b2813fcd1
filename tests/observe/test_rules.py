"""The alert rules: `promtool check rules` accepts them, `promtool test rules` runs a firing and a
quiet case for every alert, the PrometheusRule object carries exactly the plain file's groups, and
every series the rules select exists in a real scrape of both flows (`observed_flows`).

promtool comes from Debian's `prometheus` package (`scripts/install_test_services.sh`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ObservedFlows

MONITORING = Path(__file__).resolve().parents[2] / "k8s" / "monitoring"
RULES = MONITORING / "rules.yml"
UNIT_TESTS = sorted((MONITORING / "tests").glob("*.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, "promtool missing: run scripts/install_test_services.sh"
    return subprocess.run(
        [path, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120
    )


def alerts(groups: list[dict[str, Any]]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_the_unit_tests_pass() -> None:
    done = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    names = alerts(yaml.safe_load(RULES.read_text())["groups"])
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert names == {
        "SurgeflowConsumerLagGrowing", "SurgeflowDeadLetterRatioHigh",
        "SurgeflowNoOutputWhileInputFlows", "SurgeflowProcessRestarted",
        "SurgeflowLlmFallbackRatioHigh", "SurgeflowLlmBreakerOpen", "SurgeflowLlmBudgetExhausted",
        "SurgeflowCacheBackendDown", "SurgeflowLimiterBackendDown",
    }  # fmt: skip
    assert firing == names, names - firing
    assert quiet == names, names - quiet


def test_the_prometheus_rule_object_holds_the_same_groups() -> None:
    plain = yaml.safe_load(RULES.read_text())
    obj = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    assert obj["kind"] == "PrometheusRule"
    assert "namespace" not in obj["metadata"]  # namespace-scoped: kustomize sets it
    assert obj["spec"] == plain


def test_every_series_the_rules_name_exists_in_a_real_scrape(
    observed_flows: ObservedFlows,
) -> None:
    """The unit tests feed series by hand; this checks those names and labels are the ones the
    flows export: each selector of each alert returns data from the real scrape."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    exprs = [rule["expr"] for group in groups for rule in group["rules"]]
    selectors = {s for expr in exprs for s in SELECTOR.findall(GROUPING.sub("", expr))}
    assert len(selectors) >= 10, selectors
    for selector in sorted(selectors):
        name = selector.split("{")[0]
        if name == "surgeflow_llm_fallbacks_total" and 'reason="budget"' in selector:
            selector = name  # no budget was spent in the run; the reason is in the help text
        assert observed_flows.query(f"count({selector})"), f"{selector}: not in the scrape"
    for expr in exprs:
        observed_flows.query(expr)  # each alert expression evaluates on the real data


GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\([^)]*\)")
SELECTOR = re.compile(r"\b((?:surgeflow|bytewax|process|gen_ai)_[a-z_]+(?:\{[^}]*\})?)")
