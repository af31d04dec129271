"""Fixtures that make small recordings and datasets on the fly (no files are shipped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

LABEL_HEADER = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\n"


def write_tone(path: Path, *, sample_rate_hz: int = 48000, duration_s: float = 2.0, freq_hz: float = 1000.0,
               channels: int = 1, fmt: str | None = None, seed: int = 0) -> Path:
    """A sine plus a little noise, so resampling and cropping have something to preserve."""
    t = np.arange(int(round(duration_s * sample_rate_hz))) / sample_rate_hz
    rng = np.random.default_rng(seed)
    signal = 0.5 * np.sin(2 * np.pi * freq_hz * t) + 0.01 * rng.standard_normal(t.size)
    if channels > 1:
        signal = np.stack([signal] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), signal.astype(np.float32), sample_rate_hz, subtype="PCM_16", format=fmt)
    return path


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A 3-species dataset in the Kaggle layout: 3 train and 2 test recordings of 4 s."""
    root = tmp_path / "data"
    write_tone(root / "train" / "rec_a.flac", freq_hz=1000)
    write_tone(root / "train" / "rec_b.flac", sample_rate_hz=44100, freq_hz=2000, duration_s=4.0)
    write_tone(root / "train" / "rec_c.wav", freq_hz=3000, duration_s=4.0)
    write_tone(root / "test" / "tst_1.flac", freq_hz=1500, duration_s=4.0)
    write_tone(root / "test" / "tst_2.flac", sample_rate_hz=44100, freq_hz=2500, duration_s=4.0)
    (root / "train_tp.csv").write_text(LABEL_HEADER + "rec_a,0,1,0.5,800,1.5,1200\nrec_b,1,1,1.0,1800,2.0,2200\n")
    (root / "train_fp.csv").write_text(LABEL_HEADER + "rec_c,2,1,0.2,2800,1.2,3200\nrec_a,1,1,0.1,900,0.9,1100\n")
    (root / "sample_submission.csv").write_text("recording_id,s0,s1,s2\ntst_1,0,0,0\ntst_2,0,0,0\n")
    return root
