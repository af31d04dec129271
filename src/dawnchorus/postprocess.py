"""Prior-aware post-processing of species scores, and smoothing of window scores.

LWLRAP ranks species *within* a recording, but a detector trained on balanced TP/FP crops
scores how much a sound resembles species k, not how often k is present. Rescaling each
species to its test prevalence therefore lifts LWLRAP a lot (bench runs: 0.46 -> 0.77 and
0.53 -> 0.81 with the host paper's prior), while per-species AP is unchanged.

Prevalences come from a prior table (``species_id,prevalence``) or are estimated from the
test scores: ``cc`` (the default) is classify and count, the share of recordings scoring
above 0.5; ``em`` is Saerens, Latinne & Decaestecker's (2002) EM for prior shift, per species;
``count`` is the same EM constrained so that the expected number of species per recording
(sum of scaled scores) equals a labels-per-recording target. EM recovers the prevalence
when scores are calibrated at the reference prior (see the tests), but recording scores are
a max (or top-k mean) over many windows and therefore overconfident, which breaks that
assumption: on the synthetic corpus with the TP-only cpu-small model (raw LWLRAP 0.69), the
host paper's table gave 0.848, ``cc`` 0.760 and ``em`` 0.500. Use a prior table whenever one
exists; the estimate is only as good as the detector.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from .data.species import read_prior_csv
from .errors import InputError
from .scores import WINDOW_KEYS

__all__ = [
    "ESTIMATORS", "KEY_COLUMNS", "SCALINGS", "PostprocessResult", "PriorEstimate", "estimate_prevalence_count",
    "estimate_prevalence_em", "linear_scale", "odds_scale", "postprocess", "power_scale", "read_prior_table",
    "reference_from_run", "smooth_windows", "species_columns_of",
]

KEY_COLUMNS = WINDOW_KEYS
_SPECIES_RE = re.compile(r"^s(\d+)$")
CC_THRESHOLD = 0.5  # classify and count's threshold when a run has chosen none (scores centred on 0.5)
_CLIP = 1e-6  # keeps odds finite, so a score of exactly 0 or 1 can still be rescaled


def _odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _CLIP, 1 - _CLIP)
    return p / (1 - p)


def odds_scale(scores: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Bayes' prior shift: odds multiplied by a per-species factor, p' = s*o / (1 + s*o)."""
    scaled = _odds(scores) * np.asarray(factors, dtype=np.float64)
    return scaled / (1 + scaled)


def linear_scale(scores: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """p' = p * s per species, clipped to [0, 1]."""
    return np.clip(np.asarray(scores, dtype=np.float64) * np.asarray(factors, dtype=np.float64), 0.0, 1.0)


def power_scale(scores: np.ndarray, factors: np.ndarray, *, gamma: float = 0.5) -> np.ndarray:
    """p' = p * s**gamma: the damped "p * prior**0.5" form that lifted LWLRAP 0.49 -> 0.77."""
    return linear_scale(scores, np.asarray(factors, dtype=np.float64) ** gamma)


def _below_one(factors: np.ndarray) -> np.ndarray:
    """Multiplicative factors over 1 would clip scores to 1 and tie them; one common divisor
    avoids that and changes no ranking, within a recording or within a species."""
    return factors / max(1.0, float(factors.max()))


@dataclass(frozen=True)
class Scaling:
    apply: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (scores, per-species factors) -> scores
    from_prior: Callable[[np.ndarray, np.ndarray, float], np.ndarray]  # (prevalence, reference, gamma) -> factors


SCALINGS: dict[str, Scaling] = {
    "odds": Scaling(odds_scale, lambda prev, ref, gamma: _odds(prev) / _odds(ref)),
    "linear": Scaling(linear_scale, lambda prev, ref, gamma: _below_one(prev / ref)),
    "power": Scaling(linear_scale, lambda prev, ref, gamma: _below_one((prev / ref) ** gamma)),
}


@dataclass(frozen=True)
class PriorEstimate:
    prevalence: np.ndarray  # per species, in (0, 1)
    adjusted: np.ndarray  # scores after the odds shift to ``prevalence``
    iterations: int
    converged: bool


def _bounds(n_recordings: int) -> tuple[float, float]:
    """n recordings cannot resolve a prevalence finer than 1/n; half of it keeps odds finite."""
    floor = 0.5 / n_recordings
    return floor, 1 - floor


def _run_em(scores: np.ndarray, reference: np.ndarray, *, start: np.ndarray | None, project: Callable[[np.ndarray], np.ndarray],
            max_iter: int, tol: float, columns: list[str] | None) -> PriorEstimate:
    scores, reference = np.asarray(scores, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    low, high = _bounds(scores.shape[0])
    first = reference if start is None else np.asarray(start, dtype=np.float64)
    prevalence, converged, iteration = project(np.clip(first, low, high)), False, 0
    names = columns or [f"column {j}" for j in range(scores.shape[1])]
    for iteration in range(1, max_iter + 1):
        adjusted = odds_scale(scores, _odds(prevalence) / _odds(reference))
        new = project(np.clip(adjusted.mean(axis=0), low, high))
        moving = np.abs(new - prevalence) >= tol
        prevalence, converged = new, not moving.any()
        if converged:
            break
    if not converged:
        still = ", ".join(n for n, m in zip(names, moving) if m)
        warnings.warn(f"prior estimation did not converge in {max_iter} iterations (still moving: {still}); "
                      "using the last estimate", stacklevel=3)
    at_bound = [n for n, p in zip(names, prevalence) if p <= low * (1 + 1e-9) or p >= high - low * 1e-9]
    if at_bound:
        warnings.warn(f"estimated prevalence of {', '.join(at_bound)} was clamped to [{low:.3g}, {high:.3g}]: these "
                      "species score (almost) always low or high, or the scores are not calibrated at the reference",
                      stacklevel=3)
    return PriorEstimate(prevalence, odds_scale(scores, _odds(prevalence) / _odds(reference)), iteration, converged)


def estimate_prevalence_em(scores: np.ndarray, reference: np.ndarray, *, start: np.ndarray | None = None,
                           max_iter: int = 10000, tol: float = 1e-6, columns: list[str] | None = None) -> PriorEstimate:
    """Saerens-Latinne-Decaestecker EM, one binary problem per species: shift the posteriors
    from ``reference`` (the prior the scores are calibrated at) to the current prevalence,
    take their mean as the new prevalence, repeat from ``start`` (default: the reference).
    The likelihood is concave in each prevalence, so the start changes only the iteration
    count. Estimates are clamped to [0.5/n, 1 - 0.5/n] for n recordings. EM crawls when an
    estimate nears 0 or 1 (~2000 steps on the bench runs), hence the generous ``max_iter``."""
    return _run_em(scores, reference, start=start, project=lambda p: p, max_iter=max_iter, tol=tol, columns=columns)


def estimate_prevalence_count(scores: np.ndarray, reference: np.ndarray, *, start: np.ndarray | None = None,
                              labels_per_recording: float | None = None, max_iter: int = 10000, tol: float = 1e-6,
                              columns: list[str] | None = None) -> PriorEstimate:
    """EM whose prevalences always add up to ``labels_per_recording`` (the expected number
    of species per recording), enforced after each step by one common logit shift.

    Without a target, the model's own expected count is used, the sum of ``start`` (mean
    training or test prediction): a rough guess, so give the target when it is known."""
    n_species = np.asarray(scores).shape[1]
    guess = reference if start is None else start
    target = float(np.sum(guess)) if labels_per_recording is None else float(labels_per_recording)
    if not 0 < target < n_species:
        raise InputError(f"labels per recording must be between 0 and the number of species ({n_species}); got {target:g}")

    def to_target(prevalence: np.ndarray) -> np.ndarray:
        logits = np.log(_odds(prevalence))
        shift = brentq(lambda c: float(np.sum(1 / (1 + np.exp(-(logits + c))))) - target, -60.0, 60.0)
        return 1 / (1 + np.exp(-(logits + shift)))

    return _run_em(scores, reference, start=start, project=to_target, max_iter=max_iter, tol=tol, columns=columns)


def estimate_prevalence_cc(scores: np.ndarray, reference: np.ndarray, *, threshold: float = CC_THRESHOLD,
                           columns: list[str] | None = None, **_) -> PriorEstimate:
    """Classify and count: the share of recordings whose score passes ``threshold``.

    It assumes less than EM (only that a detector's errors are a minority on either side),
    which is why it survives the max-over-windows aggregation that makes recording scores
    overconfident and breaks EM's calibration assumption."""
    scores = np.asarray(scores, dtype=np.float64)
    low, high = _bounds(scores.shape[0])
    prevalence = np.clip((scores > threshold).mean(axis=0), low, high)
    return PriorEstimate(prevalence, odds_scale(scores, _odds(prevalence) / _odds(np.asarray(reference, dtype=np.float64))),
                         1, True)


ESTIMATORS = {"em": estimate_prevalence_em, "count": estimate_prevalence_count, "cc": estimate_prevalence_cc}


def species_columns_of(frame: pd.DataFrame, *, source: str) -> list[str]:
    """The ``s<k>`` columns of a score table, in table order; nothing is assumed about how many."""
    columns = [c for c in frame.columns if _SPECIES_RE.match(str(c))]
    if "recording_id" not in frame.columns:
        raise InputError(f"{source}: no 'recording_id' column; expected recording_id,s0,s1,...")
    if not columns:
        raise InputError(f"{source}: no species columns (s0, s1, ...) found")
    return columns


def _score_matrix(frame: pd.DataFrame, columns: list[str], *, source: str) -> np.ndarray:
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = [c for c, nan, out in zip(columns, np.isnan(values).any(0), ((values < 0) | (values > 1)).any(0)) if nan or out]
    if bad:
        raise InputError(f"{source}: species column(s) {', '.join(bad)} hold NaN, non-numeric or values outside [0, 1]")
    return values


def _per_species(values: dict[int, float], columns: list[str], *, what: str) -> np.ndarray:
    """A ``species_id -> value`` table as an array in column order; every species, nothing else."""
    ids = [int(c[1:]) for c in columns]
    missing, extra = [s for s in ids if s not in values], sorted(set(values) - set(ids))
    problems = [f"no value for species {', '.join(map(str, missing))}"] if missing else []
    problems += [f"species {', '.join(map(str, extra))} not among the score columns"] if extra else []
    array = np.array([values.get(s, np.nan) for s in ids], dtype=np.float64)
    outside = [str(s) for s, v in zip(ids, array) if s in values and not 0 < v < 1]
    problems += [f"values of species {', '.join(outside)} are not strictly between 0 and 1"] if outside else []
    if problems:
        raise InputError(f"{what}: " + "; ".join(problems))
    return array


def read_prior_table(path: str | Path, *, columns: list[str]) -> dict[int, float]:
    """Read ``species_id,prevalence`` and check it covers exactly the species of ``columns``."""
    prior = read_prior_csv(path)
    _per_species(prior, columns, what=f"{path}")
    return prior


def reference_from_run(run_dir: str | Path, *, columns: list[str] | None = None) -> dict[int, float]:
    """The model's mean out-of-fold prediction per species on the training recordings
    (checked against the species of ``columns`` when given)."""
    path = Path(run_dir) / "oof.csv"
    if not path.is_file():
        raise InputError(f"{path}: not found; point --run at a directory written by 'dawnchorus train'")
    try:
        frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        raise InputError(f"{path}: cannot read as CSV ({exc})") from None
    found = species_columns_of(frame, source=str(path))
    means = _score_matrix(frame, found, source=str(path)).mean(axis=0)
    reference = {int(c[1:]): float(m) for c, m in zip(found, means)}
    if columns is not None:
        _per_species(reference, columns, what=f"{path}")
    return reference


def _calibration(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / "calibration.json"
    if not path.is_file():
        return None
    try:
        calibration = json.loads(path.read_text())
        if not isinstance(calibration, dict):
            raise ValueError("not a JSON object")
        return calibration
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({exc}); delete it to fall back to the threshold {CC_THRESHOLD}") from None


def _checked_threshold(value, *, path: Path, field: str) -> float:
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not 0.0 < threshold < 1.0:
        raise InputError(f"{path}: {field} {value!r} is not a number between 0 and 1; delete the file to use {CC_THRESHOLD}")
    return threshold


def threshold_from_run(run_dir: str | Path) -> float:
    """The classify-and-count threshold a training run chose on its out-of-fold recordings
    (``calibration.json``, see ``train.write_calibration``); 0.5 for runs without one."""
    calibration = _calibration(run_dir)
    if calibration is None:
        return CC_THRESHOLD
    path = Path(run_dir) / "calibration.json"
    if "cc_threshold" not in calibration:
        raise InputError(f"{path}: no cc_threshold; delete the file to fall back to the threshold {CC_THRESHOLD}")
    return _checked_threshold(calibration["cc_threshold"], path=path, field="cc_threshold")


def persistence_from_run(run_dir: str | Path) -> tuple[int, float] | None:
    """The run's persistence rule for classify and count, ``(k, threshold)``: a species counts as
    present where its k-th best window passes the threshold (``scores.kth_best_window``). None
    for runs without one (trained before the rule existed, or no held-out TP box)."""
    calibration = _calibration(run_dir)
    if calibration is None or "persistence" not in calibration:
        return None
    path, rule = Path(run_dir) / "calibration.json", calibration["persistence"]
    windows = rule.get("windows") if isinstance(rule, dict) else None
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
        raise InputError(f"{path}: persistence.windows {windows!r} is not a whole number >= 1; delete the file to use {CC_THRESHOLD}")
    return windows, _checked_threshold(rule.get("threshold"), path=path, field="persistence.threshold")


def _aligned_scores(table: pd.DataFrame, *, like: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """``table``'s species scores in the row order of ``like``: the same recordings and species."""
    source = "the table to estimate the prevalence from (estimate_from, --estimate-from)"
    found = species_columns_of(table, source=source)
    if sorted(found) != sorted(columns):
        raise InputError(f"{source}: species columns {', '.join(found)} differ from the scores' ({', '.join(columns)})")
    ids, wanted = table["recording_id"].astype(str), like["recording_id"].astype(str)
    if ids.duplicated().any() or set(ids) != set(wanted):
        missing = sorted(set(wanted) - set(ids))[:5]
        raise InputError(f"{source}: must score each recording of the scores once (missing e.g. {', '.join(missing) or '-'}; "
                         f"{len(ids)} rows for {len(wanted)} recordings)")
    return _score_matrix(table.set_index(ids).loc[wanted].reset_index(drop=True), columns, source=source)


@dataclass(frozen=True)
class PostprocessResult:
    scores: pd.DataFrame  # the input table with rescaled species columns
    species: pd.DataFrame  # species_id, prevalence (NaN with a fixed factor), reference, factor
    source: str  # where the factors came from, in words


def postprocess(*, scores: pd.DataFrame, prior: dict[int, float] | None = None, method: str = "odds",
                reference: dict[int, float] | None = None, estimate: str = "cc", factor: float | None = None,
                labels_per_recording: float | None = None, gamma: float = 0.5, cc_threshold: float = CC_THRESHOLD,
                estimate_from: pd.DataFrame | None = None, source: str = "scores") -> PostprocessResult:
    """Rescale every species column of ``scores`` (``recording_id,s0..``) by a per-species factor:
    one fixed ``factor``, or one derived from the ``prior`` table or estimated prevalences.

    ``reference`` is the prior the scores are calibrated at, normally the mean out-of-fold
    prediction (``reference_from_run``). Without it, 0.5: a detector trained on balanced
    TP/FP crops is calibrated near 0.5, so the odds factor becomes odds(prior). The mean
    test prediction is only EM's starting point, never its reference: the scores agree
    with it by construction, so EM would not move. ``cc_threshold`` is classify and count's
    threshold: a run's own (``threshold_from_run``) suits heads whose scores are not centred on 0.5.
    ``estimate_from`` is another table of the same recordings to estimate the prevalence on:
    the k-th best window scores with the run's persistence threshold (``persistence_from_run``),
    or a pseudo-label teacher's scores, whose calibration the students do not share.
    """
    if method not in SCALINGS:
        raise InputError(f"scaling '{method}' is unknown; use one of {', '.join(SCALINGS)}")
    if not 0.0 < cc_threshold < 1.0:
        raise InputError(f"cc_threshold must be between 0 and 1; got {cc_threshold}")
    if estimate_from is not None and (prior is not None or factor is not None):
        raise InputError("a table to estimate the prevalence from has no use with a prior table or a fixed factor; give one")
    columns = species_columns_of(scores, source=source)
    values = _score_matrix(scores, columns, source=source)
    n_species = len(columns)
    ref = None if reference is None else _per_species(reference, columns, what="reference prior")
    if factor is not None:
        if prior is not None:
            raise InputError("give either a fixed factor or a prior table, not both")
        if not (np.isfinite(factor) and factor > 0):
            raise InputError(f"factor must be a positive number; got {factor}")
        # a fixed factor says nothing about prevalence or reference: NaN in the report
        prevalence, factors, described = np.full(n_species, np.nan), np.full(n_species, float(factor)), f"fixed factor {factor:g}"
        ref = np.full(n_species, np.nan) if ref is None else ref
    elif prior is not None:
        prevalence, described = _per_species(prior, columns, what="prior table"), "prior table"
        ref = np.full(n_species, 0.5) if ref is None else ref
    else:
        if estimate not in ESTIMATORS:
            raise InputError(f"estimator '{estimate}' is unknown; use one of {', '.join(ESTIMATORS)}")
        start = np.clip(values.mean(axis=0), *_bounds(len(values))) if ref is None else ref
        ref = np.full(n_species, 0.5) if ref is None else ref
        extra = {"count": {"labels_per_recording": labels_per_recording}, "cc": {"threshold": cc_threshold}}.get(estimate, {})
        counted = values if estimate_from is None else _aligned_scores(estimate_from, like=scores, columns=columns)
        found = ESTIMATORS[estimate](counted, ref, start=start, columns=columns, **extra)
        prevalence, described = found.prevalence, f"{estimate} estimate ({found.iterations} iterations)"
    if factor is None:
        factors = SCALINGS[method].from_prior(prevalence, ref, gamma)
    out = scores.copy()
    out[columns] = SCALINGS[method].apply(values, factors)
    table = pd.DataFrame({"species_id": [int(c[1:]) for c in columns], "prevalence": prevalence, "reference": ref, "factor": factors})
    return PostprocessResult(scores=out, species=table, source=f"{method} scaling, {described}")


def smooth_windows(windows: pd.DataFrame, *, length: int | dict[str, int] = 3, method: str = "mean") -> pd.DataFrame:
    """Moving mean or median over consecutive windows of each recording, before aggregation.

    ``length`` is a number of windows, one for all species or per species column (columns
    left out are not smoothed). Windows are centred and shrink at the ends of a recording;
    the key columns and the row order are kept.
    """
    if method not in ("mean", "median"):
        raise InputError(f"smoothing '{method}' is unknown; use mean or median")
    missing = [k for k in KEY_COLUMNS if k not in windows.columns]
    if missing:
        raise InputError(f"window table: missing key column(s) {', '.join(missing)}")
    columns = species_columns_of(windows, source="window table")
    lengths = dict.fromkeys(columns, length) if not isinstance(length, dict) else dict(length)
    unknown = [c for c in lengths if c not in columns]
    if unknown:
        raise InputError(f"window table: no species column(s) {', '.join(map(str, unknown))} to smooth")
    bad = [f"{c}={n!r}" for c, n in lengths.items() if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1]
    if bad:
        raise InputError(f"smoothing lengths must be whole numbers of windows >= 1; got {', '.join(bad)}")
    out = windows.reset_index(drop=True)  # positional labels, so results map back whatever the index was
    groups = out.sort_values(["recording_id", "t_start_s"], kind="stable").groupby("recording_id", sort=False)
    for column, n in lengths.items():
        rolling = groups[column].rolling(int(n), center=True, min_periods=1)
        result = rolling.mean() if method == "mean" else rolling.median()
        out[column] = pd.Series(result.to_numpy(), index=result.index.get_level_values(-1)).reindex(out.index).to_numpy()
    out.index = windows.index
    return out
