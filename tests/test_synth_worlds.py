"""Tests of the named synthetic worlds and the world parameters of the generator."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dawnchorus.errors import InputError
from dawnchorus.synth import REPORT_WORLDS, TUNING_WORLDS, WORLDS, SynthConfig, generate_corpus, world
from dawnchorus.synth.calls import nominal_box, species_models
from dawnchorus.synth.config import load_species
from dawnchorus.synth.scene import mix_recording, room_response

REPO = Path(__file__).resolve().parents[1]
REAL_BACKGROUNDS = Path(__file__).parent / "data" / "real" / "tfk-audio-environment"
TINY = dict(n_train=4, n_test=3, seed=2, duration_s=6.0, workers=1)


def test_at_least_six_worlds_split_into_tuning_and_report():
    assert len(WORLDS) >= 6
    assert set(TUNING_WORLDS).isdisjoint(REPORT_WORLDS)
    assert set(TUNING_WORLDS) | set(REPORT_WORLDS) == set(WORLDS)
    assert world("reference").config(n_train=1, n_test=1, seed=0) == SynthConfig(n_train=1, n_test=1, seed=0)
    with pytest.raises(InputError, match="unknown"):
        world("no-such-world")


def test_only_the_worlds_benchmark_reads_the_report_worlds():
    readers = {p.relative_to(REPO).as_posix() for p in [*REPO.glob("benchmarks/*.py"), *REPO.glob("src/**/*.py")]
               if "REPORT_WORLDS" in p.read_text()}
    assert readers == {"benchmarks/worlds.py", "src/dawnchorus/synth/worlds.py", "src/dawnchorus/synth/__init__.py"}
    for path in REPO.glob("benchmarks/*.py"):
        if path.name != "worlds.py":
            assert not any(name in path.read_text() for name in REPORT_WORLDS), path


def test_every_world_makes_a_corpus(tmp_path):
    for name, w in WORLDS.items():
        config = w.config(**TINY, background_dir=REAL_BACKGROUNDS if w.needs_backgrounds else None)
        summary = generate_corpus(out_dir=tmp_path / name, config=config)
        assert summary.n_train == 4 and summary.n_tp >= 4
        prior = pd.read_csv(tmp_path / name / "truth" / "prevalence.csv")
        assert list(prior.columns) == ["species_id", "prevalence"] and prior["prevalence"].between(0, 1).all()


def test_a_world_with_real_backgrounds_needs_a_folder(tmp_path):
    needing = [w for w in WORLDS.values() if w.needs_backgrounds]
    assert needing
    with pytest.raises(InputError, match="background_dir"):
        needing[0].config(**TINY)
    with pytest.raises(InputError, match="not a folder"):
        generate_corpus(out_dir=tmp_path / "x", config=needing[0].config(**TINY, background_dir=tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no audio file"):
        generate_corpus(out_dir=tmp_path / "y", config=needing[0].config(**TINY, background_dir=tmp_path / "empty"))


def test_real_backgrounds_are_mixed_into_the_bed(tmp_path):
    plain = SynthConfig(**TINY)
    mixed = dataclasses.replace(plain, background_dir=str(REAL_BACKGROUNDS), background_mix_prob=1.0,
                                background_level_db_range=(10.0, 10.0))
    generate_corpus(out_dir=tmp_path / "plain", config=plain)
    generate_corpus(out_dir=tmp_path / "mixed", config=mixed)
    # the labels are the same world's; only the sound differs
    assert pd.read_csv(tmp_path / "plain" / "train_tp.csv").equals(pd.read_csv(tmp_path / "mixed" / "train_tp.csv"))
    for path in (tmp_path / "plain" / "test").glob("*.flac"):
        a, _ = sf.read(path)
        b, _ = sf.read(tmp_path / "mixed" / "test" / path.name)
        assert not np.allclose(a, b)


def test_prevalence_permutation_moves_prevalences_between_species():
    table = load_species(None)
    permuted = SynthConfig(n_train=1, n_test=1, prevalence_permutation_seed=3).world_species()
    assert sorted(s.prevalence for s in permuted) == sorted(s.prevalence for s in table)
    assert [s.species_id for s in permuted] == [s.species_id for s in table]
    assert [s.prevalence for s in permuted] != [s.prevalence for s in table]
    assert SynthConfig(n_train=1, n_test=1, prevalence_permutation_seed=3).world_species() == permuted


def test_pitch_jitter_moves_each_species_by_its_own_factor():
    species = load_species(None)
    base = species_models(species)
    moved = species_models(species, pitch_jitter=0.2, seed=1)
    ratios = [nominal_box(m.songs[0][1])[3] / nominal_box(b.songs[0][1])[3] for b, m in zip(base, moved)]
    assert all(1 / 1.2 - 1e-6 <= r <= 1.2 + 1e-6 for r in ratios)
    assert len({round(r, 4) for r in ratios}) > len(ratios) // 2  # not one common shift
    assert moved == species_models(species, pitch_jitter=0.2, seed=1)


def test_reverberation_adds_a_decaying_tail_after_each_call():
    rng = np.random.default_rng(0)
    response = room_response(32000, 0.8, rng)
    energy = np.cumsum(response[::-1] ** 2)[::-1]
    assert response[0] >= 1.0 and energy[len(response) // 2] < 0.01 * energy[1]

    @dataclasses.dataclass
    class Call:
        syllables: list
        onset: float = 0.5
        f_min: float = 1500.0
        f_max: float = 2500.0
        snr_db: float = 40.0

    from dawnchorus.synth.calls import Syllable

    sr = 32000
    bed = np.random.default_rng(1).standard_normal(3 * sr).astype(np.float32) * 1e-3
    call = Call([Syllable(0.0, 0.2, 2000.0, 2000.0)])
    dry = mix_recording(bed, sr, [call], np.random.default_rng(2)).astype(np.float64)
    wet = mix_recording(bed, sr, [call], np.random.default_rng(2), rt60_s=1.0).astype(np.float64)
    after, before = slice(int(0.8 * sr), int(1.2 * sr)), slice(0, int(0.4 * sr))  # 0.1-0.5 s after the call ends

    def tail(x):  # each mix has its own output level: compare to its own bed before the call
        return np.mean(x[after] ** 2) / np.mean(x[before] ** 2)

    assert tail(dry) < 1.5 and tail(wet) > 3.0


def test_random_fp_boxes_avoid_their_species_calls(tmp_path):
    config = SynthConfig(**{**TINY, "n_train": 8}, fp_mode="random")
    generate_corpus(out_dir=tmp_path, config=config)
    fp = pd.read_csv(tmp_path / "train_fp.csv")
    events = pd.read_csv(tmp_path / "truth" / "events.csv")
    calls = events[(events.kind == "call") & (events.split == "train")]
    assert len(fp) > 0
    for box in fp.itertuples():
        own = calls[(calls.recording_id == box.recording_id) & (calls.species_id == box.species_id)]
        assert ((own.t_max <= box.t_min) | (own.t_min >= box.t_max)).all()


@pytest.mark.parametrize("kwargs, words", [
    ({"fp_mode": "everywhere"}, "fp_mode"),
    ({"species_pitch_jitter": 0.9}, "species_pitch_jitter"),
    ({"call_variation": -1}, "call_variation"),
    ({"reverb_prob": 2}, "reverb_prob"),
    ({"reverb_rt60_range_s": (0.0, 1.0)}, "reverb_rt60_range_s"),
    ({"background_mix_prob": 0.5}, "background_dir"),
    ({"prevalence_permutation_seed": -2}, "prevalence_permutation_seed"),
])
def test_bad_world_settings_are_refused_by_name(kwargs, words):
    with pytest.raises(InputError, match=words):
        SynthConfig(n_train=1, n_test=1, **kwargs)


def test_cli_synth_writes_a_named_world(tmp_path):
    from typer.testing import CliRunner

    from dawnchorus.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["synth", "--list-worlds", "--out", str(tmp_path)])
    assert listed.exit_code == 0 and all(name in listed.output for name in WORLDS)
    result = runner.invoke(app, ["synth", "--world", "shifted-calls", "--out", str(tmp_path / "c"), "--n-train", "3",
                                 "--n-test", "2", "--duration-s", "5", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert SynthConfig.from_json(tmp_path / "c" / "synth_config.json") == world("shifted-calls").config(
        n_train=3, n_test=2, seed=0, duration_s=5.0, workers=1)
    missing = runner.invoke(app, ["synth", "--world", "reverberant-real", "--out", str(tmp_path / "d")])
    assert missing.exit_code != 0 and "--backgrounds" in missing.output
