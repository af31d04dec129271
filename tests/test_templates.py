"""Template matching: planted calls are found at the right time, other sounds are not, bad templates are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from skimage.feature import match_template
from typer.testing import CliRunner

from dawnchorus.cli import app
from dawnchorus.errors import InputError
from dawnchorus.templates import (
    CANDIDATE_COLUMNS,
    HOP_SAMPLES,
    Template,
    flatten,
    log_spectrogram,
    match_directory,
    match_recording,
    normalized_cross_correlation,
    pick_peaks,
    read_templates,
    template_patches,
)

from conftest import LABEL_HEADER

CHIRP = {"f_start_hz": 2000.0, "f_stop_hz": 4000.0, "duration_s": 0.3}
TEMPLATE_BOX = {"t_min_s": 1.0, "t_max_s": 1.3, "f_min_hz": 1800.0, "f_max_hz": 4200.0}


def write_scene(path: Path, *, calls: list[tuple[float, float, float]], sample_rate_hz: int = 48000, duration_s: float = 6.0,
                gain: float = 1.0, tone_hz: float | None = None, seed: int = 0) -> Path:
    """Noise with linear chirps (start s, f_start Hz, f_stop Hz), each 0.3 s long with a Hann envelope."""
    rng = np.random.default_rng(seed)
    signal = 0.002 * rng.standard_normal(int(round(duration_s * sample_rate_hz)))
    t = np.arange(int(round(CHIRP["duration_s"] * sample_rate_hz))) / sample_rate_hz
    for start_s, f_start_hz, f_stop_hz in calls:
        sweep_hz_per_s = (f_stop_hz - f_start_hz) / CHIRP["duration_s"]
        chirp = 0.5 * np.hanning(t.size) * np.sin(2 * np.pi * (f_start_hz * t + 0.5 * sweep_hz_per_s * t**2))
        first = int(round(start_s * sample_rate_hz))
        signal[first:first + t.size] += chirp
    if tone_hz is not None:  # a steady hum inside the template's band
        signal += 0.3 * np.sin(2 * np.pi * tone_hz * np.arange(signal.size) / sample_rate_hz)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (gain * signal).astype(np.float32), sample_rate_hz, subtype="FLOAT" if path.suffix == ".wav" else "PCM_24")
    return path


def chirp_at(start_s: float, shift_hz: float = 0.0) -> tuple[float, float, float]:
    return start_s, CHIRP["f_start_hz"] + shift_hz, CHIRP["f_stop_hz"] + shift_hz


@pytest.fixture
def scenes(tmp_path: Path) -> Path:
    """ref: the template's call at 1.0 s; target: the call at 2.0 and 4.5 s, the same call 3 kHz higher at 3.2 s."""
    audio = tmp_path / "audio"
    write_scene(audio / "ref.flac", calls=[chirp_at(1.0)], seed=1)
    write_scene(audio / "target.flac", calls=[chirp_at(2.0), chirp_at(3.2, shift_hz=3000.0), chirp_at(4.5)], seed=2)
    return audio


def template(**changes) -> Template:
    fields = {"recording_id": "ref", "species_id": 3, "songtype_id": 1, **TEMPLATE_BOX, "template_id": "chirp"}
    return Template(**{**fields, **changes})


def hop_s(sample_rate_hz: int = 48000) -> float:
    return HOP_SAMPLES / sample_rate_hz


def test_planted_calls_are_found_at_the_right_time_and_a_different_band_is_not(scenes):
    patches = template_patches([template()], audio_dir=scenes)
    found = match_recording(scenes / "target.flac", patches=patches)
    strong = sorted(c.t_min_s for c in found if c.score > 0.5)
    assert strong == pytest.approx([2.0, 4.5], abs=hop_s())
    assert all(c.score > 0.9 for c in found if c.score > 0.5)
    assert not [c for c in found if abs(c.t_min_s - 3.2) < 0.2], "the call shifted by 3 kHz must not match"
    best = found[0]
    assert (best.recording_id, best.species_id, best.songtype_id, best.template_id) == ("target", 3, 1, "chirp")
    assert (best.f_min_hz, best.f_max_hz) == (1800.0, 4200.0)
    assert best.t_max_s - best.t_min_s == pytest.approx(0.3)


def test_the_template_matches_itself_with_score_one(scenes):
    found = match_recording(scenes / "ref.flac", patches=template_patches([template()], audio_dir=scenes), top_n=1)
    assert found[0].t_min_s == pytest.approx(1.0, abs=hop_s()) and found[0].score == pytest.approx(1.0, abs=1e-6)


def test_ncc_equals_skimage_and_ignores_gain_and_offset():
    rng = np.random.default_rng(0)
    band, patch = rng.standard_normal((12, 300)), rng.standard_normal((12, 20))
    ours = normalized_cross_correlation(band, patch)
    assert ours == pytest.approx(match_template(band, patch)[0], abs=1e-6)
    assert normalized_cross_correlation(5.0 * band + 3.0, 0.1 * patch - 1.0) == pytest.approx(ours, abs=1e-9)


def test_a_quieter_recording_gives_the_same_scores(tmp_path):
    write_scene(tmp_path / "ref.wav", calls=[chirp_at(1.0)], seed=1)
    write_scene(tmp_path / "loud.wav", calls=[chirp_at(2.0)], seed=2)
    write_scene(tmp_path / "quiet.wav", calls=[chirp_at(2.0)], seed=2, gain=0.05)
    patches = template_patches([template()], audio_dir=tmp_path)
    loud = match_recording(tmp_path / "loud.wav", patches=patches)
    quiet = match_recording(tmp_path / "quiet.wav", patches=patches)
    assert [(c.t_min_s, round(c.score, 4)) for c in loud] == [(c.t_min_s, round(c.score, 4)) for c in quiet]


def test_flattening_removes_a_constant_band(tmp_path):
    rng = np.random.default_rng(0)
    spectrogram = rng.standard_normal((8, 100))
    with_band = spectrogram + np.linspace(0, 40, 8)[:, None]  # every row raised by its own constant
    assert flatten(with_band) == pytest.approx(flatten(spectrogram))
    hum = flatten(log_spectrogram(np.sin(2 * np.pi * 3000 * np.arange(48000) / 48000)))
    assert np.abs(hum[32]).max() < 1e-3  # 3000 Hz is row 32: a steady tone leaves nothing
    # a steady hum inside the band must not hide the planted call
    write_scene(tmp_path / "ref.flac", calls=[chirp_at(1.0)], seed=1)
    write_scene(tmp_path / "hum.flac", calls=[chirp_at(2.0)], seed=2, tone_hz=3000.0)
    found = match_recording(tmp_path / "hum.flac", patches=template_patches([template()], audio_dir=tmp_path), top_n=1)
    assert found[0].t_min_s == pytest.approx(2.0, abs=hop_s()) and found[0].score > 0.8


def test_peaks_are_at_least_half_a_template_apart_and_strongest_first():
    scores = np.zeros(60)
    scores[[10, 13, 30, 41]] = [0.5, 0.9, 0.3, 0.05]
    assert list(pick_peaks(scores, threshold=0.1, min_distance=5)) == [13, 30]
    assert list(pick_peaks(scores, threshold=0.1, min_distance=2)) == [13, 10, 30]
    edge = np.linspace(1.0, 0.0, 10)  # the best offset is the very first one
    assert list(pick_peaks(edge, threshold=0.1, min_distance=3)) == [0]


def test_candidates_of_one_template_keep_half_a_template_apart(scenes):
    patches = template_patches([template()], audio_dir=scenes)
    times = sorted(c.t_min_s for c in match_recording(scenes / "target.flac", patches=patches, threshold=-1.0))
    assert len(times) > 5 and min(np.diff(times)) >= 0.15 - hop_s()


def test_top_n_keeps_the_best_per_template_and_recording(scenes):
    patches = template_patches([template(), template(template_id="again")], audio_dir=scenes)
    found = match_recording(scenes / "target.flac", patches=patches, top_n=1)
    assert sorted(c.template_id for c in found) == ["again", "chirp"]
    assert all(c.score > 0.9 for c in found)


def test_a_44k_recording_is_resampled_to_the_48k_template(tmp_path):
    write_scene(tmp_path / "ref.flac", calls=[chirp_at(1.0)], seed=1)
    write_scene(tmp_path / "target.flac", calls=[chirp_at(2.5)], seed=2, sample_rate_hz=44100)
    patches = template_patches([template()], audio_dir=tmp_path)
    assert patches[0].sample_rate_hz == 48000
    found = match_recording(tmp_path / "target.flac", patches=patches, top_n=1)
    assert found[0].t_min_s == pytest.approx(2.5, abs=hop_s()) and found[0].score > 0.9


def write_template_csv(path: Path, rows: list[str]) -> Path:
    path.write_text(LABEL_HEADER + "".join(row + "\n" for row in rows))
    return path


def test_cli_writes_the_candidates_table(scenes, tmp_path):
    csv = write_template_csv(tmp_path / "templates.csv", ["ref,3,1,1.0,1800,1.3,4200"])
    out = tmp_path / "out" / "candidates.csv"
    result = CliRunner().invoke(app, ["match", "--templates", str(csv), "--audio", str(scenes), "--out", str(out),
                                      "--top-n", "2", "--workers", "2"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert tuple(table.columns) == CANDIDATE_COLUMNS == (
        "recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max", "score", "template_id")
    target = table[table.recording_id == "target"]
    assert sorted(target.t_min) == pytest.approx([2.0, 4.5], abs=hop_s())
    assert set(table.recording_id) == {"ref", "target"} and len(table) <= 4
    assert (table.template_id == "ref@1s").all()


def test_template_ids_come_from_the_csv_when_given(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max,template_id\nref,3,1,1,1800,1.3,4200,my call\n")
    (only,) = read_templates(csv)
    assert only.template_id == "my call" and only.source == f"{csv} line 2"
    same_start = write_template_csv(tmp_path / "same.csv", ["ref,3,1,1.0,1800,1.3,4200", "ref,3,1,1.0,5000,1.3,7000"])
    assert [t.name for t in read_templates(same_start)] == ["ref@1s#line2", "ref@1s#line3"]


def test_bad_templates_are_named_by_csv_line(scenes, tmp_path):
    csv = write_template_csv(tmp_path / "templates.csv", [
        "ref,3,1,1.0,1800,1.3,4200",  # line 2: fine
        "ref,3,1,5.5,1800,7.5,4200",  # line 3: ends after the 6 s recording
        "ref,3,1,1.0,1800,1.3,30000",  # line 4: above the 24 kHz Nyquist frequency
        "nowhere,3,1,1.0,1800,1.3,4200",  # line 5: no audio
        "ref,3,1,1.0,1800,1.002,4200",  # line 6: shorter than a spectrogram hop
    ])
    with pytest.raises(InputError) as caught:
        match_directory(templates=csv, audio_dir=scenes, workers=1)
    message = str(caught.value)
    assert "line 2" not in message
    assert f"{csv} line 3: box 5.5..7.5 s lies outside recording 'ref'" in message
    assert f"{csv} line 4: f_max 30000.0 Hz is above the Nyquist frequency (24000 Hz)" in message
    assert f"{csv} line 5: recording 'nowhere' has no audio file under {scenes}" in message
    assert f"{csv} line 6: box lasts 0.0020 s, shorter than two spectrogram hops" in message


def test_zero_length_boxes_are_refused(scenes, tmp_path):
    csv = write_template_csv(tmp_path / "templates.csv", ["ref,3,1,1.0,1800,1.0,4200"])
    with pytest.raises(InputError, match=r"line 2: t_min \(1.0\) must be less than t_max \(1.0\)"):
        read_templates(csv)
    with pytest.raises(InputError, match="template chirp: empty box"):
        template_patches([template(t_max_s=1.0)], audio_dir=scenes)


def test_cli_reports_a_bad_template_without_traceback(scenes, tmp_path):
    csv = write_template_csv(tmp_path / "templates.csv", ["nowhere,3,1,1.0,1800,1.3,4200"])
    result = CliRunner().invoke(app, ["match", "--templates", str(csv), "--audio", str(scenes), "--out", str(tmp_path / "c.csv")])
    assert result.exit_code == 2 and "line 2: recording 'nowhere' has no audio file" in result.output
    assert "Traceback" not in result.output


def test_unreadable_recordings_are_skipped_with_a_warning(scenes):
    (scenes / "broken.flac").write_bytes(b"not audio at all")
    with pytest.warns(UserWarning, match=r"skipped unreadable recording .*broken\.flac"):
        table = match_directory(templates=[template()], audio_dir=scenes, top_n=1, workers=1)
    assert set(table.recording_id) == {"ref", "target"}


def test_recording_ids_limit_the_search(scenes):
    table = match_directory(templates=[template()], audio_dir=scenes, recording_ids=["target"], top_n=1, workers=1)
    assert list(table.recording_id) == ["target"]
    with pytest.raises(InputError, match="no audio for recording"):
        match_directory(templates=[template()], audio_dir=scenes, recording_ids=["missing"], workers=1)
