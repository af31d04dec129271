"""The whole job on real field recordings (tests/data/real, see its README): nothing may break on
real audio — 22.05 kHz clips shorter than a window, 12 kHz rainforest backgrounds, real call
times from an HTK label file — from the dataset through training to an archive job's Raven tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from typer.testing import CliRunner

from dawnchorus.cli import app
from dawnchorus.data.annotations import read_htk_segments

from test_train_infer import FAST as TRAIN_FAST

REAL = Path(__file__).parent / "data" / "real"
CURLEW = REAL / "qut-curlew"
FAST = [*TRAIN_FAST, f"augment.background_dir={REAL / 'tfk-audio-environment'}", "augment.background_prob=0.5"]


def call_times(mlf: Path) -> dict[str, tuple[float, float]]:
    return read_htk_segments(mlf, label="CURLEW1")


def real_dataset(root: Path) -> Path:
    """A Kaggle-layout dataset of real clips: curlew calls with their HTK times, currawong calls
    (a whole clip each), and curlew-free clips as curlew FP boxes."""
    (root / "train").mkdir(parents=True)
    times = call_times(CURLEW / "curlew" / "phones.mlf")
    tp, fp = [], []
    for clip in sorted((CURLEW / "curlew").glob("*.wav"))[:3]:
        shutil.copy(clip, root / "train")
        t_min, t_max = times[clip.stem]
        tp.append((clip.stem, 0, 1, t_min, 1200.0, t_max, 4500.0))
    for species, folder in ((1, "currawong"), (0, "no_curlew")):
        for clip in sorted((CURLEW / folder).glob("*.wav")):
            shutil.copy(clip, root / "train")
            box = (clip.stem, species, 1, 0.0, 500.0, sf.info(clip).duration, 5000.0)
            (tp if folder == "currawong" else fp).append(box)
    columns = ["recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max"]
    pd.DataFrame(tp, columns=columns).to_csv(root / "train_tp.csv", index=False)
    pd.DataFrame(fp, columns=columns).to_csv(root / "train_fp.csv", index=False)
    pd.DataFrame({"species_id": [0, 1], "scientific_name": ["Burhinus grallarius", "Strepera graculina"]}).to_csv(
        root / "species.csv", index=False)
    return root


def test_real_clips_train_and_an_archive_of_real_recordings_is_scored(tmp_path):
    assert call_times(CURLEW / "curlew" / "phones.mlf")["HoneymoonBayStBees_20080914-003000_1"] == (0.1625, 1.2074)
    data = real_dataset(tmp_path / "data")
    runner = CliRunner()
    sets = [arg for item in FAST for arg in ("--set", item)]
    trained = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "cpu-small", *sets])
    assert trained.exit_code == 0, trained.output

    # an "archive": a held-out curlew clip (22.05 kHz) and two 12 kHz rainforest clips in site folders
    archive = tmp_path / "archive"
    (archive / "site_a").mkdir(parents=True)
    (archive / "site_b").mkdir()
    shutil.copy(sorted((CURLEW / "curlew").glob("*.wav"))[3], archive / "site_a")
    for clip in sorted((REAL / "tfk-audio-environment").glob("*.wav")):
        shutil.copy(clip, archive / "site_b" / clip.name)
    job = runner.invoke(app, ["predict", "--run", str(tmp_path / "run"), "--audio", str(archive), "--out", str(tmp_path / "job"),
                              "--format", "summary,raven", "--threshold", "0.0"])
    assert job.exit_code == 0, job.output
    summary = pd.read_csv(tmp_path / "job" / "recordings.csv")
    assert set(summary["path"]) == {"site_a/HoneymoonBayStBees_20080914-003000_4.wav", "site_b/1.wav", "site_b/2.wav"}
    assert set(summary["species"]) == {"Burhinus grallarius", "Strepera graculina"}
    assert summary["max_score"].between(0, 1).all() and summary["start_time"].iloc[0] == "2008-09-14T00:30:00"
    tables = sorted((tmp_path / "job").rglob("*.selections.txt"))
    assert {t.relative_to(tmp_path / "job").parts[-2] for t in tables} >= {"site_a", "site_b"}
    raven = pd.concat([pd.read_csv(t, sep="\t") for t in tables])
    assert {"Burhinus grallarius", "Strepera graculina"} <= set(raven["Species"])
    assert (raven["High Freq (Hz)"] <= 8000).all() and (raven["End Time (s)"] > raven["Begin Time (s)"]).all()
    # the curlew band comes from its training boxes; no selection runs past the end of its (short) file
    assert set(raven.loc[raven["Species"] == "Burhinus grallarius", "Low Freq (Hz)"]) == {1200.0}
    durations = {p.name: sf.info(p).duration for p in archive.rglob("*.wav")}
    assert all(end <= durations[name] + 1e-3 for name, end in zip(raven["Begin File"], raven["End Time (s)"]))
