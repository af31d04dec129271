"""Odd audio through a real archive job: every file either gives finite scores over its whole
length or is listed in failed.csv with the reason; nothing is skipped without a word."""

from __future__ import annotations

import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dawnchorus.batch.engine import FAILED_FILE, read_parts
from dawnchorus.batch.jobs import predict_archive
from dawnchorus.config import load_any_config, load_preset, with_head_overrides, with_overrides
from dawnchorus.data.audio import load_audio, probe_audio
from dawnchorus.embed_runs import train_embedding_head
from dawnchorus.errors import AudioError
from dawnchorus.train import train

sys.path.insert(0, str(Path(__file__).parents[1]))  # the suite's shared helpers, when this folder runs alone
from test_batch_jobs import FAST  # noqa: E402
from test_embeddings import write_recording  # noqa: E402

RATE_HZ = 16000


def _tone(rate_hz: int, duration_s: float, *, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(rate_hz * duration_s))) / rate_hz
    return (amplitude * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def _with_data_size(data: bytes, size: int) -> bytes:
    """The same WAV with its data chunk claiming ``size`` bytes (a header that lies)."""
    at = data.find(b"data") + 4
    return data[:at] + struct.pack("<I", size) + data[at + 4:]


def odd_archive(root: Path) -> tuple[dict[str, float], set[str]]:
    """Files that must work (name -> seconds of audio they hold) and files that must be refused."""
    root.mkdir(parents=True)
    sf.write(root / "ultrasonic_384k.wav", np.random.default_rng(0).normal(0, 0.1, 384000 * 2).astype(np.float32), 384000,
             subtype="PCM_16")
    sf.write(root / "narrowband_8k.wav", _tone(8000, 3.0), 8000)
    sf.write(root / "short_0.1s.wav", _tone(RATE_HZ, 0.1), RATE_HZ)
    sf.write(root / "three_samples.wav", _tone(RATE_HZ, 3 / RATE_HZ), RATE_HZ)
    sf.write(root / "silence.flac", np.zeros(RATE_HZ * 3, np.float32), RATE_HZ)
    sf.write(root / "clipped.wav", np.clip(_tone(RATE_HZ, 3.0, amplitude=5.0), -1, 1), RATE_HZ, subtype="PCM_16")
    sf.write(root / "loud_float.wav", _tone(RATE_HZ, 3.0, amplitude=30.0), RATE_HZ, subtype="FLOAT")
    poisoned = _tone(RATE_HZ, 3.0)
    poisoned[1000:3000], poisoned[5000], poisoned[6000] = np.nan, np.inf, -np.inf
    sf.write(root / "nan_inf_float.wav", poisoned, RATE_HZ, subtype="FLOAT")
    sf.write(root / "all_nan_float.wav", np.full(RATE_HZ * 2, np.nan, np.float32), RATE_HZ, subtype="FLOAT")
    sf.write(root / "whole.wav", _tone(RATE_HZ, 4.0), RATE_HZ, subtype="PCM_16")
    whole = (root / "whole.wav").read_bytes()
    (root / "truncated.wav").write_bytes(whole[: len(whole) // 2])  # the header says 4 s, the file holds 2
    (root / "header_says_longer.wav").write_bytes(_with_data_size(whole, 10**9))
    (root / "header_says_shorter.wav").write_bytes(_with_data_size(whole, RATE_HZ * 2))  # 1 s of 16-bit samples
    (root / "no_samples.wav").write_bytes(_with_data_size(whole[:44], 0))
    (root / "not_audio.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    (root / "text_named.flac").write_text("this is not a FLAC file\n")
    works = {"ultrasonic_384k": 2.0, "narrowband_8k": 3.0, "short_0.1s": 0.1, "three_samples": 3 / RATE_HZ, "silence": 3.0,
             "clipped": 3.0, "loud_float": 3.0, "nan_inf_float": 3.0, "all_nan_float": 2.0, "whole": 4.0,
             "truncated": (len(whole) // 2 - 44) / 2 / RATE_HZ, "header_says_longer": 4.0, "header_says_shorter": 1.0}
    return works, {"no_samples", "not_audio", "text_named"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny CNN run and a tiny template-head run, both at 16 kHz."""
    root = tmp_path_factory.mktemp("odd")
    data = root / "data"
    header = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\n"
    tp, fp = [], []
    for index in range(6):
        species_id, start = index % 2, 1.0 + index % 3
        write_recording(data / "train" / f"rec{index}.wav", calls={species_id: start}, seed=index)
        tp.append(f"rec{index},{species_id},1,{start},500,{start + 0.6},3900")
        fp.append(f"rec{index},{1 - species_id},1,4.5,500,5.1,3900")
    (data / "train_tp.csv").write_text(header + "\n".join(tp) + "\n")
    (data / "train_fp.csv").write_text(header + "\n".join(fp) + "\n")
    (data / "species.csv").write_text("species_id,scientific_name\n0,alpha\n1,beta\n")
    cnn = train(data_dir=data, out_dir=root / "cnn", config=with_overrides(load_preset("cpu-small"), FAST))
    head_config = with_head_overrides(load_any_config("templates-linear"),
                                      ["folds=2", "hop_s=1", "template_window_s=1.5", "template_sample_rate_hz=8000"])
    head = train_embedding_head(data_dir=data, out_dir=root / "head", cache_dir=root / "cache", config=head_config)
    return {"cnn": cnn, "templates": head}


@pytest.mark.parametrize("kind", ["cnn", "templates"])
def test_every_odd_file_is_scored_over_its_length_or_refused_with_a_reason(runs, tmp_path, kind):
    works, refused = odd_archive(tmp_path / "archive")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = predict_archive(run_dirs=[runs[kind]], audio_root=tmp_path / "archive", out_dir=tmp_path / "job",
                                  formats=["submission", "summary"], device="cpu", chunk_s=1.0)
    assert summary.failed == len(refused)
    failed = pd.read_csv(tmp_path / "job" / FAILED_FILE)
    assert {Path(p).stem for p in failed["path"]} == refused
    assert failed["error"].str.len().min() > 20  # a reason, not a bare flag
    parts = read_parts(tmp_path / "job")
    parts["name"] = parts["path"].map(lambda p: Path(p).stem)
    assert set(parts["name"]) == set(works)
    columns = [c for c in parts.columns if c.startswith("s") and c[1:].isdigit()]
    scores = parts[columns].to_numpy(dtype=float)
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    for name, seconds in works.items():
        windows = parts[parts["name"] == name]
        assert windows["t_start_s"].min() == 0.0
        assert windows["t_end_s"].max() >= seconds - 1e-3, name  # the whole file is covered
    submission = pd.read_csv(tmp_path / "job" / "submission.csv")
    assert len(submission) == len(works) and np.isfinite(submission[columns].to_numpy()).all()
    poisoned = {Path(str(w.message).split(": holds")[0]).stem for w in caught if "NaN or infinite" in str(w.message)}
    assert poisoned == {"nan_inf_float", "all_nan_float"}


def test_odd_files_decode_to_finite_samples_of_the_asked_length(tmp_path):
    works, refused = odd_archive(tmp_path / "archive")
    for name, seconds in works.items():
        path = next((tmp_path / "archive").glob(f"{name}.*"))
        assert probe_audio(path).duration_s == pytest.approx(seconds, abs=1e-3), name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            samples = load_audio(path, sample_rate_hz=32000, duration_s=5.0)
        assert samples.shape == (160000,) and samples.dtype == np.float32 and np.isfinite(samples).all(), name
    for name in refused:
        path = next((tmp_path / "archive").glob(f"{name}.*"))
        with pytest.raises(AudioError, match=name):
            load_audio(path, sample_rate_hz=32000)
