"""The batch engine on a recorder archive: listing, chunked reading, failures, resume, settings."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dawnchorus.batch.engine import plan_chunks, read_parts, run_job
from dawnchorus.batch.manifest import list_archive
from dawnchorus.batch.outputs import make_writers
from dawnchorus.batch.scoring import WindowChunks
from dawnchorus.data.species import SpeciesTable
from dawnchorus.errors import InputError

RATE = 16000


class EnergyScorer:
    """A deterministic stand-in for a detector: per window, the power below and above 2 kHz."""

    columns = ["s0", "s1"]

    def __init__(self, *, window_s: float = 1.5, hop_s: float = 1.0, delay_s: float = 0.0, label: str = "energy-v1"):
        self.sample_rate_hz, self.window_s, self.hop_s, self.batch_size = RATE, window_s, hop_s, 8
        self.delay_s, self.label = delay_s, label

    def score(self, windows: np.ndarray) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        spectrum = np.abs(np.fft.rfft(windows, axis=1)) ** 2
        split = spectrum.shape[1] * 2000 // (RATE // 2)
        low, high = spectrum[:, :split].sum(axis=1), spectrum[:, split:].sum(axis=1)
        total = low + high + 1e-9
        mean_square = total / windows.shape[1] ** 2  # Parseval
        return np.stack([low / total, np.minimum(1.0, 10 * mean_square)], axis=1).astype(np.float32)

    def fingerprint(self) -> dict:
        return {"detector": self.label}


SPECIES = SpeciesTable((0, 1), ("Eleutherodactylus coqui", "s1"), (None, None))


def tone(path: Path, *, rate: int, duration_s: float, freq_hz: float = 1000.0, channels: int = 1, fmt=None, subtype=None,
         seed: int = 0) -> Path:
    t = np.arange(int(round(rate * duration_s))) / rate
    signal_ = 0.3 * np.sin(2 * np.pi * freq_hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
    signal_ += 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    if channels == 2:  # right channel silent: mixing down halves the tone, --channel 1 hears nothing
        signal_ = np.stack([signal_, np.zeros_like(signal_)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), signal_.astype(np.float32), rate, format=fmt, subtype=subtype)
    return path


def audiomoth_tree(root: Path, *, long_s: float = 7200.0) -> tuple[Path, list[str], list[str]]:
    """Two sites with the same file names, nested dates, MP3, OGG, stereo, 24-bit, a long file,
    three corrupt files, a linked site folder, a link loop and a config file. Returns
    (archive, readable relative paths, corrupt relative paths)."""
    archive = root / "archive"
    tone(archive / "siteA/20240401/20240401_060000.WAV", rate=48000, duration_s=5)
    tone(archive / "siteB/20240401/20240401_060000.WAV", rate=48000, duration_s=6, freq_hz=3000)
    tone(archive / "siteA/20240401/20240401_070000.mp3", rate=44100, duration_s=5, fmt="MP3", subtype="MPEG_LAYER_III")
    tone(archive / "siteB/20240402/20240402_060000.ogg", rate=44100, duration_s=5, fmt="OGG", subtype="VORBIS")
    tone(archive / "siteA/20240402/20240402_060000.WAV", rate=48000, duration_s=4, channels=2)
    tone(archive / "siteB/20240402/20240402_070000.WAV", rate=48000, duration_s=4, subtype="PCM_24")
    tone(archive / "siteB/20240403/20240403_000000.WAV", rate=8000, duration_s=long_s, subtype="PCM_16")
    tone(root / "nas/siteC/20240401/20240401_050000.flac", rate=32000, duration_s=3)
    os.symlink(root / "nas/siteC", archive / "siteC")
    os.symlink(archive, archive / "siteA" / "loop")  # a loop: must be walked once
    (archive / "siteA/20240401/20240401_080000.WAV").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")  # flat battery
    (archive / "siteB/20240401/20240401_080000.flac").write_bytes(b"")
    (archive / "siteB/20240401/20240401_090000.m4a").write_bytes(os.urandom(64))
    (archive / "siteA/CONFIG.TXT").write_text("Device ID: 24F319055FE58D4A\n")
    readable = ["siteA/20240401/20240401_060000.WAV", "siteA/20240401/20240401_070000.mp3",
                "siteA/20240402/20240402_060000.WAV", "siteB/20240401/20240401_060000.WAV",
                "siteB/20240402/20240402_060000.ogg", "siteB/20240402/20240402_070000.WAV",
                "siteB/20240403/20240403_000000.WAV", "siteC/20240401/20240401_050000.flac"]
    corrupt = ["siteA/20240401/20240401_080000.WAV", "siteB/20240401/20240401_080000.flac",
               "siteB/20240401/20240401_090000.m4a"]
    return archive, readable, corrupt


def writers(out_dir: Path, archive: Path, formats=("submission", "summary", "raven", "raven-combined", "audacity", "birdnet")):
    return lambda: make_writers(formats=list(formats), out_dir=out_dir, audio_root=archive, species=SPECIES, threshold=0.0,
                                bands={0: (500.0, 2500.0)}, aggregate="max", top_k=3)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return audiomoth_tree(tmp_path_factory.mktemp("tree"))


def test_every_readable_file_once_in_every_output_and_failures_listed(tree, tmp_path):
    archive, readable, corrupt = tree
    out = tmp_path / "job"
    summary = run_job(command="predict", audio_root=archive, out_dir=out, scorer=WindowChunks(EnergyScorer()), settings={},
                      make_outputs=writers(out, archive))
    assert (summary.files, summary.done_now, summary.failed) == (11, 8, 3)
    assert summary.ignored == {".txt": 1} and "3 failed" in str(summary) and "failed.csv" in str(summary)
    ids = [p.rsplit(".", 1)[0] for p in readable]
    assert pd.read_csv(out / "submission.csv")["recording_id"].tolist() == ids
    recordings = pd.read_csv(out / "recordings.csv", keep_default_na=False)
    assert recordings["path"].drop_duplicates().tolist() == readable
    assert set(recordings.loc[recordings.path == readable[0], "site"]) == {"siteA"}
    assert recordings.loc[recordings.path == readable[0], "start_time"].iloc[0] == "2024-04-01T06:00:00"
    long = recordings[recordings.path == "siteB/20240403/20240403_000000.WAV"]
    assert long["duration_s"].iloc[0] == pytest.approx(7200.0)
    raven = sorted(p.relative_to(out / "raven").as_posix() for p in (out / "raven").rglob("*.Table.1.selections.txt"))
    assert raven == sorted(p.rsplit(".", 1)[0] + ".Table.1.selections.txt" for p in readable)
    combined = pd.read_csv(out / "raven" / "detections.selections.txt", sep="\t")
    assert sorted(set(combined["Begin Path"])) == sorted(str(archive / p) for p in readable)
    birdnet = pd.read_csv(out / "detections.birdnet.csv")
    assert sorted(set(birdnet["File"])) == sorted(str(archive / p) for p in readable)
    assert len(list((out / "audacity").rglob("*.txt"))) == len(readable)
    failed = pd.read_csv(out / "failed.csv")
    assert failed["path"].tolist() == corrupt and failed["error"].str.len().min() > 10
    assert "m4a" in failed.loc[2, "error"]
    windows = read_parts(out)
    long_rows = windows[windows.path == "siteB/20240403/20240403_000000.WAV"]
    assert long_rows["t_end_s"].max() == pytest.approx(7200.0)  # times stay absolute within the file
    assert not long_rows.duplicated(["t_start_s"]).any() and len(long_rows) == 7200  # every 1 s, plus one ending at the end


def test_manifest_reuses_unchanged_headers(tree, monkeypatch):
    import dawnchorus.batch.manifest as manifest

    archive, readable, corrupt = tree
    first = list_archive(archive)
    assert [e.path for e in first.entries] == sorted(readable + corrupt)

    def no_probe(path):
        raise AssertionError(f"probed again: {path}")

    monkeypatch.setattr(manifest, "probe_audio", no_probe)
    again = list_archive(archive, previous=first.to_frame())
    assert [e.readable for e in again.entries] == [e.readable for e in first.entries]


def test_chunked_reading_gives_the_whole_file_windows(tmp_path):
    archive = tmp_path / "archive"
    tone(archive / "long.flac", rate=44100, duration_s=31.3, freq_hz=1800)
    results = {}
    for chunk_s in (4.0, 1000.0):
        out = tmp_path / f"chunk{chunk_s:g}"
        run_job(command="predict", audio_root=archive, out_dir=out, scorer=WindowChunks(EnergyScorer(window_s=1.5, hop_s=1.0)),
                settings={}, chunk_s=chunk_s)
        results[chunk_s] = read_parts(out)
    chunked, whole = results[4.0], results[1000.0]
    assert chunked[["t_start_s", "t_end_s"]].equals(whole[["t_start_s", "t_end_s"]])
    assert ((chunked.t_start_s % 4 > 2.5) & (chunked.t_start_s < 28)).sum() >= 5  # windows crossing chunk edges
    np.testing.assert_allclose(chunked[["s0", "s1"]].to_numpy(), whole[["s0", "s1"]].to_numpy(), atol=2e-4)


def test_decoding_processes_give_the_same_results_as_a_thread(tmp_path):
    archive = tmp_path / "archive"
    for i in range(3):
        tone(archive / f"site{i}" / "20240401_060000.WAV", rate=48000, duration_s=5 + i, seed=i)
    parts = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert run_job(command="predict", audio_root=archive, out_dir=out, scorer=WindowChunks(EnergyScorer()), settings={},
                       workers=workers, chunk_s=2.0).done_now == 3
        parts[workers] = read_parts(out)
    pd.testing.assert_frame_equal(parts[1], parts[2])


def test_an_unwritable_job_folder_is_a_clear_error(tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    tone(archive / "a.wav", rate=RATE, duration_s=3)

    real_to_parquet = pd.DataFrame.to_parquet

    def disk_full(self, path, *args, **kwargs):  # the disk fills up once the manifest is written
        if "parts" in str(path):
            raise OSError(28, "No space left on device")
        return real_to_parquet(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    with pytest.raises(InputError, match=r"parts/.*No space left on device.*finished files are kept"):
        run_job(command="predict", audio_root=archive, out_dir=tmp_path / "job", scorer=WindowChunks(EnergyScorer()), settings={})
    assert not list((tmp_path / "job").rglob("*.tmp"))


def test_plan_chunks_cover_the_file_and_overlap():
    plan = plan_chunks(100, chunk=30, overlap=10)
    assert plan == [(0, 30, 40), (30, 60, 70), (60, 90, 100), (90, 100, 100)]
    assert plan_chunks(5, chunk=30, overlap=10) == [(0, 5, 5)]


def test_changed_settings_are_refused_unless_forced(tmp_path):
    archive = tmp_path / "archive"
    tone(archive / "a.wav", rate=RATE, duration_s=3)
    out = tmp_path / "job"
    run_job(command="predict", audio_root=archive, out_dir=out, scorer=WindowChunks(EnergyScorer()), settings={})
    with pytest.raises(InputError, match=r"other settings \(hop_s: 1.0 -> 0.5\).*--force"):
        run_job(command="predict", audio_root=archive, out_dir=out, scorer=WindowChunks(EnergyScorer(hop_s=0.5)), settings={})
    with pytest.raises(InputError, match="other settings.*detector"):
        run_job(command="predict", audio_root=archive, out_dir=out, scorer=WindowChunks(EnergyScorer(label="other")), settings={})
    summary = run_job(command="predict", audio_root=archive, out_dir=out, scorer=WindowChunks(EnergyScorer(hop_s=0.5)),
                      settings={}, force=True)
    assert summary.done_now == 1 and len(read_parts(out)) == 4
    resumed = run_job(command="predict", audio_root=archive, out_dir=out, scorer=WindowChunks(EnergyScorer(hop_s=0.5)), settings={})
    assert (resumed.done_now, resumed.done_before) == (0, 1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not an archive job folder"):
        run_job(command="predict", audio_root=archive, out_dir=tmp_path / "other", scorer=WindowChunks(EnergyScorer()), settings={})


def test_failed_files_are_retried_only_when_asked_and_changed_files_redone(tmp_path):
    archive = tmp_path / "archive"
    tone(archive / "good.wav", rate=RATE, duration_s=3)
    (archive / "bad.wav").write_bytes(b"RIFF....")
    out = tmp_path / "job"
    scorer = WindowChunks(EnergyScorer())
    assert run_job(command="predict", audio_root=archive, out_dir=out, scorer=scorer, settings={}).failed == 1
    again = run_job(command="predict", audio_root=archive, out_dir=out, scorer=scorer, settings={})
    assert (again.done_now, again.done_before, again.failed) == (0, 1, 1)
    retried = run_job(command="predict", audio_root=archive, out_dir=out, scorer=scorer, settings={}, retry_failed=True)
    assert retried.failed == 1
    lines = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    assert [x["status"] for x in lines if x["path"] == "bad.wav"] == ["failed", "failed"]  # tried at the start and on retry
    tone(archive / "bad.wav", rate=RATE, duration_s=2)  # the user repaired it
    fixed = run_job(command="predict", audio_root=archive, out_dir=out, scorer=scorer, settings={})
    assert (fixed.done_now, fixed.failed) == (1, 0)
    assert pd.read_csv(out / "failed.csv").empty


def test_channel_choice_is_applied_and_recorded(tmp_path):
    archive = tmp_path / "archive"
    tone(archive / "stereo.wav", rate=RATE, duration_s=3, channels=2)
    tone(archive / "mono.wav", rate=RATE, duration_s=3)
    energy = {}
    for channel in (None, 0, 1):
        out = tmp_path / f"job{channel}"
        summary = run_job(command="predict", audio_root=archive, out_dir=out, scorer=WindowChunks(EnergyScorer()), settings={},
                          channel=channel)
        job = json.loads((out / "job.json").read_text())
        assert job["fingerprint"]["channel"] == ("mix" if channel is None else channel)
        parts = read_parts(out)
        energy[channel] = parts.loc[parts.path == "stereo.wav", "s1"].mean()
        assert summary.failed == (1 if channel == 1 else 0)  # mono.wav has no channel 1
    assert energy[1] < 0.01 < energy[None] < energy[0]
    assert "channel 1 does not exist" in pd.read_csv(tmp_path / "job1" / "failed.csv")["error"].iloc[0]


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_batch_engine import EnergyScorer, writers
from dawnchorus.batch.engine import run_job
from dawnchorus.batch.scoring import WindowChunks
archive, out = Path(sys.argv[1]), Path(sys.argv[2])
run_job(command="predict", audio_root=archive, out_dir=out, scorer=WindowChunks(EnergyScorer(delay_s=float(sys.argv[3]))),
        settings={{}}, make_outputs=writers(out, archive, formats=("submission", "summary", "raven")), chunk_s=2.0)
"""


def test_killed_job_resumes_to_the_uninterrupted_result(tmp_path):
    archive = tmp_path / "archive"
    for i in range(16):
        tone(archive / f"site{i % 2}" / f"2024040{i // 8 + 1}_0{i % 8}0000.WAV", rate=48000, duration_s=4 + i % 3, seed=i)
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent)))
    subprocess.run([sys.executable, str(script), str(archive), str(tmp_path / "whole"), "0"], check=True)
    out = tmp_path / "killed"
    rng = random.Random(15)
    for attempt in range(3):  # killed at a random moment after some files finished, three times over
        process = subprocess.Popen([sys.executable, str(script), str(archive), str(out), "0.02"])
        journal = out / "journal.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and (not journal.is_file() or journal.read_text().count("\n") < 2 + 4 * attempt):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
    subprocess.run([sys.executable, str(script), str(archive), str(out), "0"], check=True)
    whole, resumed = read_parts(tmp_path / "whole"), read_parts(out)
    pd.testing.assert_frame_equal(whole, resumed)
    assert resumed["path"].nunique() == 16 and not resumed.duplicated(["path", "t_start_s"]).any()
    for name in ("submission.csv", "recordings.csv"):
        assert (out / name).read_text() == (tmp_path / "whole" / name).read_text()
    done = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    assert len({x["path"] for x in done if x["status"] == "done"}) == 16
    assert not list(out.rglob("*.tmp"))  # a killed write leaves at most a temporary file, removed or ignored


class CountingScorer(EnergyScorer):
    """EnergyScorer that records the size of every batch it is given."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.batches: list[int] = []

    def score(self, windows: np.ndarray) -> np.ndarray:
        self.batches.append(len(windows))
        return super().score(windows)


class OneChunkAtATime:
    """The same window scorer behind a chunk scorer that cannot take several chunks per call."""

    def __init__(self, scorer):
        self.inner = WindowChunks(scorer)
        self.sample_rate_hz, self.overlap_s, self.step_s = self.inner.sample_rate_hz, self.inner.overlap_s, self.inner.step_s

    def score_chunk(self, samples, **where):
        return self.inner.score_chunk(samples, **where)

    def finish(self, rows):
        return rows

    def fingerprint(self):
        return self.inner.fingerprint()


def test_windows_of_short_files_are_scored_together_in_full_batches(tmp_path):
    archive = tmp_path / "clips"
    for i in range(30):  # 30 clips of 1-3 windows each, one unreadable among them
        tone(archive / f"clip{i:02d}.wav", rate=RATE, duration_s=1.0 + (i % 3), freq_hz=500 + 50 * i, seed=i)
    (archive / "clip15.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    grouped_scorer, single_scorer = CountingScorer(), CountingScorer()
    grouped = run_job(command="predict", audio_root=archive, out_dir=tmp_path / "grouped", scorer=WindowChunks(grouped_scorer),
                      settings={})
    single = run_job(command="predict", audio_root=archive, out_dir=tmp_path / "single", scorer=OneChunkAtATime(single_scorer),
                     settings={})
    assert (grouped.done_now, grouped.failed) == (single.done_now, single.failed) == (29, 1)
    pd.testing.assert_frame_equal(read_parts(tmp_path / "grouped"), read_parts(tmp_path / "single"))
    assert sum(grouped_scorer.batches) == sum(single_scorer.batches)  # every window once either way
    assert len(single_scorer.batches) == 29  # one call per file
    assert max(grouped_scorer.batches) == 8 and len(grouped_scorer.batches) <= sum(grouped_scorer.batches) // 8 + 3
    assert "read" in grouped.stages and "writing" in grouped.stages and "windows" in grouped.stages
    assert "time per stage" in str(grouped)
