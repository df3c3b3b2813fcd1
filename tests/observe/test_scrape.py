"""A real Prometheus scrapes both flows' `/metrics` (Bytewax's dataflow API) and answers for what
they did through its HTTP API: records in and out, dead letters by reason, LLM calls, tokens and
cost (the loopback OpenAI test server), cache lookups, consumer lag (both flows read a real
broker's topics), live state keys, Bytewax's own series; that every Surgeflow series names its
flow; and that decisions by action and responses by route equal what the output topics hold.
The run happens in a network namespace (`observed_flows` in tests/conftest.py), so the API's
0.0.0.0 bind reaches nothing beyond that namespace's loopback.
"""

from __future__ import annotations

from tests.conftest import ObservedFlows


def test_both_flows_ran_to_the_end_and_were_scraped(observed_flows: ObservedFlows) -> None:
    assert observed_flows.run["codes"] == {"shipments": 0, "tickets": 0}
    assert observed_flows.at > 0, "Prometheus never saw both targets up"
    assert observed_flows.value('sum(up{job="surgeflow"})') == 2


def test_records_in_and_out_per_flow(observed_flows: ObservedFlows) -> None:
    for flow in ("shipments", "tickets"):
        inp = observed_flows.value(f'sum(surgeflow_records_in_total{{flow="{flow}"}})')
        out = observed_flows.value(f'sum(surgeflow_records_out_total{{flow="{flow}"}})')
        assert inp > 100 and out > 0, (flow, inp, out)
    topics = {r["metric"]["topic"] for r in observed_flows.query("surgeflow_records_out_total")}
    assert len(topics) >= 2, topics


def test_dead_letters_by_reason(observed_flows: ObservedFlows) -> None:
    result = observed_flows.query("sum by (flow, reason) (surgeflow_dead_letters_total)")
    assert {r["metric"]["flow"] for r in result} == {"shipments", "tickets"}
    assert all(r["metric"]["reason"] for r in result)
    assert sum(float(r["value"][1]) for r in result) > 0


def test_llm_calls_tokens_and_cost(observed_flows: ObservedFlows) -> None:
    assert observed_flows.run["llm_requests"] > 0
    calls = observed_flows.query("sum by (flow, outcome) (surgeflow_llm_calls_total)")
    assert {r["metric"]["flow"] for r in calls} == {"shipments", "tickets"}
    tokens = observed_flows.query("sum by (gen_ai_token_type) (gen_ai_client_token_usage_sum)")
    assert {r["metric"]["gen_ai_token_type"] for r in tokens} >= {"input", "output"}
    assert all(float(r["value"][1]) > 0 for r in tokens)
    assert observed_flows.value("sum(surgeflow_llm_cost_usd_total)") > 0
    p99 = observed_flows.value(
        "histogram_quantile(0.99, sum by (le) "
        "(rate(gen_ai_client_operation_duration_seconds_bucket[1m])))"
    )
    assert 0 < p99 < 90


def test_cache_lookups_and_backend(observed_flows: ObservedFlows) -> None:
    lookups = observed_flows.query("sum by (backend, result) (surgeflow_cache_lookups_total)")
    assert {r["metric"]["result"] for r in lookups} >= {"miss"}, lookups
    assert observed_flows.value("min(surgeflow_cache_backend_up)") in (0.0, 1.0)


def test_live_state_keys_and_bytewax_series(observed_flows: ObservedFlows) -> None:
    keys = observed_flows.query("surgeflow_live_state_keys")
    assert {r["metric"]["flow"] for r in keys} == {"shipments", "tickets"}
    assert observed_flows.value("sum(bytewax_item_inp_count_total)") > 0
    assert observed_flows.value("count(bytewax_snapshot_duration_seconds_count)") >= 1


def test_a_metric_that_does_not_exist_returns_nothing_and_bad_promql_fails(
    observed_flows: ObservedFlows,
) -> None:
    assert observed_flows.query("surgeflow_no_such_metric_total") == []
    try:
        observed_flows.query("sum(surgeflow_records_in_total")
    except AssertionError as error:
        assert "parse error" in str(error)
    else:
        raise AssertionError("a query that does not parse was answered")


def test_the_concurrency_limit_has_a_series_per_flow_and_loop(
    observed_flows: ObservedFlows,
) -> None:
    result = observed_flows.query("surgeflow_llm_concurrency_limit")
    assert {r["metric"]["flow"] for r in result} == {"shipments", "tickets"}
    assert all(r["metric"]["loop"] for r in result)
    assert all(float(r["value"][1]) >= 1 for r in result)


def test_consumer_lag_per_partition_of_the_real_broker(observed_flows: ObservedFlows) -> None:
    result = observed_flows.query("max_over_time(bytewax_kafka_consumer_lag[5m])")
    assert result, "the Kafka source exported no lag"
    assert {r["metric"]["step_id"] for r in result} == {
        "shipments.ingest.read",
        "tickets.ingest.read",
    }
    for r in result:  # each flow reads its own input topic
        flow = r["metric"]["step_id"].split(".")[0]
        assert r["metric"]["topic"].endswith(
            f"{flow}.events" if flow == "shipments" else f"{flow}.messages"
        )
    assert len({r["metric"]["partition"] for r in result}) >= 1
    assert all(float(r["value"][1]) >= 0 for r in result)  # never negative (see the source)


FLOWS = {"shipments", "tickets"}
ONCE_UNLABELLED = {
    "surgeflow_kafka_delivered_total", "surgeflow_cache_lookups_total",
    "surgeflow_cache_backend_up", "surgeflow_llm_retries_total", "surgeflow_llm_in_flight",
    "surgeflow_llm_pending", "surgeflow_llm_limiter_wait_seconds_count",
    "surgeflow_llm_limiter_backend_up", "surgeflow_llm_breaker_state",
    "gen_ai_client_operation_duration_seconds_count", "gen_ai_client_token_usage_count",
}  # fmt: skip
"""Series that had no `flow` before every Surgeflow metric got one; each appears in the run."""


def test_every_surgeflow_series_carries_the_flow_that_counted_it(
    observed_flows: ObservedFlows,
) -> None:
    """Every series of the flows' own registry, whatever its name, names one of the two flows;
    so a metric added without `flow` (or given an empty or default one) fails here."""
    series = observed_flows.query('{__name__=~"surgeflow_.+|gen_ai_.+"}')
    names = {r["metric"]["__name__"] for r in series}
    assert len(names) >= 25, sorted(names)
    unlabelled = sorted(
        f"{r['metric']['__name__']}{r['metric']}"
        for r in series
        if r["metric"].get("flow") not in FLOWS
    )
    assert not unlabelled, unlabelled
    assert names >= ONCE_UNLABELLED, sorted(ONCE_UNLABELLED - names)
    by_flow = {flow: {r["metric"]["__name__"] for r in series if r["metric"]["flow"] == flow}
               for flow in FLOWS}  # fmt: skip
    assert "surgeflow_decisions_total" in by_flow["shipments"] - by_flow["tickets"]
    assert "surgeflow_responses_total" in by_flow["tickets"] - by_flow["shipments"]


def test_outputs_by_action_and_route_equal_the_records_on_the_output_topics(
    observed_flows: ObservedFlows,
) -> None:
    """`surgeflow_decisions_total{action}` and `surgeflow_responses_total{route}`, as scraped,
    against the decisions and responses read back from the output topics at the same moment."""
    outputs = observed_flows.run["outputs"]
    for flow, metric, label, values in (
        ("shipments", "surgeflow_decisions_total", "action",
         {"ok", "expedite", "reroute", "notify_customer", "escalate"}),
        ("tickets", "surgeflow_responses_total", "route", None),
    ):  # fmt: skip
        result = observed_flows.query(f'sum by ({label}) ({metric}{{flow="{flow}"}})')
        scraped = {r["metric"][label]: round(float(r["value"][1])) for r in result}
        on_topic = outputs[flow]
        assert sum(on_topic.values()) > 0, (flow, on_topic)
        assert scraped == on_topic, (flow, scraped, on_topic)
        assert values is None or set(scraped) <= values, scraped
        assert len(scraped) >= 2, scraped  # the surge leads to more than one action / route
        out = observed_flows.value(
            f'sum(surgeflow_records_out_total{{flow="{flow}", topic!~".*dlq"}})'
        )
        assert out == sum(scraped.values()), (flow, out, scraped)
