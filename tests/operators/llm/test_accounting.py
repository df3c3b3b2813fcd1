"""The ledger: totals per flow and key (bounded), recent records, and the exported metrics."""

from __future__ import annotations

import pytest

from operators.llm.accounting import CallRecord, Ledger
from tests.operators.llm.service_calls import sample


def record(flow: str, outcome: str = "success", key: str | None = None, **usage: float):
    return CallRecord(flow, "chat", "ledger-model", outcome, key=key, **usage)  # type: ignore[arg-type]


def test_totals_per_flow_per_key_and_overall() -> None:
    ledger = Ledger()
    ledger.record(record("acct-a", key="S1", tokens_in=10, tokens_out=5, cost_usd=0.5))
    ledger.record(record("acct-a", "cache_hit", key="S1", cost_saved_usd=0.5))
    ledger.record(record("acct-b", "failure", key="S2", tokens_in=3, cost_usd=0.1))
    a = ledger.totals("acct-a")
    assert (a.calls, a.tokens_in, a.tokens_out) == (2, 10, 5)
    assert (a.cost_usd, a.cost_saved_usd) == (0.5, 0.5)
    assert a.outcomes == {"success": 1, "cache_hit": 1}
    overall = ledger.totals()
    assert overall.calls == 3 and overall.cost_usd == pytest.approx(0.6)
    s1 = ledger.totals_for("S1")
    assert s1 is not None and s1.calls == 2 and ledger.totals_for("nobody") is None
    assert [r.key for r in ledger.records()] == ["S1", "S1", "S2"]
    assert ledger.totals("unknown").calls == 0


def test_totals_are_copies() -> None:
    ledger = Ledger()
    ledger.record(record("acct-c", key="K", cost_usd=1.0))
    ledger.totals("acct-c").outcomes["success"] = 99
    assert ledger.totals("acct-c").outcomes == {"success": 1}


def test_per_key_totals_are_bounded_lru() -> None:
    ledger = Ledger(max_keys=2, recent=2)
    for key in ("K1", "K2", "K1", "K3"):
        ledger.record(record("acct-d", key=key))
    assert ledger.totals_for("K2") is None, "least recently used key dropped"
    assert ledger.totals_for("K1") is not None and ledger.totals_for("K3") is not None
    assert len(ledger.records()) == 2
    assert ledger.totals("acct-d").calls == 4, "flow totals keep everything"


def test_records_reach_the_metrics() -> None:
    labels = {"flow": "acct-e", "gen_ai_request_model": "ledger-model"}
    calls = sample("surgeflow_llm_calls_total", flow="acct-e", operation="chat", outcome="merged")
    Ledger().record(record("acct-e", "merged", cost_saved_usd=0.25))
    Ledger().record(record("acct-e", cost_usd=0.5))
    assert sample("surgeflow_llm_cost_saved_usd_total", **labels) == pytest.approx(0.25)
    assert sample("surgeflow_llm_cost_usd_total", **labels) == pytest.approx(0.5)
    after = sample("surgeflow_llm_calls_total", flow="acct-e", operation="chat", outcome="merged")
    assert after == calls + 1
