import json

import pandas as pd

from dawnchorus.demo import demo_config, run_demo

from test_train_infer import FAST


def test_demo_runs_end_to_end_and_reuses_its_corpus(tmp_path):
    report = run_demo(out_dir=tmp_path, n_train=8, n_test=3, seed=2, duration_s=4.0, overrides=tuple(FAST))
    text = report.read_text()
    epochs = demo_config(overrides=tuple(FAST)).train.epochs
    assert f"| dawnchorus cpu-small, {epochs} epochs (raw scores) |" in text and "constant prior" in text and "example_detections.png" in text
    assert "host paper's test prevalence (a prior table)" in text and "estimated test prevalence" in text
    rows = [line for line in text.splitlines() if line.startswith("| dawnchorus")]
    assert "estimated test prevalence" in rows[0] and "raw scores" in rows[1]  # what a user gets comes first
    assert (tmp_path / "submission_prior.csv").is_file() and (tmp_path / "submission_estimated.csv").is_file()
    assert (tmp_path / "example_detections.png").stat().st_size > 10_000
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["lwlrap"] <= 1.0 and len(metrics["per_species"]) == 24
    assert len(pd.read_csv(tmp_path / "submission.csv")) == 3
    stamp = (tmp_path / "corpus" / "synth_config.json").stat().st_mtime_ns
    run_demo(out_dir=tmp_path, n_train=8, n_test=3, seed=2, duration_s=4.0, overrides=tuple(FAST))
    assert (tmp_path / "corpus" / "synth_config.json").stat().st_mtime_ns == stamp


def test_demo_trains_half_the_presets_epochs_unless_told_otherwise():
    from dawnchorus.config import load_preset

    assert demo_config().train.epochs == load_preset("cpu-small").train.epochs // 2 == 5
    assert demo_config(overrides=("train.epochs=7",)).train.epochs == 7
    assert demo_config().model == load_preset("cpu-small").model
