"""Reviewed detections to score thresholds: ``dawnchorus review calibrate --db DB --run RUN``.

Only candidates that came from a model's detections (``review --detections``) are used: their
scores are the run's probabilities. Template-match and search candidates carry similarities,
which say nothing about the run's scores.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..thresholds import describe, fit_calibration, write_thresholds
from .db import decided_candidates, open_db

DETECTIONS_SOURCE = "detections"


def reviewed_detections(db_path: str | Path) -> pd.DataFrame:
    """species_id, score and label (1 TP, 0 FP) of every model detection decided TP or FP (skips left out)."""
    with open_db(db_path, create=False) as connection:
        rows = [row for row in decided_candidates(connection) if row["decision"] in ("tp", "fp")]
    frame = pd.DataFrame(rows, columns=["species_id", "score", "decision", "source"]) if rows else pd.DataFrame(
        columns=["species_id", "score", "decision", "source"])
    frame = frame[frame["source"] == DETECTIONS_SOURCE]
    return pd.DataFrame({"species_id": frame["species_id"].astype(int), "score": frame["score"].astype(float),
                         "label": (frame["decision"] == "tp").astype(int)})


def calibrate_run(*, db_path: str | Path, run_dir: str | Path, precision: float = 0.9) -> tuple[Path, pd.DataFrame]:
    """Fit each species' P(correct | score) on the reviewed detections, write ``RUN/thresholds.json``;
    returns it and a table of the thresholds for ``precision``."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise InputError(f"--run {run_dir}: not a run of 'dawnchorus train' (no config.yaml)")
    if not 0 < precision < 1:
        raise InputError(f"--precision must be between 0 and 1, e.g. 0.9; not {precision}")
    decisions = reviewed_detections(db_path)
    if decisions.empty:
        raise InputError(f"{db_path}: no model detections marked TP or FP; review a job's detections first "
                         "('dawnchorus review --detections JOB --audio ARCHIVE --db ...')")
    calibration = fit_calibration(decisions)
    return write_thresholds(run_dir, calibration, source=str(Path(db_path).resolve())), describe(calibration, precision=precision)
