"""Pseudo-label rounds: teacher labels, student training, rounds on disk and resumable."""

import numpy as np
import pandas as pd
import pytest

from dawnchorus.errors import InputError
from dawnchorus.infer import load_run, predict, resolve_round
from dawnchorus.pseudo import soft_labels_from_table, train_pseudo_rounds
from dawnchorus.synth import SynthConfig, generate_corpus
from dawnchorus.train import train

from test_train_infer import fast_config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(out_dir=root, config=SynthConfig(n_train=8, n_test=3, duration_s=4.0, seed=6, workers=1))
    return root


def test_soft_labels_from_table_and_conservative_hard_labels():
    table = pd.DataFrame({"recording_id": ["a"] * 3, "t_start_s": [1.0, 0.0, 0.5], "t_end_s": [1.5, 0.5, 1.0],
                          "s0": [0.9, 0.1, 0.5], "s1": [0.0, 0.2, 0.3]})
    soft = soft_labels_from_table(table, columns=["s0", "s1"], step_s=0.5)
    np.testing.assert_allclose(soft.scores["a"][:, 0], [0.1, 0.5, 0.9])  # sorted by time
    hard = soft_labels_from_table(table, columns=["s0", "s1"], step_s=0.5, hard_thresholds=(0.2, 0.8))
    np.testing.assert_array_equal(hard.scores["a"][:, 0], [0, np.nan, 1])
    with pytest.raises(InputError, match="lack class columns s2"):
        soft_labels_from_table(table, columns=["s0", "s2"], step_s=0.5)


def test_rounds_label_train_and_extra_audio_train_students_and_resume(corpus, tmp_path):
    config = fast_config("model.head=frame", "loss.frame_weight=1.0", "pseudo.epochs=1")
    run = train(data_dir=corpus, out_dir=tmp_path / "run", config=config)
    rounds = train_pseudo_rounds(run_dir=run, data_dir=corpus, rounds=2, audio_dir=corpus / "test")
    assert [r.name for r in rounds] == ["round1", "round2"]
    labels = pd.read_parquet(rounds[0] / "pseudo_labels.parquet")
    train_ids = {p.stem for p in (corpus / "train").glob("*.flac")}
    test_ids = {p.stem for p in (corpus / "test").glob("*.flac")}
    assert set(labels.recording_id) == train_ids | test_ids
    assert labels.drop(columns=["recording_id"]).to_numpy().min() >= 0
    assert len(pd.read_csv(rounds[1] / "history.csv")) == 1  # pseudo.epochs
    # the rounds read the first run's audio cache (test recordings added) instead of each making its own
    assert not any((r / "audio_cache").exists() for r in rounds)
    assert len(list((run / "audio_cache").glob("*.npy"))) > len(train_ids)
    assert resolve_round(run) == rounds[1]
    assert load_run(run, device="cpu", pseudo_round=0).run_dir == run

    finished = (rounds[1] / "fold0" / "model.safetensors").stat().st_mtime_ns
    again = train_pseudo_rounds(run_dir=run, data_dir=corpus, rounds=2, audio_dir=corpus / "test")
    assert again == rounds and (rounds[1] / "fold0" / "model.safetensors").stat().st_mtime_ns == finished

    teacher = predict(run_dirs=[run], audio_dir=corpus / "test", device="cpu", pseudo_round=0)
    student = predict(run_dirs=[run], audio_dir=corpus / "test", device="cpu")
    assert not np.allclose(teacher.submission.iloc[:, 1:].to_numpy(), student.submission.iloc[:, 1:].to_numpy())
    with pytest.raises(InputError, match="rounds 0..2, not 5"):
        predict(run_dirs=[run], audio_dir=corpus / "test", device="cpu", pseudo_round=5)
    with pytest.raises(InputError, match="also training recordings"):
        train_pseudo_rounds(run_dir=run, data_dir=corpus, rounds=3, audio_dir=corpus / "train")
