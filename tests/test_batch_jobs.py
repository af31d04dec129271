"""The archive jobs from the CLI and the API: predict (CNN run), embed and match on one engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dawnchorus.batch.engine import read_parts
from dawnchorus.batch.jobs import embed_archive, match_archive, predict_archive
from dawnchorus.cli import app
from dawnchorus.config import load_preset, with_overrides
from dawnchorus.data import read_raven
from dawnchorus.data.bands import read_bands_csv
from dawnchorus.embeddings import Embedder, EmbeddingCache
from dawnchorus.infer import predict
from dawnchorus.synth import SynthConfig, generate_corpus
from dawnchorus.templates import match_directory
from dawnchorus.train import train

from test_batch_engine import tone

FAST = [
    "features.sample_rate_hz=16000", "features.n_fft=512", "features.hop_length=256", "features.n_mels=32",
    "features.f_max_hz=8000", "model.backbone=mobilenetv3_small_050", "sampling.crop_s=1.5",
    "sampling.crops_per_epoch=16", "train.batch_size=8", "train.epochs=1", "train.folds=2", "train.train_folds=[0]",
    "train.device=cpu", "train.average_best=1", "infer.window_s=1.5", "infer.hop_s=1.0",
]
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs")
    corpus = root / "corpus"
    generate_corpus(out_dir=corpus, config=SynthConfig(n_train=6, n_test=3, duration_s=4.0, seed=7, workers=1))
    run = train(data_dir=corpus, out_dir=root / "run", config=with_overrides(load_preset("cpu-small"), FAST))
    archive = root / "archive"
    for site in ("siteA", "siteB"):  # the same file names in both sites, as AudioMoth writes them
        for path in sorted((corpus / "test").glob("*.flac")):
            (archive / site / "20240401").mkdir(parents=True, exist_ok=True)
            shutil.copy(path, archive / site / "20240401" / f"20240401_0{len(list((archive / site / '20240401').iterdir()))}0000.flac")
    (archive / "siteB" / "20240401" / "20240401_090000.WAV").write_bytes(b"RIFF\x10\x00\x00\x00WAVE")
    return corpus, run, archive


def test_cli_predict_into_a_job_folder_lists_failures_and_exits_non_zero(trained, tmp_path):
    corpus, run, archive = trained
    out = tmp_path / "job"
    args = ["predict", "--run", str(run), "--audio", str(archive), "--out", str(out), "--format", "submission,summary",
            "--format", "raven", "--threshold", "0.0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    assert "6 processed now" in result.output and "1 failed" in result.output
    failed = pd.read_csv(out / "failed.csv")
    assert failed["path"].tolist() == ["siteB/20240401/20240401_090000.WAV"]
    submission = pd.read_csv(out / "submission.csv")
    assert len(submission) == 6 and submission["recording_id"].str.startswith(("siteA/", "siteB/")).all()
    again = runner.invoke(app, args)  # resumed: nothing to do, the failure is still reported
    assert again.exit_code == 3 and "0 processed now" in again.output and "6 done before" in again.output
    changed = runner.invoke(app, args + ["--hop-s", "0.5"])
    assert changed.exit_code == 2 and "other settings" in changed.output and "hop_s" in changed.output

    # the Raven tables read back with the project's own reader: real file name, times, band, species
    bands = read_bands_csv(run / "species_bands.csv")
    table = out / "raven" / "siteB" / "20240401" / "20240401_010000.Table.1.selections.txt"
    raw = pd.read_csv(table, sep="\t")
    assert "Label" not in raw.columns and set(raw["Begin File"]) == {"20240401_010000.flac"}
    boxes = read_raven(table)
    windows = read_parts(out)
    mine = windows[windows.path == "siteB/20240401/20240401_010000.flac"]
    assert {(b.t_min_s, b.t_max_s) for b in boxes} == set(zip(mine.t_start_s.round(6), mine.t_end_s.round(6)))
    nyquist_hz = sf.info(str(archive / "siteB/20240401/20240401_010000.flac")).samplerate / 2
    assert any(b.species_id in bands for b in boxes) and any(b.species_id not in bands for b in boxes)
    for box in boxes:  # each species' band from its training boxes, else the file's full band
        low, high = bands.get(box.species_id, (0.0, nyquist_hz))
        assert (box.f_min_hz, box.f_max_hz) == pytest.approx((low, min(high, nyquist_hz)), abs=1e-3)
    assert {b.recording_id for b in boxes} == {"20240401_010000"}


def test_job_scores_equal_in_memory_prediction_and_chunked_reading(trained, tmp_path):
    corpus, run, archive = trained
    in_memory = predict(run_dirs=[run], audio_dir=corpus / "test", device="cpu")
    whole = tmp_path / "whole"
    predict_archive(run_dirs=[run], audio_root=corpus / "test", out_dir=whole, formats=["submission"], device="cpu")
    job = pd.read_csv(whole / "submission.csv")
    assert job["recording_id"].tolist() == in_memory.submission["recording_id"].tolist()
    columns = in_memory.species.columns
    np.testing.assert_allclose(job[columns].to_numpy(), in_memory.submission[columns].to_numpy(), atol=1e-5)
    chunked = tmp_path / "chunked"
    predict_archive(run_dirs=[run], audio_root=corpus / "test", out_dir=chunked, formats=["submission"], device="cpu", chunk_s=1.0)
    a, b = read_parts(whole), read_parts(chunked)
    assert a[["path", "t_start_s"]].equals(b[["path", "t_start_s"]])
    np.testing.assert_allclose(a[columns].to_numpy(), b[columns].to_numpy(), atol=1e-4)


def test_embed_job_parts_serve_as_the_embedding_cache(tmp_path):
    archive = tmp_path / "archive"
    tone(archive / "siteA" / "20240401_060000.WAV", rate=48000, duration_s=5)
    tone(archive / "siteB" / "20240401_060000.WAV", rate=48000, duration_s=4, freq_hz=3000)
    calls = []

    def embed(windows):
        calls.append(len(windows))
        return np.stack([windows.std(axis=1), np.abs(windows).max(axis=1)], axis=1)

    embedder = Embedder(name="fake-v1", embed=embed, dim=2, sample_rate_hz=16000, window_s=1.0, batch_size=4)
    summary = embed_archive(audio_root=archive, out_dir=tmp_path / "emb", embedder=embedder, hop_s=0.5)
    assert summary.done_now == 2 and sum(calls) == 9 + 7
    parts = read_parts(tmp_path / "emb")
    assert len(parts) == 16 and len(parts["vector"].iloc[0]) == 2
    calls.clear()
    cache = EmbeddingCache(tmp_path / "emb", embedder=embedder, hop_s=0.5)
    found = cache.get(archive / "siteB" / "20240401_060000.WAV")
    assert calls == [] and cache.computed == 0 and found.vectors.shape == (7, 2)
    np.testing.assert_allclose(found.t_end_s, np.minimum(np.arange(7) * 0.5 + 1.0, 4.0))
    with pytest.warns(UserWarning, match="other settings"):  # another hop: the parts do not apply
        other = EmbeddingCache(tmp_path / "emb", embedder=embedder, hop_s=1.0)
    other.get(archive / "siteB" / "20240401_060000.WAV")
    assert other.computed == 1


def test_match_job_finds_what_match_directory_finds(tmp_path):
    archive = tmp_path / "archive"
    for site, seed in (("siteA", 1), ("siteB", 2)):
        tone(archive / site / "20240401_060000.WAV", rate=22050, duration_s=6, freq_hz=2000, seed=seed)
    templates = tmp_path / "templates.csv"
    templates.write_text("recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\n"
                         "siteA/20240401_060000,3,1,1.0,1500,1.8,2500\n")
    expected = match_directory(templates=templates, audio_dir=archive, top_n=2, workers=1)
    summary = match_archive(templates=templates, audio_root=archive, out_dir=tmp_path / "match", top_n=2)
    got = pd.read_csv(tmp_path / "match" / "candidates.csv")
    assert summary.done_now == 2 and set(got["path"]) == {"siteA/20240401_060000.WAV", "siteB/20240401_060000.WAV"}
    assert got["recording_id"].tolist() == expected["recording_id"].tolist()
    np.testing.assert_allclose(got[["t_min", "score"]].to_numpy(), expected[["t_min", "score"]].to_numpy(), atol=1e-3)
    result = runner.invoke(app, ["match", "--templates", str(templates), "--audio", str(archive), "--out",
                                 str(tmp_path / "cli"), "--top-n", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cli" / "job.json").read_text())["command"] == "match"


def test_review_reads_a_predict_job_folder_as_detections(trained, tmp_path):
    from dawnchorus.data.audio import find_recordings_by_id
    from dawnchorus.review import read_detections

    corpus, run, archive = trained
    out = tmp_path / "job"
    predict_archive(run_dirs=[run], audio_root=archive, out_dir=out, formats=["summary"], device="cpu")
    windows = read_parts(out)
    everything = read_detections(out)
    assert len(everything) == len(windows) * 24
    strong = read_detections(out, min_score=0.5)
    assert len(strong) == int((windows[[f"s{i}" for i in range(24)]] >= 0.5).to_numpy().sum())
    assert {c.recording_id for c in everything} <= set(find_recordings_by_id(archive))
