"""``calibration.json`` of a run: the thresholds prior estimation counts detections with.

Learnt from the run's out-of-fold recordings, so they describe the model on recordings it did
not train on (``priors`` reads them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_write_text
from .data.dataset import RfcxDataset
from .data.species import species_column
from .errors import InputError
from .metrics import youden_threshold
from .scores import kth_best_window


CALIBRATION_RESAMPLES = 201  # bootstrap resamples of the held-out recordings behind each threshold


def write_calibration(run_dir: Path, *, oof: pd.DataFrame, dataset: RfcxDataset, oof_windows: pd.DataFrame | None = None,
                      persistence_windows: int = 3) -> None:
    """``calibration.json``: thresholds for classify-and-count prior estimation, each where the
    out-of-fold recordings' TP species are best told from the rest (Youden's J).

    Each threshold is bagged (``metrics.youden_threshold`` with ``bootstrap``): held-out
    recordings are few. ``cc_threshold`` applies to recording scores; ``persistence`` (given
    ``oof_windows``) to each recording's ``persistence_windows``-th best window score: a species
    counts as present where that many windows pass, which a lone false alarm does not
    (``scores.kth_best_window``).
    Species without a TP box in a held-out recording count as absent there: mostly right, and
    the only recording-level negatives partial labels give (benchmarks/RESULTS.md, issue 4).
    """
    columns = dataset.species.columns
    present = {(b.recording_id, species_column(b.species_id)) for b in dataset.boxes if b.label == 1}

    def youden(table: pd.DataFrame) -> tuple[float, np.ndarray]:
        y_true = np.array([[(r, c) in present for c in columns] for r in table["recording_id"].astype(str)], dtype=np.float64)
        scores = table[columns].to_numpy(dtype=np.float64)
        return youden_threshold(y_true=y_true, y_score=scores, bootstrap=CALIBRATION_RESAMPLES), y_true

    try:
        threshold, y_true = youden(oof)
    except InputError:
        return  # no held-out TP box (or nothing else): no threshold to learn; estimation uses 0.5
    calibration = {"cc_threshold": threshold,
                   "rule": "Youden's J on out-of-fold recordings (TP boxes present, other species absent), median over resamples",
                   "recordings": int(len(oof)), "present": int(y_true.sum())}
    if oof_windows is not None:
        kth = kth_best_window(oof_windows, species_columns=columns, k=persistence_windows)
        kth_threshold, kth_true = youden(kth)
        passed = kth[columns].to_numpy(dtype=np.float64) > kth_threshold
        present_here = kth_true == 1
        # rates for adjusted classify and count; fpr is an upper bound: "absent" holds unlabelled presences
        calibration["persistence"] = {"windows": persistence_windows, "threshold": kth_threshold,
                                      "tpr": float(passed[present_here].mean()), "fpr": float(passed[~present_here].mean())}
    atomic_write_text(run_dir / "calibration.json", json.dumps(calibration, indent=1))
