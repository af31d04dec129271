"""Training and prediction end to end on a tiny synthetic corpus, including crash + resume."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from dawnchorus.cli import app
from dawnchorus.config import load_config, load_preset, save_config, with_overrides
from dawnchorus.errors import InputError
from dawnchorus.fold_trainer import FoldTrainer
from dawnchorus.infer import persistence_evidence, predict, window_starts
from dawnchorus.losses import loss_from_config
from dawnchorus.models import geometric_mean_logit
from dawnchorus.priors import persistence_from_run
from dawnchorus.scores import aggregate_windows, kth_best_window
from dawnchorus.synth import SynthConfig, generate_corpus
from dawnchorus.train import train

FAST = [
    "features.sample_rate_hz=16000", "features.n_fft=512", "features.hop_length=256", "features.n_mels=32",
    "features.f_max_hz=8000", "model.backbone=mobilenetv3_small_050", "sampling.crop_s=1.5",
    "sampling.crops_per_epoch=24", "train.batch_size=8", "train.epochs=2", "train.folds=2", "train.train_folds=[0]",
    "train.checkpoint_every_steps=1", "train.average_best=2", "train.device=cpu", "infer.window_s=1.5", "infer.hop_s=1.5",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(out_dir=root, config=SynthConfig(n_train=8, n_test=3, duration_s=4.0, seed=5, workers=1))
    return root


def fast_config(*extra):
    return with_overrides(load_preset("cpu-small"), FAST + list(extra))


def test_window_starts_cover_the_recording():
    assert window_starts(100, window=30, hop=30).tolist() == [0, 30, 60, 70]
    assert window_starts(20, window=30, hop=10).tolist() == [0]
    assert window_starts(90, window=30, hop=30).tolist() == [0, 30, 60]


def test_aggregate_max_and_topk():
    windows = pd.DataFrame({"recording_id": ["a", "a", "a", "b"], "t_start_s": [0, 1, 2, 0], "t_end_s": [1, 2, 3, 1],
                            "s0": [0.1, 0.9, 0.5, 0.2]})
    assert aggregate_windows(windows, species_columns=["s0"]).s0.tolist() == [0.9, 0.2]
    top2 = aggregate_windows(windows, species_columns=["s0"], method="topk_mean", top_k=2)
    assert top2.s0.tolist() == pytest.approx([0.7, 0.2])


def test_kth_best_window_needs_k_windows_of_evidence():
    windows = pd.DataFrame({"recording_id": ["a", "a", "a", "b"], "t_start_s": [0, 1, 2, 0], "t_end_s": [1, 2, 3, 1],
                            "s0": [0.1, 0.9, 0.5, 0.2], "s1": [0.7, 0.6, 0.8, 0.3]})
    second = kth_best_window(windows, species_columns=["s0", "s1"], k=2)
    assert second.recording_id.tolist() == ["a", "b"]
    assert second.s0.tolist() == [0.5, 0.2] and second.s1.tolist() == [0.7, 0.3]  # b has one window: its only score
    assert kth_best_window(windows, species_columns=["s0"], k=1).s0.tolist() == [0.9, 0.2]
    with pytest.raises(InputError, match="whole number of windows"):
        kth_best_window(windows, species_columns=["s0"], k=0)


def test_train_writes_a_complete_run_and_predict_reads_it(corpus, tmp_path):
    run = train(data_dir=corpus, out_dir=tmp_path / "run", config=fast_config())
    for name in ("config.yaml", "layout.json", "species.csv", "folds.csv", "history.csv", "oof.csv", "fold0/model.safetensors"):
        assert (run / name).is_file(), name
    assert load_config(run / "config.yaml") == fast_config()
    history = pd.read_csv(run / "history.csv")
    assert list(history.epoch) == [0, 1] and {"train_loss", "val_auc", "crops_per_s"} <= set(history.columns)
    assert not (run / "fold0" / "resume.pt").exists()
    folds = pd.read_csv(run / "folds.csv")
    held_out = set(folds[folds.fold == 0].recording_id)
    assert set(pd.read_csv(run / "oof.csv").recording_id) == held_out
    assert set(pd.read_parquet(run / "fold0" / "oof_windows.parquet").recording_id) == held_out
    assert persistence_from_run(run)[0] == fast_config().infer.top_k  # the held-out recordings have TP boxes

    result = predict(run_dirs=[run], audio_dir=corpus / "test", device="cpu")
    ids = sorted(p.stem for p in (corpus / "test").glob("*.flac"))
    assert list(result.submission.recording_id) == ids
    scores = result.submission[[f"s{i}" for i in range(24)]].to_numpy()
    assert scores.shape == (3, 24) and np.all((scores >= 0) & (scores <= 1))
    assert len(result.windows) == 3 * 3  # 4 s at 1.5 s windows, hop 1.5 -> starts 0, 1.5, 2.5

    ensemble = predict(run_dirs=[run, run], audio_dir=corpus / "test", device="cpu")
    np.testing.assert_allclose(ensemble.submission[["s0"]].to_numpy(), result.submission[["s0"]].to_numpy(), rtol=1e-5)

    archive = tmp_path / "archive"
    shutil.copytree(corpus / "test", archive)
    (archive / "broken.flac").write_bytes(b"not audio at all")
    with pytest.warns(UserWarning, match="skipped: .*broken.flac"):
        partial = predict(run_dirs=[run], audio_dir=archive, device="cpu")
    assert list(partial.submission.recording_id) == ids  # the others are still predicted

    with pytest.raises(InputError, match="already holds a run"):
        train(data_dir=corpus, out_dir=run, config=fast_config())


def test_killed_mid_epoch_run_resumes_to_the_same_weights(corpus, tmp_path):
    config = fast_config("augment.mixup_prob=0.5")
    reference = train(data_dir=corpus, out_dir=tmp_path / "ref", config=config)
    args = [sys.executable, "-m", "dawnchorus.cli", "train", "--data", str(corpus), "--out", str(tmp_path / "crash"),
            "--preset", str(reference / "config.yaml")]
    crashed = subprocess.run(args, env={**os.environ, "DAWNCHORUS_STOP_AFTER_STEPS": "4"}, capture_output=True, text=True)
    assert crashed.returncode == 137, crashed.stderr
    assert (tmp_path / "crash" / "fold0" / "resume.pt").is_file()  # step 4 of 6: inside epoch 2
    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(reference / "fold0" / "model.safetensors"))
    b = load_file(str(tmp_path / "crash" / "fold0" / "model.safetensors"))
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


def test_cli_train_and_predict_contract(corpus, tmp_path):
    runner = CliRunner()
    sets = [arg for item in FAST for arg in ("--set", item)]
    result = runner.invoke(app, ["train", "--data", str(corpus), "--out", str(tmp_path / "run"), "--preset", "cpu-small", *sets])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", "--run", str(tmp_path / "run"), "--audio", str(corpus / "test"),
                                 "--out", str(tmp_path / "sub.csv"), "--detections", str(tmp_path / "det.parquet"),
                                 "--raven", str(tmp_path / "raven"), "--raven-threshold", "0.0"])
    assert result.exit_code == 0, result.output
    submission = pd.read_csv(tmp_path / "sub.csv")
    assert list(submission.columns) == ["recording_id"] + [f"s{i}" for i in range(24)]
    detections = pd.read_parquet(tmp_path / "det.parquet")
    assert list(detections.columns) == ["recording_id", "species_id", "t_start_s", "t_end_s", "score"]
    assert len(detections) == 3 * 3 * 24
    assert len(list((tmp_path / "raven").glob("*.selections.txt"))) == 3
    bad = runner.invoke(app, ["train", "--data", str(corpus), "--out", str(tmp_path / "r2"), "--preset", "cpu-small",
                              "--set", "train.epochs=lots"])
    assert bad.exit_code == 2 and "train.epochs: expected int" in bad.output
    missing = runner.invoke(app, ["predict", "--run", str(tmp_path), "--audio", str(corpus / "test"), "--out", str(tmp_path / "x.csv")])
    assert missing.exit_code == 2 and "not a training run" in missing.output


def test_frame_model_learns_from_box_frames_and_predicts_on_a_time_grid(corpus, tmp_path):
    config = fast_config("model.head=frame", "loss.frame_weight=1.0", "infer.frame_step_s=0.5", "infer.aggregate=max")
    run = train(data_dir=corpus, out_dir=tmp_path / "frame", config=config)
    result = predict(run_dirs=[run], audio_dir=corpus / "test", device="cpu")
    windows = result.windows
    assert len(windows) == 3 * 8  # 4 s on a 0.5 s grid
    first = windows[windows.recording_id == windows.recording_id.iloc[0]]
    np.testing.assert_allclose(first.t_start_s, np.arange(8) * 0.5)
    np.testing.assert_allclose(first.t_end_s - first.t_start_s, 0.5)
    columns = result.species.columns
    np.testing.assert_allclose(result.submission[columns].to_numpy(),
                               aggregate_windows(windows, species_columns=columns)[columns].to_numpy(), rtol=1e-6)

    # Several window lengths and shifted passes meet on the same grid and change the scores.
    richer = predict(run_dirs=[run], audio_dir=corpus / "test", device="cpu", extra_window_s=[1.0], tta_shifts=2)
    assert richer.windows[["recording_id", "t_start_s"]].equals(windows[["recording_id", "t_start_s"]])
    assert not np.allclose(richer.windows[columns].to_numpy(), windows[columns].to_numpy())

    # Prior estimation counts the k best windows, as its out-of-fold threshold was chosen, not the k best frames.
    rows = predict(run_dirs=[run], audio_dir=corpus / "test", device="cpu", window_rows=True).windows
    assert len(rows) == 3 * 3 and np.allclose(rows.t_end_s - rows.t_start_s, 1.5)
    table, k, _ = persistence_evidence(run_dirs=[run], audio_dir=corpus / "test", windows=windows, device="cpu")
    pd.testing.assert_frame_equal(table, kth_best_window(rows, species_columns=columns, k=k))
    with pytest.raises(InputError, match="window rows have no frame grid"):
        predict(run_dirs=[run], audio_dir=corpus / "test", device="cpu", window_rows=True, tta_shifts=2)

    with pytest.raises(InputError, match="needs a head with a frame output"):
        train(data_dir=corpus, out_dir=tmp_path / "clip", config=fast_config("model.head=clip", "loss.frame_weight=1.0"))


def test_clip_frame_head_trains_each_branch_and_predicts_their_combination(corpus, tmp_path):
    config = fast_config("model.head=clip_frame", "loss.frame_weight=1.0")
    fake = SimpleNamespace(config=config, loss_fn=loss_from_config(config.loss), label_frames=0)
    branches = torch.tensor([[[3.0, -2.0]], [[-1.0, 0.5]]])
    targets, weight = torch.tensor([[0.0, float("nan")]]), torch.ones(1, 2)  # (for a positive the two agree)
    outputs = {"clip": geometric_mean_logit(branches), "branches": branches}
    loss = FoldTrainer.batch_loss(fake, outputs, targets, {"weight": weight})
    expected = (fake.loss_fn(branches[0], targets, weight=weight) + fake.loss_fn(branches[1], targets, weight=weight)) / 2
    torch.testing.assert_close(loss, expected)
    assert not torch.isclose(loss, fake.loss_fn(outputs["clip"], targets, weight=weight))

    run = train(data_dir=corpus, out_dir=tmp_path / "both", config=config)
    result = predict(run_dirs=[run], audio_dir=corpus / "test", device="cpu")
    columns = result.species.columns
    scores = result.submission[columns].to_numpy()
    assert scores.shape == (3, len(columns)) and ((scores >= 0) & (scores <= 1)).all()


def test_training_mixes_real_backgrounds_under_its_crops(corpus, tmp_path):
    backgrounds = Path(__file__).parent / "data" / "real" / "tfk-audio-environment"
    config = fast_config(f"augment.background_dir={backgrounds}", "augment.background_prob=0.5")
    run = train(data_dir=corpus, out_dir=tmp_path / "run", config=config)
    assert load_config(run / "config.yaml").augment.background_dir == str(backgrounds)
    scores = predict(run_dirs=[run], audio_dir=corpus / "test", device="cpu").submission
    assert scores.shape[0] == 3 and scores.drop(columns="recording_id").notna().all().all()


def test_training_writes_the_classify_and_count_threshold_of_its_held_out_recordings(tmp_path):
    from dawnchorus.data.annotations import Box
    from dawnchorus.data.species import SpeciesTable
    from dawnchorus.priors import threshold_from_run
    from dawnchorus.calibration import write_calibration

    dataset = SimpleNamespace(species=SpeciesTable.from_ids([0, 1]),
                              boxes=[Box("a", 0, 1, 1.0, 0.0, 2.0, 1e3, 1), Box("b", 1, 1, 1.0, 0.0, 2.0, 1e3, 1),
                                     Box("c", 0, 1, 1.0, 0.0, 2.0, 1e3, 0)])  # an FP box is no presence
    oof = pd.DataFrame({"recording_id": ["a", "b", "c"], "fold": 0, "s0": [0.3, 0.1, 0.25], "s1": [0.2, 0.4, 0.05]})
    write_calibration(tmp_path, oof=oof, dataset=dataset)
    assert threshold_from_run(tmp_path) == pytest.approx(0.3) and persistence_from_run(tmp_path) is None
    # window scores: a's second-best s0 window (0.6) and b's s1 (0.5) beat every absent species' second best
    windows = pd.DataFrame({"recording_id": list("aaabbbccc"), "t_start_s": [0, 1, 2] * 3, "t_end_s": [1, 2, 3] * 3,
                            "s0": [0.7, 0.6, 0.1, 0.1, 0.2, 0.1, 0.9, 0.3, 0.1], "s1": [0.2, 0.1, 0.1, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1]})
    write_calibration(tmp_path, oof=oof, dataset=dataset, oof_windows=windows, persistence_windows=2)
    assert persistence_from_run(tmp_path) == (2, pytest.approx(0.5)) and threshold_from_run(tmp_path) == pytest.approx(0.3)
    # rates as the estimator counts (score > threshold): a's s0 (0.6) passes, b's s1 (0.5) does not; no absent pair passes
    from dawnchorus.priors import persistence_rates_from_run

    assert persistence_rates_from_run(tmp_path) == (pytest.approx(0.5), pytest.approx(0.0))
    nothing_held_out = tmp_path / "empty"
    nothing_held_out.mkdir()
    write_calibration(nothing_held_out, oof=oof.assign(recording_id="z"), dataset=dataset)
    assert not (nothing_held_out / "calibration.json").exists() and threshold_from_run(nothing_held_out) == 0.5


class _RunsCode:
    """Pickles into a call of os.system: what a doctored resume file would hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_doctored_resume_file_is_refused_without_running_it(corpus, tmp_path):
    import torch

    run, marker = tmp_path / "run", tmp_path / "pwned"
    (run / "fold0").mkdir(parents=True)
    save_config(fast_config(), run / "config.yaml")  # a run directory someone sent
    torch.save({"model": _RunsCode(marker)}, run / "fold0" / "resume.pt")
    with pytest.raises(InputError, match="resume.pt: not a resume point this program wrote"):
        train(data_dir=corpus, out_dir=run, config=fast_config(), resume=True)
    assert not marker.exists()
