"""Occupancy at a chosen precision: per site x period, where each species was detected with its
calibrated threshold, and the share of recordings it truly occupies, with intervals.

A recording counts as a detection when the species' score reaches the species' threshold for
the chosen precision (``thresholds``; species without a calibration keep a fixed threshold and
are flagged). Three shares of the cell's recordings follow:

- ``naive_prevalence``: the share with a detection (Wilson interval);
- ``prevalence``: false detections removed: each detected recording counts with the
  probability, from the calibration, that its best detection is correct;
- ``prevalence_with_missed``: missed calls added back: every recording counts with that
  probability, the undetected ones too (their best window is unlikely but not impossible to
  be a call). It is only as good as the calibration below the threshold: review detections
  down to low scores (``review --detections --min-score``, random or input order) for it to
  mean something. ``below_reviewed`` counts the recordings scoring under the lowest reviewed
  score, where the model extrapolates. Both shares count a recording by its best window, so
  they estimate the share of recordings whose best window holds a call: a lower bound on
  presence, close to it when a species' calls make its recording's best windows.

The intervals (90 %) of the last two come from resampling the cell's recordings together with
the calibration's own resamples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InputError
from .intervals import LEVEL, wilson
from .summarize import check_summary_request, period_labels
from .thresholds import SpeciesCalibration

OCCUPANCY_COLUMNS = ["site", "period", "species_id", "species", "recordings", "detected", "threshold", "calibrated",
                     "present", "naive_prevalence", "naive_low", "naive_high", "prevalence", "prevalence_low",
                     "prevalence_high", "prevalence_with_missed", "with_missed_low", "with_missed_high", "below_reviewed"]
_UNCALIBRATED = dict.fromkeys(["prevalence", "prevalence_low", "prevalence_high", "prevalence_with_missed", "with_missed_low",
                               "with_missed_high", "below_reviewed"], np.nan)
RESAMPLES = 200


def occupancy_table(*, summary: pd.DataFrame, calibration: dict[int, SpeciesCalibration | str], precision: float,
                    fallback_threshold: float = 0.5, by: str = "day", score: str = "max_score", seed: int = 0) -> pd.DataFrame:
    """``OCCUPANCY_COLUMNS`` for every site x period x species of ``summary`` (``read_recording_summary``)."""
    check_summary_request(summary, score=score, by=by)
    if not 0 < precision < 1:
        raise InputError(f"--precision must be between 0 and 1 (e.g. 0.9), not {precision}")
    if summary.empty:
        return pd.DataFrame(columns=OCCUPANCY_COLUMNS)
    rows = pd.DataFrame({"site": summary["site"].fillna("").astype(str), "period": period_labels(summary["start_time"], by=by),
                         "recording_id": summary["recording_id"].astype(str), "species_id": summary["species_id"].astype(np.int64),
                         "species": summary["species"].fillna("").astype(str), "score": summary[score].astype(float)})
    rows = rows.groupby(["site", "period", "recording_id", "species_id"], as_index=False).agg(
        species=("species", "first"), score=("score", "max"))
    rng = np.random.default_rng(seed)
    out = []
    for (site, period, species_id), cell in rows.groupby(["site", "period", "species_id"], sort=True):
        fitted = calibration.get(int(species_id))
        threshold = fitted.threshold(precision) if isinstance(fitted, SpeciesCalibration) else None
        calibrated = threshold is not None
        threshold = threshold if calibrated else float(fallback_threshold)
        scores = cell["score"].to_numpy()
        detected = scores >= threshold
        n, k = len(scores), int(detected.sum())
        low, high = wilson(np.array([k]), np.array([n]))
        row = {"site": site, "period": period, "species_id": int(species_id), "species": cell["species"].iloc[0],
               "recordings": n, "detected": k, "threshold": threshold, "calibrated": calibrated, "present": k > 0,
               "naive_prevalence": k / n, "naive_low": float(low[0]), "naive_high": float(high[0])}
        if calibrated:
            row.update(_calibrated_prevalence(fitted, scores, detected, rng))
        else:
            row.update(_UNCALIBRATED)
        out.append(row)
    return pd.DataFrame(out, columns=OCCUPANCY_COLUMNS)


def _calibrated_prevalence(fitted: SpeciesCalibration, scores: np.ndarray, detected: np.ndarray, rng) -> dict:
    def shares(pick: np.ndarray, coefficients=None) -> tuple[float, float]:
        p = fitted.p_correct(scores[pick], coefficients)
        return float(np.mean(np.where(detected[pick], p, 0.0))), float(np.mean(p))

    everything = np.arange(len(scores))
    removed, with_missed = shares(everything)
    coefficients = fitted.resamples or ((fitted.intercept, fitted.slope),)
    draws = np.array([shares(rng.integers(0, len(scores), len(scores)), coefficients[int(rng.integers(0, len(coefficients)))])
                      for _ in range(RESAMPLES)])
    low, high = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
    below = int((scores < fitted.score_min).sum()) if fitted.score_min is not None else np.nan
    return {"prevalence": removed, "prevalence_low": float(low[0]), "prevalence_high": float(high[0]),
            "prevalence_with_missed": with_missed, "with_missed_low": float(low[1]), "with_missed_high": float(high[1]),
            "below_reviewed": below}
