"""Combining several submissions (score tables) into one.

``mean``       weighted arithmetic mean of the scores.
``geometric``  weighted mean of the log scores (clipped at 1e-6): one confident "absent"
               pulls the result down more than in the arithmetic mean.
``rank``       per species, each table's scores become ranks over recordings, scaled to
               [0, 1]; then the weighted mean. It ignores how differently models are
               calibrated, which helps per-species AP, but it also discards the level of
               each species, which LWLRAP (a ranking across species within a recording)
               needs: apply prior post-processing to rank-averaged scores with care.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InputError
from .postprocess import species_columns_of

__all__ = ["ENSEMBLE_METHODS", "ensemble_tables"]

_LOG_FLOOR = 1e-6  # log(0) would let one model veto a species everywhere


def _rank_scaled(values: np.ndarray) -> np.ndarray:
    """Per-column ranks over rows scaled to [0, 1]; ties share their mean rank."""
    if values.shape[0] == 1:
        return np.full_like(values, 0.5)  # one recording has no order; the middle is neutral
    ranks = pd.DataFrame(values).rank(axis=0, method="average").to_numpy()
    return (ranks - 1) / (values.shape[0] - 1)


ENSEMBLE_METHODS = {
    "mean": lambda stack, w: np.tensordot(w, stack, axes=1),
    "geometric": lambda stack, w: np.exp(np.tensordot(w, np.log(np.clip(stack, _LOG_FLOOR, 1.0)), axes=1)),
    "rank": lambda stack, w: np.tensordot(w, np.stack([_rank_scaled(t) for t in stack]), axes=1),
}


def _checked_weights(weights: list[float] | None, n_tables: int) -> np.ndarray:
    if weights is None:
        return np.full(n_tables, 1.0 / n_tables)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_tables,):
        raise InputError(f"{len(weights)} weight(s) given for {n_tables} table(s); give one weight per table")
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputError(f"weights must be finite and not negative; got {', '.join(f'{x:g}' for x in w)}")
    if w.sum() == 0:
        raise InputError("weights are all zero; give at least one table a positive weight")
    return w / w.sum()


def _aligned(table: pd.DataFrame, *, order: pd.Index, columns: list[str], source: str) -> np.ndarray:
    """The table's scores in the first table's recording and species order, or an error naming the file."""
    found = species_columns_of(table, source=source)
    missing, extra = [c for c in columns if c not in found], [c for c in found if c not in columns]
    problems = [f"missing species column(s) {', '.join(missing)}"] if missing else []
    problems += [f"extra species column(s) {', '.join(extra)}"] if extra else []
    ids = table["recording_id"].astype(str)
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        problems.append(f"duplicate recording id(s) {', '.join(duplicated[:10])}")
    absent, unknown = order.difference(ids), pd.Index(ids).difference(order)
    if len(absent):
        problems.append(f"{len(absent)} recording(s) of the first table missing: {', '.join(absent[:10])}")
    if len(unknown):
        problems.append(f"{len(unknown)} recording(s) not in the first table: {', '.join(unknown[:10])}")
    if problems:
        raise InputError(f"{source}: " + "; ".join(problems))
    values = table.set_index(ids)[columns].apply(pd.to_numeric, errors="coerce").loc[order].to_numpy(dtype=np.float64)
    bad = [c for c, b in zip(columns, (np.isnan(values) | (values < 0) | (values > 1)).any(axis=0)) if b]
    if bad:
        raise InputError(f"{source}: species column(s) {', '.join(bad)} hold NaN, non-numeric or values outside [0, 1]")
    return values


def ensemble_tables(*, tables: list[pd.DataFrame], method: str = "mean", weights: list[float] | None = None,
                    sources: list[str] | None = None) -> pd.DataFrame:
    """One ``recording_id,s0..`` table from several with the same recordings (any row order)
    and species (any column order); rows and columns follow the first table. ``sources``
    names the tables (file paths) in error messages."""
    if method not in ENSEMBLE_METHODS:
        raise InputError(f"ensemble method '{method}' is unknown; use one of {', '.join(ENSEMBLE_METHODS)}")
    if not tables:
        raise InputError("give at least one table to ensemble")
    sources = list(sources) if sources is not None else [f"table {i + 1}" for i in range(len(tables))]
    if len(sources) != len(tables):
        raise InputError(f"{len(sources)} source name(s) for {len(tables)} table(s)")
    w = _checked_weights(weights, len(tables))
    columns = species_columns_of(tables[0], source=sources[0])
    order = pd.Index(tables[0]["recording_id"].astype(str))
    stack = np.stack([_aligned(t, order=order, columns=columns, source=s) for t, s in zip(tables, sources)])
    combined = np.clip(ENSEMBLE_METHODS[method](stack, w), 0.0, 1.0)
    frame = pd.DataFrame(combined, columns=columns)
    frame.insert(0, "recording_id", list(order))
    return frame
