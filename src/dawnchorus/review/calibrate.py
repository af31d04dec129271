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
    """species_id, score and label (1 TP, 0 FP) of every model detection decided TP or FP (skips
    left out), without those the head chose unless ``all_modes``; ``attrs["head_chosen"]`` counts
    the ones left out."""
    columns = ["species_id", "score", "decision", "source", "mode"]
    with open_db(db_path, create=False) as connection:
        rows = [row for row in decided_candidates(connection) if row["decision"] in ("tp", "fp")]
    frame = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    frame = frame[frame["source"] == DETECTIONS_SOURCE]
    chosen_by_head = frame["mode"].isin(HEAD_CHOSEN)
    left_out = 0 if all_modes else int(chosen_by_head.sum())
    if not all_modes:
        frame = frame[~chosen_by_head]
    result = pd.DataFrame({"species_id": frame["species_id"].astype(int), "score": frame["score"].astype(float),
                           "label": (frame["decision"] == "tp").astype(int)})
    result.attrs["head_chosen"] = left_out
    return result


def calibrate_run(*, db_path: str | Path, run_dir: str | Path, precision: float = 0.9,
                  all_modes: bool = False) -> tuple[Path, pd.DataFrame]:
    """Fit each species' P(correct | score) on the reviewed detections, write ``RUN/thresholds.json``;
    returns it and a table of the thresholds for ``precision`` (``attrs["head_chosen"]``: decisions
    left out because the head chose them)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise InputError(f"--run {run_dir}: not a run of 'dawnchorus train' (no config.yaml)")
    if not 0 < precision < 1:
        raise InputError(f"--precision must be between 0 and 1, e.g. 0.9; not {precision}")
    decisions = reviewed_detections(db_path, all_modes=all_modes)
    if decisions.empty:
        more = (f" ({decisions.attrs['head_chosen']} were chosen by the head in likely/uncertain mode: review in random "
                "or input mode, or pass --all-modes)") if decisions.attrs["head_chosen"] else ""
        raise InputError(f"{db_path}: no model detections marked TP or FP{more}; review a job's detections first "
                         "('dawnchorus review --detections JOB --audio ARCHIVE --db ...')")
    calibration = fit_calibration(decisions)
    table = describe(calibration, precision=precision)
    table.attrs["head_chosen"] = decisions.attrs["head_chosen"]
    return write_thresholds(run_dir, calibration, source=str(Path(db_path).resolve())), table
