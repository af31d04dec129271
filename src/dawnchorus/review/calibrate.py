"""Reviewed detections to score thresholds: ``dawnchorus review calibrate --db DB --run RUN``.

Only candidates that came from a model's detections (``review --detections``) are used: their
scores are the run's probabilities. Template-match and search candidates carry similarities,
which say nothing about the run's scores.

Only decisions whose candidates were chosen without looking at anything but the score count:
those served in the input order, in random mode, or without active learning. The "likely" and
"uncertain" modes choose by the head's opinion of the embedding, so among detections of one
score they pick the ones the head believes (or doubts): fitted on them, P(correct | score) would
be too high (or too near 0.5). ``--all-modes`` takes them anyway.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..thresholds import describe, fit_calibration, write_thresholds
from .db import decided_candidates, open_db

DETECTIONS_SOURCE = "detections"


HEAD_CHOSEN = ("likely", "uncertain")  # modes that choose by the head, not the score


def reviewed_detections(db_path: str | Path, *, all_modes: bool = False) -> pd.DataFrame:
    """species_id, score, label (1 TP, 0 FP) and head_chosen of every model detection decided TP or
    FP (skips left out), without those the head chose unless ``all_modes``."""
    columns = ["species_id", "score", "decision", "source", "mode"]
    with open_db(db_path, create=False) as connection:
        rows = [row for row in decided_candidates(connection) if row["decision"] in ("tp", "fp")]
    frame = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    frame = frame[frame["source"] == DETECTIONS_SOURCE]
    result = pd.DataFrame({"species_id": frame["species_id"].astype(int), "score": frame["score"].astype(float),
                           "label": (frame["decision"] == "tp").astype(int), "head_chosen": frame["mode"].isin(HEAD_CHOSEN)})
    return result if all_modes else result[~result["head_chosen"]]


def calibrate_run(*, db_path: str | Path, run_dir: str | Path, precision: float = 0.9,
                  all_modes: bool = False) -> tuple[Path, pd.DataFrame, int]:
    """Fit each species' P(correct | score) on the reviewed detections, write ``RUN/thresholds.json``;
    returns it, a table of the thresholds for ``precision`` and how many decisions were left out
    because the head chose them."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise InputError(f"--run {run_dir}: not a run of 'dawnchorus train' (no config.yaml)")
    if not 0 < precision < 1:
        raise InputError(f"--precision must be between 0 and 1, e.g. 0.9; not {precision}")
    reviewed = reviewed_detections(db_path, all_modes=True)
    left_out = 0 if all_modes else int(reviewed["head_chosen"].sum())
    decisions = reviewed if all_modes else reviewed[~reviewed["head_chosen"]]
    if decisions.empty:
        more = (f" ({left_out} were chosen by the head in likely/uncertain mode: review in random or input mode, or "
                "pass --all-modes)") if left_out else ""
        raise InputError(f"{db_path}: no model detections marked TP or FP{more}; review a job's detections first "
                         "('dawnchorus review --detections JOB --audio ARCHIVE --db ...')")
    calibration = fit_calibration(decisions)
    path = write_thresholds(run_dir, calibration, source=str(Path(db_path).resolve()))
    return path, describe(calibration, precision=precision), left_out
