"""Calibration of the embedding router per embedding model (plain Python).

Each embedding model has its own scale of cosine similarities (e5's are compressed: a paraphrase
about 0.04 from an unrelated text), so one softmax temperature and one confidence threshold do not
fit every model. For a model, the weight of the lexical scores added to its route scores, the
temperature that turns those into a confidence and the confidence below which the router falls
back (to the LLM, else to the lexical scorer) are fitted on a labelled set
(`python -m benchmarks.routing fit`) and stored in `data/routing/calibration.json`, keyed by the
model, the query and passage prefixes and the intent examples' version (`IntentIndex.version`): a
calibration holds only for the vectors it was fitted on.

`router_scoring` picks the stored calibration that matches all four. Without one the router uses
embedding scores alone, `EMBEDDING_TEMPERATURE` and `SURGEFLOW_ROUTER_CONFIDENCE_THRESHOLD`'s
default, with one WARNING
per process. A threshold set explicitly (environment or keyword) always wins over a stored one;
the stored temperature still applies, so that threshold is read on the calibrated scale.

Fitting: the lexical weight and the temperature maximise the likelihood of the labels under the
softmax of the route scores (a grid search over both; of equal fits the lower weight); the
threshold maximises the accuracy of "embedding when the
confidence reaches it, else the fallback's route" on the same messages, ties going to the lowest
threshold (fewer fallback calls), placed halfway between the confidences around it.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal, Optional

from pydantic import AwareDatetime, BaseModel, Field

from operators.runtime.resources import data_file
from operators.tickets.lexical import ROUTES, RouteScores, blend
from schemas.tickets import Route

logger = logging.getLogger(__name__)

CALIBRATION_JSON = data_file("routing", "calibration.json")
EMBEDDING_TEMPERATURE = 0.05
"""The softmax temperature of embedding scores for a model without a calibration."""
TEMPERATURES: tuple[float, ...] = tuple(round(10 ** (k / 20), 6) for k in range(-60, 1))
"""The temperatures tried by `fit_temperature`: 0.001 to 1, 20 a decade."""
LEXICAL_WEIGHTS: tuple[float, ...] = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5)
"""The weights of the lexical scores tried by `fit_scoring`."""


class CalibrationKey(BaseModel):
    """What a calibration holds for: the embedding model, the text put before a message (query)
    and before an intent example (passage), and the examples' version."""

    model_config = {"frozen": True}

    model: str = Field(min_length=1, max_length=200)
    query_prefix: str = Field(max_length=64)
    passage_prefix: str = Field(max_length=64)
    index_version: str = Field(min_length=1, max_length=64)


class Calibration(CalibrationKey):
    """A fitted temperature and threshold, with what they were fitted on."""

    lexical_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    temperature: float = Field(gt=0.0, le=10.0)
    threshold: float = Field(ge=0.0, le=1.0)
    messages: int = Field(ge=1, description="labelled messages fitted on")
    embedding_accuracy: float = Field(ge=0.0, le=1.0)
    combined_accuracy: float = Field(ge=0.0, le=1.0, description="embedding, else the fallback")
    fallback_accuracy: float = Field(ge=0.0, le=1.0)
    fitted_at: AwareDatetime

    @property
    def key(self) -> CalibrationKey:
        return CalibrationKey(
            model=self.model, query_prefix=self.query_prefix,
            passage_prefix=self.passage_prefix, index_version=self.index_version,
        )  # fmt: skip


class CalibrationFile(BaseModel):
    """`data/routing/calibration.json`."""

    calibrations: list[Calibration] = Field(default_factory=list, max_length=1000)


def load_calibrations(path: Traversable = CALIBRATION_JSON) -> list[Calibration]:
    """The stored calibrations; none when the file does not exist."""
    if not path.is_file():
        return []
    return CalibrationFile.model_validate_json(path.read_bytes()).calibrations


@functools.cache
def shipped_calibrations() -> tuple[Calibration, ...]:
    """`data/routing/calibration.json`, read once per process."""
    return tuple(load_calibrations())


def save_calibration(entry: Calibration, path: Path) -> None:
    """Store `entry` in `path`, replacing the calibration of the same key."""
    kept = [c for c in load_calibrations(path) if c.key != entry.key]
    entries = sorted([*kept, entry], key=lambda c: (c.model, c.query_prefix, c.passage_prefix))
    text = CalibrationFile(calibrations=entries).model_dump_json(indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


# --- what the router uses ---------------------------------------------------------------------


@dataclass(frozen=True)
class RouterScoring:
    """What the embedding router uses, and where it comes from: the weight of the lexical scores
    added to the embedding scores, the softmax temperature and the threshold."""

    temperature: float
    threshold: float
    source: Literal["calibration", "default"]
    threshold_source: Literal["calibration", "default", "setting"]
    lexical_weight: float = 0.0


_WARNED: set[CalibrationKey] = set()


def router_scoring(
    key: CalibrationKey,
    *,
    threshold: float,
    threshold_is_set: bool,
    calibrations: Optional[Sequence[Calibration]] = None,
) -> RouterScoring:
    """The scoring for `key`: its stored calibration, else the defaults with one WARNING per
    process (none when the threshold is set explicitly: that setting is then a choice).

    `threshold` is the setting's value and `threshold_is_set` whether it was set explicitly.
    """
    stored = shipped_calibrations() if calibrations is None else calibrations
    found = next((c for c in stored if c.key == key), None)
    if found is not None:
        weight = found.lexical_weight
        if threshold_is_set:
            return RouterScoring(found.temperature, threshold, "calibration", "setting", weight)
        return RouterScoring(
            found.temperature, found.threshold, "calibration", "calibration", weight
        )
    if not threshold_is_set and key not in _WARNED:
        _WARNED.add(key)
        same_model = [c for c in stored if c.model == key.model]
        why = (
            f"calibrated only for other prefixes or intent examples ({_describe(same_model)})"
            if same_model
            else "not calibrated"
        )
        logger.warning(
            "router: embedding model %s with query prefix %r, passage prefix %r and intent "
            "examples %s is %s; routing with the default temperature %s and threshold %s "
            "(fit with `python -m benchmarks.routing fit`, or set "
            "SURGEFLOW_ROUTER_CONFIDENCE_THRESHOLD)",
            key.model, key.query_prefix, key.passage_prefix, key.index_version, why,
            EMBEDDING_TEMPERATURE, threshold,
        )  # fmt: skip
    source: Literal["default", "setting"] = "setting" if threshold_is_set else "default"
    return RouterScoring(EMBEDDING_TEMPERATURE, threshold, "default", source)


def _describe(entries: Sequence[Calibration]) -> str:
    return "; ".join(
        f"{c.query_prefix!r}/{c.passage_prefix!r} on {c.index_version}" for c in entries[:3]
    )


# --- fitting (pure) ---------------------------------------------------------------------------


def log_likelihood(scores: RouteScores, label: Route, temperature: float) -> float:
    """The log of the softmax weight of `label` among the route scores at `temperature`."""
    values = [scores.get(r, 0.0) / temperature for r in ROUTES]
    top = max(values)
    log_total = top + math.log(sum(math.exp(v - top) for v in values))
    return scores.get(label, 0.0) / temperature - log_total


def fit_temperature(
    scores: Sequence[RouteScores],
    labels: Sequence[Route],
    temperatures: Sequence[float] = TEMPERATURES,
) -> float:
    """The temperature of `temperatures` whose softmax gives the labels the highest likelihood
    (the first of equals)."""
    if not scores or len(scores) != len(labels):
        raise ValueError("fit_temperature needs as many labels as score sets, at least one")
    best, best_value = temperatures[0], -math.inf
    for temperature in temperatures:
        value = sum(log_likelihood(s, y, temperature) for s, y in zip(scores, labels, strict=True))
        if value > best_value:
            best, best_value = temperature, value
    return best


def fit_scoring(
    embedding: Sequence[RouteScores],
    lexical: Sequence[RouteScores],
    labels: Sequence[Route],
    weights: Sequence[float] = LEXICAL_WEIGHTS,
) -> tuple[float, float]:
    """The lexical weight of `weights` and the temperature (`fit_temperature`) under which the
    route scores `embedding + weight × lexical` give the labels the highest likelihood; of equal
    fits the lower weight."""
    if len(embedding) != len(lexical):
        raise ValueError("fit_scoring needs the lexical scores of every message")
    best: tuple[float, float] = (weights[0], TEMPERATURES[0])
    best_value = -math.inf
    for weight in weights:
        scores = [blend(e, x, weight) for e, x in zip(embedding, lexical, strict=True)]
        temperature = fit_temperature(scores, labels)
        value = sum(log_likelihood(s, y, temperature) for s, y in zip(scores, labels, strict=True))
        if value > best_value + 1e-9:
            best, best_value = (weight, temperature), value
    return best


def combined_accuracy(
    threshold: float,
    confidences: Sequence[float],
    embedding_correct: Sequence[bool],
    fallback_correct: Sequence[bool],
) -> float:
    """Accuracy of the embedding route where its confidence reaches `threshold`, else the
    fallback's."""
    rows = list(zip(confidences, embedding_correct, fallback_correct, strict=True))
    right = sum(e if c >= threshold else f for c, e, f in rows)
    return right / len(rows)


def fit_threshold(
    confidences: Sequence[float],
    embedding_correct: Sequence[bool],
    fallback_correct: Sequence[bool],
) -> float:
    """The threshold with the best `combined_accuracy`, halfway between the confidences around
    it; of equally good thresholds the lowest (fewest fallback calls). Rounded to 4 decimals
    when that keeps it between the same confidences."""
    if not confidences:
        raise ValueError("fit_threshold needs at least one message")
    levels = sorted(set(confidences))
    # Thresholds in (bounds[k], bounds[k + 1]] send the same messages to the embedding route.
    bounds = [0.0, *levels, 1.0] if levels[-1] < 1.0 else [0.0, *levels]
    best_k, best = 0, -1.0
    for k in range(len(bounds) - 1):
        accuracy = combined_accuracy(
            bounds[k + 1], confidences, embedding_correct, fallback_correct
        )
        if accuracy > best:
            best_k, best = k, accuracy
    low, high = bounds[best_k], bounds[best_k + 1]
    middle = (low + high) / 2
    rounded = round(middle, 4)
    return rounded if low < rounded <= high or (best_k == 0 and rounded == 0.0) else middle
