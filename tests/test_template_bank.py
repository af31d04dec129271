"""Template-match features (template_bank) and the templates-linear preset, end to end on tones."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dawnchorus.config import load_any_config
from dawnchorus.embed_runs import load_embedding_run
from dawnchorus.errors import InputError, ValidationError
from dawnchorus.template_bank import BANK_FILE, bank_embedder, build_bank, load_bank, pool_frames, save_bank
from dawnchorus.templates import Template, flatten, log_spectrogram, normalized_cross_correlation

from test_embeddings import RATE, tone_dataset, write_recording  # noqa: F401  (tone_dataset is a fixture)


def _template(recording_id: str, start_s: float, *, f_min_hz=500.0, f_max_hz=3900.0, length_s=0.6, source="t") -> Template:
    return Template(recording_id=recording_id, species_id=0, songtype_id=1, t_min_s=start_s, t_max_s=start_s + length_s,
                    f_min_hz=f_min_hz, f_max_hz=f_max_hz, source=source)


def test_best_match_is_the_template_matchers_ncc_on_each_window(tmp_path):
    write_recording(tmp_path / "a.wav", calls={1: 1.0}, duration_s=4.0, seed=1)
    bank = build_bank([_template("a", 1.0)], audio_dir=tmp_path, sample_rate_hz=RATE, window_s=2.0)
    rng = np.random.default_rng(3)
    windows = (0.1 * rng.standard_normal((3, 2 * RATE))).astype(np.float32)
    got = bank_embedder(bank, window_s=2.0).embed(windows)
    assert got.shape == (3, 1)
    for window, value in zip(windows, got[:, 0]):
        spectrogram = flatten(log_spectrogram(window))
        patch = bank.patches[0]
        expected = normalized_cross_correlation(spectrogram[bank.row_starts[0]: bank.row_starts[0] + patch.shape[0]], patch).max()
        assert value == pytest.approx(expected, abs=1e-4)


def test_a_window_with_the_call_matches_better_than_one_without(tmp_path):
    write_recording(tmp_path / "a.wav", calls={1: 1.0}, duration_s=4.0, seed=1)
    bank = build_bank([_template("a", 1.0)], audio_dir=tmp_path, sample_rate_hz=RATE, window_s=2.0, frame_pool=2)
    write_recording(tmp_path / "b.wav", calls={1: 0.7}, duration_s=4.0, seed=2)  # the same species elsewhere
    import soundfile as sf

    other, _ = sf.read(str(tmp_path / "b.wav"), dtype="float32")
    with_call, without = other[: 2 * RATE], other[2 * RATE: 4 * RATE]
    scores = bank_embedder(bank, window_s=2.0).embed(np.stack([with_call, without]))[:, 0]
    assert scores[0] > 0.5 > scores[1]


def test_bank_saves_and_loads_exactly_and_refuses_other_files(tmp_path):
    write_recording(tmp_path / "a.wav", calls={1: 1.0, 2: 3.0}, duration_s=5.0, seed=1)
    bank = build_bank([_template("a", 1.0), _template("a", 3.0, length_s=0.4)], audio_dir=tmp_path, sample_rate_hz=RATE,
                      window_s=2.0, frame_pool=2)
    loaded = load_bank(save_bank(bank, tmp_path / BANK_FILE))
    assert loaded.digest == bank.digest and loaded.frame_pool == 2 and loaded.templates == bank.templates
    assert all(np.array_equal(a, b) for a, b in zip(loaded.patches, bank.patches))
    assert bank_embedder(loaded, window_s=2.0).name == bank_embedder(bank, window_s=2.0).name
    other = build_bank([_template("a", 1.0)], audio_dir=tmp_path, sample_rate_hz=RATE, window_s=2.0, frame_pool=1)
    assert other.digest != bank.digest  # caches of one bank are never read for another
    (tmp_path / "junk.safetensors").write_bytes(b"not a bank")
    with pytest.raises(InputError, match="junk.safetensors"):
        load_bank(tmp_path / "junk.safetensors")
    with pytest.raises(InputError, match="not found"):
        load_bank(tmp_path / "missing.safetensors")


def test_boxes_are_cut_to_the_rate_and_to_half_a_window(tmp_path):
    write_recording(tmp_path / "a.wav", calls={1: 0.5}, duration_s=4.0, seed=1)
    with pytest.raises(ValidationError, match="above 4000 Hz.*sample_rate_hz"):
        build_bank([_template("a", 0.5, f_min_hz=4500, f_max_hz=6000, source="train_tp.csv box 7")], audio_dir=tmp_path,
                   sample_rate_hz=RATE, window_s=2.0)
    bank = build_bank([_template("a", 0.5, f_max_hz=6000, length_s=3.0)], audio_dir=tmp_path, sample_rate_hz=RATE, window_s=2.0)
    rows, frames = bank.patches[0].shape
    assert bank.templates[0].f_max_hz == RATE / 2 and bank.row_starts[0] + rows == 257  # up to the Nyquist row
    assert frames == int(2.0 * RATE / 256) // 2  # the middle half-window of a 3 s box
    assert pool_frames(np.arange(10.0)[None], 4).tolist() == [[1.5, 5.5]]


def test_templates_preset_trains_predicts_and_estimates_prevalence(tone_dataset, tmp_path):
    from dawnchorus.cli import app

    assert load_any_config("templates-linear").embedder == "templates"
    runner = CliRunner()
    run = tmp_path / "run"
    options = ["--set", "folds=2", "--set", "hop_s=1", "--set", "top_k=1", "--set", "template_window_s=2",
               "--set", f"template_sample_rate_hz={RATE}"]
    result = runner.invoke(app, ["train", "--data", str(tone_dataset), "--out", str(run), "--preset", "templates-linear", *options])
    assert result.exit_code == 0, result.output
    config = load_embedding_run(run)[0]
    assert config.model.startswith("templates-") and config.window_s == 2.0
    assert len(load_bank(run / BANK_FILE)) == 8  # one patch per TP box
    assert "persistence" in json.loads((run / "calibration.json").read_text())
    out = tmp_path / "sub.csv"
    result = runner.invoke(app, ["predict", "--run", str(run), "--audio", str(tone_dataset / "test"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    submission = pd.read_csv(out).set_index("recording_id")
    assert [int(np.argmax(submission.loc[f"tst{i}"].to_numpy())) for i in range(3)] == [0, 1, 2]
    result = runner.invoke(app, ["predict", "--run", str(run), "--audio", str(tone_dataset / "test"), "--out",
                                 str(tmp_path / "est.csv"), "--postprocess"])
    assert result.exit_code == 0 and "estimating the test prevalence" in result.output, result.output
    assert pd.read_csv(tmp_path / "est.csv").shape == (3, 4)
    job = tmp_path / "job"
    result = runner.invoke(app, ["predict", "--run", str(run), "--audio", str(tone_dataset / "test"), "--out", str(job)])
    assert result.exit_code == 0, result.output
    archive = pd.read_csv(job / "submission.csv").set_index("recording_id").sort_index()
    assert np.allclose(archive.loc[submission.index].to_numpy(), submission.to_numpy(), atol=1e-4)  # same windows, same scores
    bad = runner.invoke(app, ["train", "--data", str(tone_dataset), "--out", str(tmp_path / "r2"), "--preset",
                              "templates-linear", "--set", "embedder=perch"])
    assert bad.exit_code == 2 and "embedder='perch'" in bad.output
