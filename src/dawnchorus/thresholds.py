"""Score thresholds for a chosen precision, learnt from reviewed detections.

Per species, a logistic model of P(correct | score) on the logit of the score is fitted to the
detections a person marked TP or FP (the calibration BirdNET-Analyzer offers, after Wood &
Kahl 2024). The threshold for precision ``p`` is the score where the model says a detection is
correct with probability ``p``; every detection above it is at least that likely to be right.
Regressing the outcome on the score is not biased by which scores were reviewed, so a queue
sorted by score (most likely first) calibrates as well as a random sample, as long as it
covers the scores where the threshold falls, and as long as nothing but the score chose the
reviewed detections (``review.calibrate`` leaves out those the active-learning head chose).
The range of reviewed scores is kept: beyond it the model extrapolates, and occupancy says so. The uncertainty is the spread of the threshold
over bootstrap resamples of the reviewed detections.

``RUN/thresholds.json`` holds each species' coefficients and their resamples; any precision's
threshold (and interval) is computed from them when asked (``predict --threshold-precision``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .atomic import atomic_write_text
from .errors import InputError

THRESHOLDS_FILE = "thresholds.json"
MIN_EACH = 5  # reviewed TPs and FPs a species needs before its threshold means anything
RESAMPLES = 200
_EPS = 1e-6


@dataclass(frozen=True)
class SpeciesCalibration:
    species_id: int
    n_tp: int
    n_fp: int
    intercept: float
    slope: float  # per unit of logit(score)
    resamples: tuple[tuple[float, float], ...]  # (intercept, slope) of each bootstrap fit
    score_min: float | None = None  # the lowest and highest reviewed score (None: a file from before they were kept)
    score_max: float | None = None

    def p_correct(self, scores: np.ndarray, coefficients: tuple[float, float] | None = None) -> np.ndarray:
        """P(correct | score) of each score, with these or the fitted coefficients."""
        intercept, slope = coefficients or (self.intercept, self.slope)
        return 1 / (1 + np.exp(-(intercept + slope * _logit(scores))))

    def threshold(self, precision: float) -> float | None:
        """The score where P(correct) reaches ``precision``; None when the score does not tell right from wrong."""
        return _threshold(self.intercept, self.slope, precision)

    def interval(self, precision: float, *, level: float = 0.9) -> tuple[float, float] | None:
        values = [t for a, b in self.resamples if (t := _threshold(a, b, precision)) is not None]
        if len(values) < len(self.resamples) // 2:
            return None
        return (float(np.quantile(values, (1 - level) / 2)), float(np.quantile(values, (1 + level) / 2)))


def _logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(clipped / (1 - clipped))


def _threshold(intercept: float, slope: float, precision: float) -> float | None:
    if not slope > 0:
        return None
    logit = (np.log(precision / (1 - precision)) - intercept) / slope
    return float(1 / (1 + np.exp(-logit)))


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e4).fit(x[:, None], y)  # nearly unpenalised: the fit, not a prior, should speak
    return float(model.intercept_[0]), float(model.coef_[0, 0])


def fit_calibration(decisions: pd.DataFrame, *, seed: int = 0) -> dict[int, SpeciesCalibration | str]:
    """Per species, its calibration, or why there is none; ``decisions`` has species_id, score and
    label (1 TP, 0 FP)."""
    missing = {"species_id", "score", "label"} - set(decisions.columns)
    if missing:
        raise InputError(f"reviewed detections need the columns {', '.join(sorted(missing))}")
    rng = np.random.default_rng(seed)
    result: dict[int, SpeciesCalibration | str] = {}
    scored = decisions.dropna(subset=["score"])
    for species_id, group in scored.groupby("species_id"):
        y = group["label"].to_numpy(dtype=int)
        n_tp, n_fp = int(y.sum()), int((1 - y).sum())
        if n_tp < MIN_EACH or n_fp < MIN_EACH:
            result[int(species_id)] = f"{n_tp} TP and {n_fp} FP reviewed; at least {MIN_EACH} of each are needed"
            continue
        x = _logit(group["score"].to_numpy())
        intercept, slope = _fit(x, y)
        resamples = []
        for _ in range(RESAMPLES):
            pick = rng.integers(0, len(y), len(y))
            if 0 < y[pick].sum() < len(pick):
                resamples.append(_fit(x[pick], y[pick]))
        scores = group["score"].to_numpy(dtype=float)
        result[int(species_id)] = SpeciesCalibration(int(species_id), n_tp, n_fp, intercept, slope, tuple(resamples),
                                                     float(scores.min()), float(scores.max()))
    return result


def write_thresholds(run_dir: str | Path, calibration: dict[int, SpeciesCalibration | str], *, source: str) -> Path:
    path = Path(run_dir) / THRESHOLDS_FILE
    species = {}
    for species_id, fitted in sorted(calibration.items()):
        if isinstance(fitted, str):
            species[str(species_id)] = {"none": fitted}
        else:
            species[str(species_id)] = {"n_tp": fitted.n_tp, "n_fp": fitted.n_fp, "intercept": fitted.intercept,
                                        "slope": fitted.slope, "score_min": fitted.score_min, "score_max": fitted.score_max,
                                        "resamples": [list(r) for r in fitted.resamples]}
    atomic_write_text(path, json.dumps({"model": "P(correct) = sigmoid(intercept + slope * logit(score))",
                                        "source": source, "species": species}, indent=1))
    return path


def read_thresholds(run_dir: str | Path) -> dict[int, SpeciesCalibration | str]:
    path = Path(run_dir) / THRESHOLDS_FILE
    if not path.is_file():
        raise InputError(f"{path}: no score calibration for this run; review its detections and run "
                         "'dawnchorus review calibrate --db REVIEW.sqlite --run RUN' first")
    try:
        saved = json.loads(path.read_text())
        result: dict[int, SpeciesCalibration | str] = {}
        for key, value in saved["species"].items():
            if "none" in value:
                result[int(key)] = str(value["none"])
            else:
                result[int(key)] = SpeciesCalibration(int(key), int(value["n_tp"]), int(value["n_fp"]), float(value["intercept"]),
                                                      float(value["slope"]), tuple(tuple(r) for r in value["resamples"]),
                                                      _optional(value.get("score_min")), _optional(value.get("score_max")))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a calibration this program wrote ({exc}); run 'dawnchorus review calibrate' again") from None
    return result


def _optional(value) -> float | None:
    return None if value is None else float(value)


def precision_thresholds(run_dir: str | Path, *, precision: float, species_ids: Sequence[int]) -> tuple[dict[int, float], dict[int, str]]:
    """Per species of ``species_ids``, its threshold for ``precision``; and for the others, why there is none."""
    if not 0 < precision < 1:
        raise InputError(f"--threshold-precision must be between 0 and 1 (e.g. 0.9), not {precision}")
    calibration = read_thresholds(run_dir)
    thresholds, reasons = {}, {}
    for species_id in species_ids:
        fitted = calibration.get(int(species_id), "not reviewed")
        value = fitted.threshold(precision) if isinstance(fitted, SpeciesCalibration) else None
        if value is None:
            reasons[int(species_id)] = fitted if isinstance(fitted, str) else "the score does not separate TP from FP"
        else:
            thresholds[int(species_id)] = value
    return thresholds, reasons


def describe(calibration: dict[int, SpeciesCalibration | str], *, precision: float) -> pd.DataFrame:
    """One row per species: decisions, the threshold for ``precision`` and its 90 % interval."""
    rows = []
    for species_id, fitted in sorted(calibration.items()):
        if isinstance(fitted, str):
            rows.append({"species_id": species_id, "n_tp": None, "n_fp": None, "threshold": None, "low": None, "high": None,
                         "note": fitted})
            continue
        interval = fitted.interval(precision) or (None, None)
        value = fitted.threshold(precision)
        rows.append({"species_id": species_id, "n_tp": fitted.n_tp, "n_fp": fitted.n_fp, "threshold": value,
                     "low": interval[0], "high": interval[1],
                     "note": "" if value is not None else "the score does not separate TP from FP"})
    return pd.DataFrame(rows, columns=["species_id", "n_tp", "n_fp", "threshold", "low", "high", "note"])
