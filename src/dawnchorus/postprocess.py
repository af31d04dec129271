"""Prior-aware post-processing of species scores, and smoothing of window scores.

LWLRAP ranks species *within* a recording, but a detector trained on balanced TP/FP crops
scores how much a sound resembles species k, not how often k is present. Rescaling each
species to its test prevalence therefore lifts LWLRAP a lot (bench runs: 0.46 -> 0.77 and
0.53 -> 0.81 with the host paper's prior), while per-species AP is unchanged.

Prevalences come from a prior table (``species_id,prevalence``) or are estimated from the
test scores (``priors``: classify and count by default, EM, or EM with a labels-per-recording
target). Use a prior table whenever one exists; an estimate is only as good as the detector.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data.species import read_prior_csv
from .errors import InputError
from .priors import CC_THRESHOLD, ESTIMATORS, odds, odds_scale, prevalence_bounds
from .scores import WINDOW_KEYS

__all__ = [
    "KEY_COLUMNS", "SCALINGS", "PostprocessResult", "linear_scale", "postprocess", "power_scale", "read_prior_table",
    "reference_from_run", "smooth_windows", "species_columns_of",
]

KEY_COLUMNS = WINDOW_KEYS
_SPECIES_RE = re.compile(r"^s(\d+)$")
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
    "odds": Scaling(odds_scale, lambda prev, ref, gamma: odds(prev) / odds(ref)),
    "linear": Scaling(linear_scale, lambda prev, ref, gamma: _below_one(prev / ref)),
    "power": Scaling(linear_scale, lambda prev, ref, gamma: _below_one((prev / ref) ** gamma)),
}


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
                estimate_from: pd.DataFrame | None = None, cc_rates: tuple[float, float] | None = None,
                source: str = "scores") -> PostprocessResult:
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
    ``cc_rates`` is ``(tpr, fpr)`` at ``cc_threshold`` for ``estimate="acc"`` (``priors.persistence_rates_from_run``).
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
        start = np.clip(values.mean(axis=0), *prevalence_bounds(len(values))) if ref is None else ref
        ref = np.full(n_species, 0.5) if ref is None else ref
        extra = {"count": {"labels_per_recording": labels_per_recording}, "cc": {"threshold": cc_threshold},
                 "acc": {"threshold": cc_threshold, "rates": cc_rates}}.get(estimate, {})
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
