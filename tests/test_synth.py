"""Tests of the synthetic RFCx-style corpus generator (dawnchorus.synth)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy.signal import spectrogram

from dawnchorus.errors import InputError
from dawnchorus.synth import SynthConfig, generate_corpus
from dawnchorus.synth.calls import species_models
from dawnchorus.synth.config import load_species
from dawnchorus.synth.plan import sample_presence, schedule_species

BOX_HEADER = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max"
EVENT_HEADER = "split,recording_id,species_id,songtype_id,kind,t_min,f_min,t_max,f_max,snr_db"
SMALL = dict(n_train=6, n_test=4, duration_s=10.0, seed=3, alt_rate_fraction=0.5)
CSV_FILES = ["train_tp.csv", "train_fp.csv", "sample_submission.csv", "species.csv",
             "truth/test_labels.csv", "truth/events.csv"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus_a")
    generate_corpus(out_dir=out, config=SynthConfig(**SMALL, workers=1))
    return out


@pytest.fixture(scope="module")
def corpus_two_workers(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus_b")
    generate_corpus(out_dir=out, config=SynthConfig(**SMALL, workers=2))
    return out


def _rates(root: Path) -> dict[str, int]:
    return {p.stem: sf.info(str(p)).samplerate for split in ("train", "test") for p in (root / split).glob("*.flac")}


def test_layout_and_headers(corpus):
    assert (corpus / "train_tp.csv").read_text().splitlines()[0] == BOX_HEADER
    assert (corpus / "train_fp.csv").read_text().splitlines()[0] == BOX_HEADER
    assert (corpus / "truth/events.csv").read_text().splitlines()[0] == EVENT_HEADER
    cols = ["recording_id"] + [f"s{i}" for i in range(24)]
    sub = pd.read_csv(corpus / "sample_submission.csv", dtype={"recording_id": str})
    labels = pd.read_csv(corpus / "truth/test_labels.csv", dtype={"recording_id": str})
    assert list(sub.columns) == cols and list(labels.columns) == cols
    assert (sub.drop(columns="recording_id").to_numpy() == 0).all()
    train = sorted(p.stem for p in (corpus / "train").glob("*.flac"))
    test = sorted(p.stem for p in (corpus / "test").glob("*.flac"))
    assert len(train) == 6 and len(test) == 4 and not set(train) & set(test)
    assert sorted(sub["recording_id"]) == test
    assert all(len(r) == 9 and all(c in "0123456789abcdef" for c in r) for r in train + test)
    species = pd.read_csv(corpus / "species.csv", dtype={"songtype_ids": str})
    assert list(species.columns) == ["species_id", "scientific_name", "songtype_ids"]
    songtypes = dict(zip(species["species_id"], species["songtype_ids"]))
    assert songtypes[17] == "1;4" and songtypes[23] == "1;4" and songtypes[3] == "1"
    config = SynthConfig.from_json(corpus / "synth_config.json")
    assert config == SynthConfig(**SMALL, workers=1)
    json.loads((corpus / "synth_config.json").read_text())


def test_flac_format_and_both_rates(corpus):
    rates = _rates(corpus)
    assert set(rates.values()) == {48000, 44100}
    for split in ("train", "test"):
        for p in (corpus / split).glob("*.flac"):
            info = sf.info(str(p))
            assert info.format == "FLAC" and info.subtype == "PCM_16" and info.channels == 1
            assert info.frames == round(10.0 * info.samplerate)


def test_deterministic_across_workers(corpus, corpus_two_workers):
    for name in CSV_FILES:
        assert (corpus / name).read_bytes() == (corpus_two_workers / name).read_bytes(), name
    for split in ("train", "test"):
        for p in (corpus / split).glob("*.flac"):
            a, _ = sf.read(str(p), dtype="int16")
            b, _ = sf.read(str(corpus_two_workers / split / p.name), dtype="int16")
            assert np.array_equal(a, b), p.name


def test_different_seed_differs(corpus, tmp_path):
    generate_corpus(out_dir=tmp_path, config=SynthConfig(**{**SMALL, "seed": 4, "n_train": 2, "n_test": 1}))
    assert not set(_rates(corpus)) & set(_rates(tmp_path))
    assert (tmp_path / "truth/events.csv").read_bytes() != (corpus / "truth/events.csv").read_bytes()


def test_boxes_inside_duration_and_below_nyquist(corpus):
    rates = _rates(corpus)
    for name in ("train_tp.csv", "train_fp.csv", "truth/events.csv"):
        df = pd.read_csv(corpus / name, dtype={"recording_id": str})
        assert len(df) > 0, name
        nyq = df["recording_id"].map(rates) / 2
        assert (df["t_min"] >= 0).all() and (df["t_max"] <= 10.0).all() and (df["t_min"] < df["t_max"]).all()
        assert (df["f_min"] > 0).all() and (df["f_min"] < df["f_max"]).all() and (df["f_max"] < nyq).all()


def test_tp_boxes_sit_on_calls(corpus):
    tp = pd.read_csv(corpus / "train_tp.csv", dtype={"recording_id": str})
    ev = pd.read_csv(corpus / "truth/events.csv", dtype={"recording_id": str})
    calls = ev[ev["kind"] == "call"]
    gains = []
    for row in tp.itertuples():
        same = calls[(calls.recording_id == row.recording_id) & (calls.species_id == row.species_id)
                     & (calls.songtype_id == row.songtype_id)]
        assert (np.isclose(same.t_min, row.t_min) & np.isclose(same.f_max, row.f_max)).any()
        audio, sr = sf.read(str(corpus / "train" / f"{row.recording_id}.flac"), dtype="float32")
        f, t, s = spectrogram(audio, fs=sr, nperseg=512, noverlap=256)
        band = s[(f >= row.f_min) & (f <= row.f_max)].mean(axis=0)
        inside = band[(t >= row.t_min) & (t <= row.t_max)].mean()
        gains.append(10 * np.log10(inside / np.median(band)))
    assert len(gains) >= 6
    assert np.mean(gains) > 3.0


def test_fp_boxes_hold_no_call_of_their_species(corpus):
    fp = pd.read_csv(corpus / "train_fp.csv", dtype={"recording_id": str})
    tp = pd.read_csv(corpus / "train_tp.csv", dtype={"recording_id": str})
    ev = pd.read_csv(corpus / "truth/events.csv", dtype={"recording_id": str})
    calls = ev[ev["kind"] == "call"]
    assert len(fp) > len(tp) > 0
    for row in fp.itertuples():
        own = calls[(calls.recording_id == row.recording_id) & (calls.species_id == row.species_id)]
        assert not ((own.t_min < row.t_max) & (own.t_max > row.t_min)).any(), row
        # something sits under the box: a distractor of the species or another sound in its band
        here = ev[(ev.recording_id == row.recording_id) & (ev.t_min < row.t_max) & (ev.t_max > row.t_min)]
        assert ((here.f_min < row.f_max) & (here.f_max > row.f_min)).any(), row


def test_test_labels_agree_with_events(corpus):
    labels = pd.read_csv(corpus / "truth/test_labels.csv", dtype={"recording_id": str}).set_index("recording_id")
    ev = pd.read_csv(corpus / "truth/events.csv", dtype={"recording_id": str})
    calls = ev[(ev["split"] == "test") & (ev["kind"] == "call")]
    expected = pd.DataFrame(0, index=labels.index, columns=labels.columns)
    for rid, sid in calls[["recording_id", "species_id"]].drop_duplicates().itertuples(index=False):
        expected.loc[rid, f"s{sid}"] = 1
    assert (labels.to_numpy() == expected.to_numpy()).all()
    assert (labels.sum(axis=1) >= 1).all()
    assert set(ev["kind"]) == {"call", "distractor"}


def test_presence_is_unequal():
    models = species_models(load_species(None))
    prev = np.array([m.prevalence for m in models])
    rng = np.random.default_rng(0)
    draws = np.array([sample_presence(prev, rng) for _ in range(4000)])
    freq = draws.mean(axis=0)
    assert freq[3] > 0.8
    assert 2.0 < draws.sum(axis=1).mean() < 4.0
    assert (freq < 0.05).sum() >= 8
    assert draws.any(axis=1).all()


def test_song_types_of_species_17_and_23(tmp_path):
    models = {m.species_id: m for m in species_models(load_species(None))}
    rng = np.random.default_rng(1)
    for sid in (17, 23):
        seen = {e.songtype_id for _ in range(40) for e in schedule_species(
            models[sid], duration=60.0, sr=48000, rng=rng, snr_range=(0.0, 10.0), rate_scale=1.0)}
        assert seen == {1, 4}
    # and through the corpus, with a two-species table using the `prevalence` column
    table = tmp_path / "two.csv"
    table.write_text("species_id,scientific_name,prevalence\n17,Turdus plumbeus,0.5\n23,Spindalis portoricensis,0.5\n")
    generate_corpus(out_dir=tmp_path / "c", config=SynthConfig(
        n_train=8, n_test=2, duration_s=6.0, species_csv=str(table), workers=1, seed=1))
    ev = pd.read_csv(tmp_path / "c/truth/events.csv")
    calls = ev[ev["kind"] == "call"]
    for sid in (17, 23):
        assert set(calls.loc[calls.species_id == sid, "songtype_id"]) == {1, 4}
    assert list(pd.read_csv(tmp_path / "c/sample_submission.csv").columns) == ["recording_id", "s17", "s23"]


@pytest.mark.parametrize("kwargs, words", [
    (dict(n_train=-1), "n_train"),
    (dict(n_test=-5), "n_test"),
    (dict(duration_s=0.0), "duration_s"),
    (dict(duration_s=-3.0), "duration_s"),
    (dict(alt_rate_fraction=1.5), "alt_rate_fraction"),
    (dict(snr_db_range=(10.0, -5.0)), "snr_db_range"),
])
def test_bad_config_raises(kwargs, words):
    with pytest.raises(InputError, match=words):
        SynthConfig(**kwargs)


def test_missing_or_bad_species_csv_raises(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(InputError, match="does not exist"):
        generate_corpus(out_dir=tmp_path / "o", config=SynthConfig(n_train=1, n_test=0, species_csv=str(missing)))
    bad = tmp_path / "bad.csv"
    bad.write_text("species_id,name\n0,a\n")
    with pytest.raises(InputError, match="test_presences_per_1000"):
        generate_corpus(out_dir=tmp_path / "o", config=SynthConfig(n_train=1, n_test=0, species_csv=str(bad)))
