"""Test prevalence: estimating it from scores, and the calibration a run keeps for that.

Estimators, each per species: ``cc`` (classify and count) is the share of
recordings scoring above a threshold; ``acc`` corrects that share for the detector's
true- and false-positive rates at the threshold (adjusted classify and count); ``em`` is Saerens, Latinne & Decaestecker's (2002) EM for
prior shift; ``count`` is the same EM constrained so that the expected number of species per
recording equals a labels-per-recording target. EM recovers the prevalence when scores are
calibrated at the reference prior (see the tests), but recording scores are a max (or top-k
mean) over many windows and therefore overconfident, which breaks that assumption.

Classify and count works best on evidence that a lone false alarm cannot provide: each
recording's k-th best window, against a threshold chosen on the run's held-out recordings
(``calibration.json``, written by training; ``persistence_from_run``), counted on the first
model of a pseudo-label chain (benchmarks/RESULTS.md, issue 4).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

CC_THRESHOLD = 0.5  # classify and count's threshold when a run has chosen none (scores centred on 0.5)
_CLIP = 1e-6  # keeps odds finite, so a score of exactly 0 or 1 can still be rescaled


def odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _CLIP, 1 - _CLIP)
    return p / (1 - p)


def odds_scale(scores: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Bayes' prior shift: odds multiplied by a per-species factor, p' = s*o / (1 + s*o)."""
    scaled = odds(scores) * np.asarray(factors, dtype=np.float64)
    return scaled / (1 + scaled)


@dataclass(frozen=True)
class PriorEstimate:
    prevalence: np.ndarray  # per species, in (0, 1)
    adjusted: np.ndarray  # scores after the odds shift to ``prevalence``
    iterations: int
    converged: bool


def prevalence_bounds(n_recordings: int) -> tuple[float, float]:
    """n recordings cannot resolve a prevalence finer than 1/n; half of it keeps odds finite."""
    floor = 0.5 / n_recordings
    return floor, 1 - floor


def _run_em(scores: np.ndarray, reference: np.ndarray, *, start: np.ndarray | None, project: Callable[[np.ndarray], np.ndarray],
            max_iter: int, tol: float, columns: list[str] | None) -> PriorEstimate:
    scores, reference = np.asarray(scores, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    low, high = prevalence_bounds(scores.shape[0])
    first = reference if start is None else np.asarray(start, dtype=np.float64)
    prevalence, converged, iteration = project(np.clip(first, low, high)), False, 0
    names = columns or [f"column {j}" for j in range(scores.shape[1])]
    for iteration in range(1, max_iter + 1):
        adjusted = odds_scale(scores, odds(prevalence) / odds(reference))
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
    return PriorEstimate(prevalence, odds_scale(scores, odds(prevalence) / odds(reference)), iteration, converged)


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
        from scipy.optimize import brentq  # here: scipy adds half a second to every start

        logits = np.log(odds(prevalence))
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
    low, high = prevalence_bounds(scores.shape[0])
    prevalence = np.clip((scores > threshold).mean(axis=0), low, high)
    return PriorEstimate(prevalence, odds_scale(scores, odds(prevalence) / odds(np.asarray(reference, dtype=np.float64))),
                         1, True)


def estimate_prevalence_acc(scores: np.ndarray, reference: np.ndarray, *, threshold: float = CC_THRESHOLD,
                            rates: tuple[float, float] | None = None, columns: list[str] | None = None, **_) -> PriorEstimate:
    """Adjusted classify and count (Forman 2008): the share ``c`` of recordings over ``threshold``
    corrected for the detector's rates there, ``(c - fpr) / (tpr - fpr)``.

    ``rates`` is ``(tpr, fpr)``, pooled over species on the run's out-of-fold recordings
    (``persistence_rates_from_run``): pooled, because a few held-out recordings per species
    give rates too noisy to divide by. Classify and count alone undercounts a species for
    every present recording its detector misses, which is what collapses very common species."""
    if rates is None:
        raise InputError("adjusted classify and count needs the detector's (tpr, fpr) at its threshold: "
                         "give a --run trained by this version (calibration.json), or use --estimate cc")
    tpr, fpr = (float(r) for r in rates)
    if not (0.0 <= fpr < tpr <= 1.0):
        raise InputError(f"adjusted classify and count needs 0 <= fpr < tpr <= 1; got tpr {tpr:g}, fpr {fpr:g}")
    scores = np.asarray(scores, dtype=np.float64)
    low, high = prevalence_bounds(scores.shape[0])
    counted = (scores > threshold).mean(axis=0)
    prevalence = np.clip((counted - fpr) / (tpr - fpr), low, high)
    return PriorEstimate(prevalence, odds_scale(scores, odds(prevalence) / odds(np.asarray(reference, dtype=np.float64))),
                         1, True)


ESTIMATORS = {"em": estimate_prevalence_em, "count": estimate_prevalence_count, "cc": estimate_prevalence_cc,
              "acc": estimate_prevalence_acc}


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
    (``calibration.json``, see ``calibration.write_calibration``); 0.5 for runs without one."""
    calibration = _calibration(run_dir)
    if calibration is None:
        return CC_THRESHOLD
    path = Path(run_dir) / "calibration.json"
    if "cc_threshold" not in calibration:
        raise InputError(f"{path}: no cc_threshold; delete the file to fall back to the threshold {CC_THRESHOLD}")
    return _checked_threshold(calibration["cc_threshold"], path=path, field="cc_threshold")


def persistence_rates_from_run(run_dir: str | Path) -> tuple[float, float] | None:
    """``(tpr, fpr)`` of the run's persistence rule on its out-of-fold recordings, pooled over
    species, for adjusted classify and count; None for runs trained before they were kept."""
    calibration = _calibration(run_dir)
    rule = None if calibration is None else calibration.get("persistence")
    if not isinstance(rule, dict) or "tpr" not in rule or "fpr" not in rule:
        return None
    path = Path(run_dir) / "calibration.json"
    try:
        tpr, fpr = float(rule["tpr"]), float(rule["fpr"])
    except (TypeError, ValueError):
        tpr = fpr = float("nan")
    if not (0.0 <= fpr < tpr <= 1.0):
        raise InputError(f"{path}: persistence tpr {rule['tpr']!r} / fpr {rule['fpr']!r} must satisfy 0 <= fpr < tpr <= 1; "
                         "delete the file to estimate with plain classify and count")
    return tpr, fpr


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


# The estimator `predict --postprocess` and the demo use (chosen on the tuning worlds, benchmarks/worlds.py)
DEFAULT_ESTIMATE = "cc"


def estimated_prior_options(run_dir: str | Path, evidence=None, *, estimate: str | None = None) -> dict:
    """``postprocess`` options that estimate the test prevalence for a run without a prior table.

    ``evidence`` is ``infer.persistence_evidence``'s ``(table, k, threshold)``, or None for runs
    without a persistence rule (then the recording scores are counted at the run's threshold).
    ``estimate`` defaults to ``DEFAULT_ESTIMATE``; ``acc`` falls back to ``cc`` for runs that
    kept no rates."""
    estimate = estimate or DEFAULT_ESTIMATE
    if evidence is None:
        return {"estimate": "cc", "cc_threshold": threshold_from_run(run_dir)}
    table, _, threshold = evidence
    options = {"estimate": estimate, "estimate_from": table, "cc_threshold": threshold}
    if estimate == "acc":
        rates = persistence_rates_from_run(run_dir)
        options = {**options, "cc_rates": rates} if rates is not None else {**options, "estimate": "cc"}
    return options
