"""Occupancy at a chosen precision: per site x period, where each species was detected with its
calibrated threshold, and the share of recordings it truly occupies, with an interval.

A recording counts as a detection when the species' score reaches the species' threshold for
the chosen precision (``thresholds``; species without a calibration keep a fixed threshold and
are flagged). The naive prevalence is the share of recordings with a detection (Wilson
interval). The calibrated prevalence removes the expected false detections: each detected
recording counts with the probability, from the calibration, that its best detection is
correct. It does not add calls the detector missed, which reviewed detections cannot tell;
read it as the share of recordings with a detectable, correctly detected call. Its interval
(90 %) comes from resampling the recordings of the cell and the calibration's own resamples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InputError
from .summarize import check_summary_request, period_labels
from .thresholds import SpeciesCalibration

OCCUPANCY_COLUMNS = ["site", "period", "species_id", "species", "recordings", "detected", "threshold", "calibrated",
                     "present", "naive_prevalence", "naive_low", "naive_high", "prevalence", "prevalence_low",
                     "prevalence_high"]
LEVEL = 0.9
RESAMPLES = 200


def wilson(successes: np.ndarray, trials: np.ndarray, *, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    n = np.maximum(trials, 1)
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def _p_correct(intercept, slope, scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores, 1e-6, 1 - 1e-6)
    return 1 / (1 + np.exp(-(intercept + slope * np.log(clipped / (1 - clipped)))))


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
            row.update(prevalence=np.nan, prevalence_low=np.nan, prevalence_high=np.nan)
        out.append(row)
    return pd.DataFrame(out, columns=OCCUPANCY_COLUMNS)


def _calibrated_prevalence(fitted: SpeciesCalibration, scores: np.ndarray, detected: np.ndarray, rng) -> dict:
    weights = np.where(detected, _p_correct(fitted.intercept, fitted.slope, scores), 0.0)
    draws = []
    coefficients = fitted.resamples or ((fitted.intercept, fitted.slope),)
    for _ in range(RESAMPLES):
        pick = rng.integers(0, len(scores), len(scores))
        intercept, slope = coefficients[int(rng.integers(0, len(coefficients)))]
        draws.append(float(np.mean(np.where(detected[pick], _p_correct(intercept, slope, scores[pick]), 0.0))))
    return {"prevalence": float(weights.mean()), "prevalence_low": float(np.quantile(draws, (1 - LEVEL) / 2)),
            "prevalence_high": float(np.quantile(draws, (1 + LEVEL) / 2))}
