"""Thresholds for a chosen precision from reviewed detections: the logistic calibration, its
file, and the loop review -> calibrate -> predict --threshold-precision."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dawnchorus.batch.jobs import predict_archive
from dawnchorus.cli import app
from dawnchorus.errors import InputError
from dawnchorus.review import read_detections
from dawnchorus.review.calibrate import reviewed_detections
from dawnchorus.review.db import open_db, record_decision
from dawnchorus.review.session import open_session
from dawnchorus.thresholds import SpeciesCalibration, fit_calibration, precision_thresholds, read_thresholds, write_thresholds

from test_batch_jobs import trained  # noqa: F401  (a fixture: a tiny CNN run and an archive)


def simulated(n: int, *, intercept: float, slope: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.01, 0.99, n)
    correct = rng.uniform(size=n) < 1 / (1 + np.exp(-(intercept + slope * np.log(scores / (1 - scores)))))
    return pd.DataFrame({"species_id": 4, "score": scores, "label": correct.astype(int)})


def true_threshold(precision: float, intercept: float, slope: float) -> float:
    return float(1 / (1 + np.exp(-(np.log(precision / (1 - precision)) - intercept) / slope)))


def test_the_threshold_for_a_precision_is_found_with_its_uncertainty():
    decisions = simulated(1500, intercept=-0.5, slope=1.5, seed=1)
    fitted = fit_calibration(decisions)[4]
    truth = true_threshold(0.9, -0.5, 1.5)
    assert abs(fitted.threshold(0.9) - truth) < 0.04
    low, high = fitted.interval(0.9)
    assert low < truth < high and high - low < 0.15
    assert fitted.threshold(0.95) > fitted.threshold(0.9) > fitted.threshold(0.5)
    # reviewing only the high scores (a queue sorted most likely first) does not bias the fit
    top_only = fit_calibration(decisions[decisions.score > 0.4])[4]
    assert abs(top_only.threshold(0.9) - truth) < 0.06


def test_species_the_score_cannot_calibrate_say_why():
    few = pd.DataFrame({"species_id": 1, "score": [0.9, 0.8, 0.7, 0.2], "label": [1, 1, 0, 0]})
    assert "at least 5 of each" in fit_calibration(few)[1]
    backwards = simulated(600, intercept=0.0, slope=-1.0, seed=2)
    assert fit_calibration(backwards)[4].threshold(0.9) is None


def test_thresholds_survive_the_run_file_and_unreviewed_species_are_named(tmp_path):
    calibration = fit_calibration(pd.concat([simulated(400, intercept=0.0, slope=2.0, seed=3),
                                             pd.DataFrame({"species_id": 7, "score": [0.5], "label": [1]})]))
    write_thresholds(tmp_path, calibration, source="test")
    again = read_thresholds(tmp_path)
    assert isinstance(again[4], SpeciesCalibration) and again[4].threshold(0.9) == pytest.approx(calibration[4].threshold(0.9))
    found, reasons = precision_thresholds(tmp_path, precision=0.9, species_ids=[4, 7, 9])
    assert set(found) == {4} and set(reasons) == {7, 9} and reasons[9] == "not reviewed"
    with pytest.raises(InputError, match="between 0 and 1"):
        precision_thresholds(tmp_path, precision=1.5, species_ids=[4])
    with pytest.raises(InputError, match="review calibrate"):
        read_thresholds(tmp_path / "elsewhere")


def test_reviewed_detections_set_each_species_threshold_of_predict(trained, tmp_path):  # noqa: F811
    _, run, archive = trained
    job = tmp_path / "job"
    predict_archive(run_dirs=[run], audio_root=archive, out_dir=job, formats=["birdnet"], threshold=0.0)
    candidates = read_detections(job)
    sampled = read_detections(job, sample_per_species=3)  # a calibration sample of a job's windows
    assert set(sampled) <= set(candidates) and max(Counter(c.species_id for c in sampled).values()) == 3
    session = open_session(candidates=candidates, audio_dir=archive, db_path=tmp_path / "review.sqlite")
    rng = np.random.default_rng(0)
    scores = np.array([session.rows[i]["score"] for i in session.order])
    ranks = scores.argsort().argsort() / len(scores)  # a stand-in reviewer: higher scores more often right
    with open_db(session.db_path) as connection:
        for n, (candidate_id, rank) in enumerate(zip(session.order, ranks)):
            decision = "tp" if rng.uniform() < rank else "fp"
            mode = "likely" if n % 5 == 0 else "input"  # a few the head chose: left out of the fit
            record_decision(connection, candidate_id=candidate_id, decision=decision, reviewer="stand-in", mode=mode)
    head_chosen = len(range(0, len(ranks), 5))
    assert len(reviewed_detections(session.db_path)) == len(ranks) - head_chosen
    assert len(reviewed_detections(session.db_path, all_modes=True)) == len(ranks)
    runner = CliRunner()
    calibrated = runner.invoke(app, ["review", "calibrate", "--db", str(session.db_path), "--run", str(run)])
    assert calibrated.exit_code == 0, calibrated.output
    assert "thresholds.json" in calibrated.output and f"{head_chosen} decision(s) chosen by the head" in calibrated.output
    used = reviewed_detections(session.db_path)
    for species_id, fitted in read_thresholds(run).items():
        if isinstance(fitted, SpeciesCalibration):  # the reviewed range is kept: occupancy flags scores below it
            assert fitted.score_min == pytest.approx(used.loc[used.species_id == species_id, "score"].min())
    found, reasons = precision_thresholds(run, precision=0.8, species_ids=sorted({c.species_id for c in candidates}))
    assert found  # species with enough decisions got a threshold
    result = runner.invoke(app, ["predict", "--run", str(run), "--audio", str(archive), "--out", str(tmp_path / "calibrated"),
                                 "--format", "birdnet", "--threshold", "0.3", "--threshold-precision", "0.8"])
    assert result.exit_code == 3, result.output  # the archive's broken file
    detections = pd.read_csv(tmp_path / "calibrated" / "detections.birdnet.csv")
    assert len(detections)
    species_of = {name: species_id for species_id, name in zip(*_species(run))}
    for _, row in detections.iterrows():
        species_id = species_of[row["Scientific name"]]
        assert row["Confidence"] >= found.get(species_id, 0.3) - 1e-4
    refused = runner.invoke(app, ["predict", "--run", str(run), "--audio", str(archive), "--out", str(tmp_path / "s.csv"),
                                  "--threshold-precision", "0.9"])
    assert refused.exit_code == 2 and "--threshold-precision" in refused.output


def _species(run):
    from dawnchorus.data.species import read_species_csv

    table = read_species_csv(run / "species.csv")
    return table.species_ids, table.names
