"""Occupancy at a chosen precision: calibrated thresholds, naive and corrected prevalence."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from dawnchorus.cli import app
from dawnchorus.occupancy import occupancy_table
from dawnchorus.summarize import SUMMARY_COLUMNS, read_recording_summary
from dawnchorus.thresholds import fit_calibration, write_thresholds


def world(n: int, *, occupied: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Recordings of one site and day where species 4 calls in a share ``occupied`` of them; the
    detector scores calls high and, in a quarter of the empty recordings, noise fairly high.
    Also the reviewed detections a person would mark (truth known)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(size=n) < occupied
    false_alarm = rng.uniform(size=n) < 0.25
    scores = np.where(truth, rng.beta(8, 2, n), np.where(false_alarm, rng.beta(4, 3, n), rng.beta(1, 8, n)))
    summary = pd.DataFrame({"path": [f"site1/r{i}.wav" for i in range(n)], "recording_id": [f"r{i}" for i in range(n)],
                            "site": "site1", "start_time": pd.Timestamp("2024-04-01 05:00"), "duration_s": 60.0,
                            "species_id": 4, "species": "Eleutherodactylus coqui", "max_score": scores, "topk_mean": scores})
    reviewed = pd.DataFrame({"species_id": 4, "score": scores, "label": truth.astype(int)})
    return summary[SUMMARY_COLUMNS], reviewed[scores > 0.2], truth


def test_calibrated_prevalence_removes_false_detections_and_keeps_the_truth_in_its_interval():
    summary, reviewed, truth = world(600, occupied=0.3, seed=4)
    calibration = fit_calibration(reviewed)
    table = occupancy_table(summary=summary, calibration=calibration, precision=0.9)
    row = table.iloc[0]
    assert bool(row.calibrated) and row.threshold == calibration[4].threshold(0.9)
    assert row.detected == int((summary.max_score >= row.threshold).sum())
    assert row.naive_low <= row.naive_prevalence <= row.naive_high
    assert row.prevalence < row.naive_prevalence  # expected false detections removed
    assert row.prevalence_low <= row.prevalence <= row.prevalence_high
    # what the calibrated prevalence estimates: recordings whose call is detected at that threshold
    truly = float(((summary.max_score >= row.threshold).to_numpy() & truth).mean())
    assert row.prevalence_low - 0.02 <= truly <= row.prevalence_high + 0.02


def test_missed_calls_are_added_back_when_the_review_covered_low_scores():
    summary, reviewed, truth = world(600, occupied=0.3, seed=7)
    row = occupancy_table(summary=summary, calibration=fit_calibration(reviewed), precision=0.95).iloc[0]  # reviewed down to 0.2
    assert row.prevalence_high < truth.mean()  # at a strict threshold, detections alone miss occupied recordings
    assert row.with_missed_low - 0.02 <= truth.mean() <= row.with_missed_high + 0.02
    assert row.below_reviewed == int((summary.max_score < reviewed.score.min()).sum()) > 0


def test_species_without_calibration_keep_the_fixed_threshold_and_say_so():
    summary, _, _ = world(50, occupied=0.5, seed=5)
    table = occupancy_table(summary=summary, calibration={}, precision=0.9, fallback_threshold=0.6)
    row = table.iloc[0]
    assert not row.calibrated and row.threshold == 0.6 and np.isnan(row.prevalence) and np.isnan(row.prevalence_with_missed)
    assert row.naive_prevalence == float((summary.max_score >= 0.6).mean())


def test_cli_writes_the_occupancy_table_and_its_plot(tmp_path):
    summary, reviewed, _ = world(200, occupied=0.4, seed=6)
    summary.to_csv(tmp_path / "recordings.csv", index=False)
    write_thresholds(tmp_path, fit_calibration(reviewed), source="test")
    result = CliRunner().invoke(app, ["summarize", "--summary", str(tmp_path / "recordings.csv"), "--calibration", str(tmp_path),
                                      "--precision", "0.8", "--out", str(tmp_path / "occupancy.csv"),
                                      "--plot", str(tmp_path / "occupancy.png")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "occupancy.csv")
    assert list(table.columns[:4]) == ["site", "period", "species_id", "species"] and table.calibrated.all()
    assert (tmp_path / "occupancy.png").stat().st_size > 1000
    assert len(read_recording_summary(tmp_path / "recordings.csv")) == 200
