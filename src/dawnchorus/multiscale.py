"""Per-class choice of the inference window length (the 23rd place's multi-scale trick).

Short calls stand out in short windows, long choruses need long ones. Each candidate window
length scores the training recordings that a fold held out (each by the model that did not
see it), on the run's time grid; a TP or FP box then gets, per length, the highest score of its
class on the grid steps it overlaps, and each class keeps the length whose scores separate its
TP boxes from its FP boxes best (ROC AUC). Classes without both kinds of held-out box keep the
run's own window. The choice is written to ``RUN/class_windows.csv`` and used by
``predict(..., class_window_s=read_class_windows(run))`` / ``dawnchorus predict --class-windows``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .data.species import species_column
from .errors import InputError

CLASS_WINDOWS_FILE = "class_windows.csv"


def _box_scores(windows: pd.DataFrame, boxes, column_of: dict[int, str]) -> np.ndarray:
    by_recording = {r: g for r, g in windows.groupby("recording_id", sort=False)}
    scores = []
    for box in boxes:
        rows = by_recording[box.recording_id]
        inside = (rows["t_start_s"] < box.t_max_s) & (rows["t_end_s"] > box.t_min_s)
        scores.append(float(rows.loc[inside, column_of[box.species_id]].max()) if inside.any() else np.nan)
    return np.array(scores)


def choose_class_windows(*, run_dir: str | Path, data_dir: str | Path, windows_s: Sequence[float], device: str = "auto",
                         step_s: float | None = None, progress: bool = False) -> pd.DataFrame:
    """Pick each species' window length from out-of-fold box scores; writes and returns the table.

    Columns: ``column``, ``window_s`` (the choice), ``n_tp``, ``n_fp`` and ``auc_<length>`` per
    candidate. The run's own ``infer.window_s`` is always a candidate.
    """
    from sklearn.metrics import roc_auc_score

    from .data import load_dataset
    from .infer import load_run, predict_out_of_fold
    from .models import resolve_device

    torch_device = resolve_device(device)
    run = load_run(run_dir, device=torch_device)
    infer = run.config.infer
    candidates = list(dict.fromkeys([float(infer.window_s), *(float(w) for w in windows_s)]))
    bad = [w for w in candidates if not w > 0]
    if bad:
        raise InputError(f"window lengths must be positive seconds; got {bad}")
    folds_csv = Path(run.run_dir) / "folds.csv"
    if not folds_csv.is_file():
        raise InputError(f"{run.run_dir}: no folds.csv; per-class window lengths need a run trained with folds")
    trained = {int(p.parent.name[4:]) for p in Path(run.run_dir).glob("fold*/model.safetensors")}
    folds = pd.read_csv(folds_csv, dtype={"recording_id": str})
    held_out = set(folds.loc[folds["fold"].isin(trained), "recording_id"])
    dataset = load_dataset(data_dir, require_labels=True)
    column_of = {s: species_column(s) for s in run.species.species_ids}
    boxes = [b for b in dataset.boxes if b.recording_id in held_out and b.species_id in column_of]
    if not boxes:
        raise InputError(f"{data_dir}: no TP/FP box lies in a recording that {run.run_dir}'s trained folds held out")
    paths = {r: dataset.train[r].path for r in sorted({b.recording_id for b in boxes})}
    step_s = step_s or infer.frame_step_s or infer.hop_s / 2
    labels = np.array([b.label for b in boxes])
    species = np.array([b.species_id for b in boxes])
    aucs: dict[float, dict[int, float]] = {}
    for length_s in candidates:
        windows = predict_out_of_fold(run=run, audio_paths=paths, device=torch_device, progress=progress, window_s=length_s,
                                      frame_step_s=step_s)
        scores = _box_scores(windows, boxes, column_of)
        aucs[length_s] = {}
        for species_id in run.species.species_ids:
            mine = (species == species_id) & ~np.isnan(scores)
            if len(np.unique(labels[mine])) == 2:
                aucs[length_s][species_id] = float(roc_auc_score(labels[mine], scores[mine]))
    rows = []
    for species_id in run.species.species_ids:
        found = {w: aucs[w].get(species_id, np.nan) for w in candidates}
        known = {w: a for w, a in found.items() if not np.isnan(a)}
        best = max(known, key=lambda w: (known[w], w == candidates[0])) if known else candidates[0]
        rows.append({"column": column_of[species_id], "window_s": best, "n_tp": int(((species == species_id) & (labels == 1)).sum()),
                     "n_fp": int(((species == species_id) & (labels == 0)).sum()),
                     **{f"auc_{w:g}": found[w] for w in candidates}})
    table = pd.DataFrame(rows)
    table.to_csv(Path(run_dir) / CLASS_WINDOWS_FILE, index=False, float_format="%.4f")
    return table


def read_class_windows(run_dir: str | Path) -> dict[str, float]:
    """``column -> window_s`` from a run's ``class_windows.csv``."""
    path = Path(run_dir) / CLASS_WINDOWS_FILE
    if not path.is_file():
        raise InputError(f"{path}: not found; choose the lengths first with 'dawnchorus scales --run {run_dir} --data DIR "
                         "--window-s SECONDS'")
    table = pd.read_csv(path)
    missing = {"column", "window_s"} - set(table.columns)
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    lengths = pd.to_numeric(table["window_s"], errors="coerce")
    if lengths.isna().any() or (lengths <= 0).any():
        raise InputError(f"{path}: window_s must be positive seconds on every row")
    return dict(zip(table["column"].astype(str), lengths.astype(float)))
