"""Window score tables (keyed by recording, start, end) and how they become recording scores.

Torch-free, so that heads on pretrained embeddings, post-processing and the CNN's inference
aggregate windows the same way.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .errors import InputError

WINDOW_KEYS = ("recording_id", "t_start_s", "t_end_s")
AGGREGATIONS = ("max", "topk_mean")


def _check_window_count(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a whole number of windows >= 1, not {value!r}")


def check_aggregation(method: str, top_k: int) -> None:
    if method not in AGGREGATIONS:
        raise InputError(f"aggregation '{method}' is unknown; use {' or '.join(AGGREGATIONS)}")
    if method == "topk_mean":
        _check_window_count(top_k, "top_k")


def aggregate_windows(windows: pd.DataFrame, *, species_columns: list[str], method: str = "max", top_k: int = 3) -> pd.DataFrame:
    """Recording scores from window scores: max over time, or the mean of the top k windows.

    Recordings keep the order of their first window; a recording with fewer than k windows
    averages the ones it has.
    """
    check_aggregation(method, top_k)
    grouped = windows.groupby("recording_id", sort=False)[species_columns]
    if method == "max":
        return grouped.max().reset_index()
    return _from_ranked_windows(windows, species_columns, lambda ranked: ranked[:top_k].mean(axis=0))


def _from_ranked_windows(windows: pd.DataFrame, species_columns: list[str], reduce) -> pd.DataFrame:
    """One row per recording (in order of first window): ``reduce`` of its window scores, each
    species column sorted from the highest down."""
    values = windows[species_columns].to_numpy(dtype=np.float64)
    indices = windows.groupby("recording_id", sort=False).indices
    order = pd.unique(windows["recording_id"])
    rows = [reduce(-np.sort(-values[indices[r]], axis=0)) for r in order]
    result = pd.DataFrame(np.stack(rows) if rows else np.zeros((0, len(species_columns))), columns=species_columns)
    result.insert(0, "recording_id", order)
    return result


def kth_best_window(windows: pd.DataFrame, *, species_columns: list[str], k: int) -> pd.DataFrame:
    """Per recording and species, the k-th highest window score: how loud the evidence is in at
    least k windows. A species passes a threshold here only if k windows pass it, which a lone
    false alarm does not; prior estimation counts on it (``infer.persistence_evidence``).
    Recordings with fewer than k windows give their lowest window."""
    _check_window_count(k, "k")
    return _from_ranked_windows(windows, species_columns, lambda ranked: ranked[min(k, len(ranked)) - 1])


def average_window_tables(tables: Sequence[pd.DataFrame], *, species_columns: list[str]) -> pd.DataFrame:
    """Mean of several runs' window tables (same windows), the model-ensemble step."""
    if len(tables) == 1:
        return tables[0]
    keys = list(WINDOW_KEYS)
    first = tables[0][keys]
    for table in tables[1:]:
        if not table[keys].equals(first):
            raise InputError("runs produced different windows; use the same --window-s and --hop-s for every run")
    mean = np.mean([t[species_columns].to_numpy() for t in tables], axis=0)
    return pd.concat([first.reset_index(drop=True), pd.DataFrame(mean, columns=species_columns)], axis=1)
