import json

import pandas as pd

from dawnchorus.config import load_any_config, load_preset, save_config
from dawnchorus.demo import demo_config, run_demo

from test_train_infer import FAST


def test_demo_runs_end_to_end_and_reuses_its_corpus(tmp_path):
    report = run_demo(out_dir=tmp_path, n_train=8, n_test=3, seed=2, duration_s=4.0, preset="cpu-small", overrides=tuple(FAST))
    text = report.read_text()
    epochs = demo_config(preset="cpu-small", overrides=tuple(FAST)).train.epochs
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
    run_demo(out_dir=tmp_path, n_train=8, n_test=3, seed=2, duration_s=4.0, preset="cpu-small", overrides=tuple(FAST))
    assert (tmp_path / "corpus" / "synth_config.json").stat().st_mtime_ns == stamp


def test_the_default_demo_trains_the_template_head_and_replaces_a_cnn_run(tmp_path):
    cnn_left_behind = tmp_path / "run" / "config.yaml"
    cnn_left_behind.parent.mkdir(parents=True)
    save_config(load_preset("cpu-small"), cnn_left_behind)
    report = run_demo(out_dir=tmp_path, n_train=8, n_test=3, seed=2, duration_s=4.0, overrides=("folds=2",))
    rows = [line for line in report.read_text().splitlines() if line.startswith("| dawnchorus")]
    assert "templates-linear + estimated test prevalence" in rows[0] and "| dawnchorus templates-linear (raw scores) |" in rows[1]
    assert load_any_config(tmp_path / "run" / "config.yaml").embedder == "templates"
    assert (tmp_path / "run" / "templates.safetensors").is_file() and len(pd.read_csv(tmp_path / "submission.csv")) == 3


def test_demo_trains_half_a_cnn_presets_epochs_unless_told_otherwise():
    assert demo_config(preset="cpu-small").train.epochs == load_preset("cpu-small").train.epochs // 2 == 5
    assert demo_config(preset="cpu-small", overrides=("train.epochs=7",)).train.epochs == 7
    assert demo_config(preset="cpu-small").model == load_preset("cpu-small").model
    assert demo_config() == load_any_config("templates-linear")
