"""Named synthetic worlds: the generator's settings that a detector must not be fitted to.

A *world* is a set of :class:`SynthConfig` fields that changes what the recordings sound like
(call families, variation, SNR, backgrounds, reverberation, distractors), how labels arise
(annotation density, FP boxes) and the test prevalence. Defaults are chosen on
``TUNING_WORLDS``; ``REPORT_WORLDS`` are for reporting only: ``benchmarks/worlds.py`` is the one
script that reads them (a test checks this), so a number measured there was never fitted.

Worlds with ``needs_backgrounds`` mix real soundscapes into the bed and need a folder of them
(``background_dir``), e.g. the permissively licensed field recordings of ``shared/real``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dawnchorus.errors import InputError
from dawnchorus.synth.config import SynthConfig


@dataclass(frozen=True)
class World:
    name: str
    description: str
    settings: dict[str, Any]
    needs_backgrounds: bool = False

    def config(self, *, n_train: int, n_test: int, seed: int, duration_s: float = 60.0, workers: int = 0,
               background_dir: str | Path | None = None) -> SynthConfig:
        """This world's synth config for a corpus of the given size."""
        settings = dict(self.settings)
        if self.needs_backgrounds:
            if background_dir is None:
                raise InputError(f"world {self.name!r} mixes real soundscapes into its recordings: give background_dir "
                                 "(--backgrounds), a folder of real field recordings")
            settings["background_dir"] = str(background_dir)
        return SynthConfig(n_train=n_train, n_test=n_test, seed=seed, duration_s=duration_s, workers=workers, **settings)


_WORLDS = (
    World("reference", "the generator's defaults: the corpus every earlier number came from", {}),
    World("dense-quiet", "busier, quieter choruses: more calls per species, calls down to -8 dB, more insects",
          {"call_rate_scale": 1.6, "snr_db_range": (-8.0, 20.0), "focus_snr_db_range": (0.0, 20.0),
           "insects_per_minute": 2.5}),
    World("sparse-labels", "one TP box per recording, few FP boxes placed anywhere, all 44.1 kHz",
          {"second_tp_prob": 0.0, "background_tp_prob": 0.0, "fp_per_tp": 2.0, "fp_mode": "random",
           "sample_rate_hz": 44100, "alt_rate_fraction": 0.0}),
    World("permuted-prevalence", "test prevalences reassigned to other species; more varied calls",
          {"prevalence_permutation_seed": 3, "call_variation": 1.6, "species_pitch_jitter": 0.08}),
    World("reverberant-real", "real soundscapes mixed into half the beds, reverberant forest, rain",
          {"background_mix_prob": 0.5, "background_level_db_range": (-3.0, 8.0), "reverb_prob": 0.7,
           "reverb_rt60_range_s": (0.3, 1.5), "rain_prob": 0.4}, needs_backgrounds=True),
    World("shifted-calls", "call families moved in pitch, twice the natural variation, 44.1 kHz first",
          {"species_pitch_jitter": 0.2, "call_variation": 2.0, "sample_rate_hz": 44100, "alt_sample_rate_hz": 48000,
           "alt_rate_fraction": 0.3}),
    World("lookalikes", "many close lookalikes and low SNR, wind, permuted prevalence, random FP boxes",
          {"distractors_per_minute": 14.0, "distractor_shift_range": (0.06, 0.18), "snr_db_range": (-8.0, 22.0),
           "wind_prob": 0.7, "prevalence_permutation_seed": 7, "fp_mode": "random", "fp_per_tp": 4.0}),
)
WORLDS: dict[str, World] = {w.name: w for w in _WORLDS}

# Defaults (presets, prior estimation, post-processing) are chosen on these ...
TUNING_WORLDS = ("reference", "dense-quiet", "sparse-labels")
# ... and measured on these, which only benchmarks/worlds.py may read.
REPORT_WORLDS = ("permuted-prevalence", "reverberant-real", "shifted-calls", "lookalikes")


def world(name: str) -> World:
    if name not in WORLDS:
        raise InputError(f"world {name!r} is unknown; choose from {', '.join(WORLDS)}")
    return WORLDS[name]


def world_table() -> list[dict[str, Any]]:
    """One row per world: name, role, description and the settings that differ from the reference."""
    defaults = {f.name: f.default for f in dataclasses.fields(SynthConfig)}
    return [{"world": w.name, "role": "tuning" if w.name in TUNING_WORLDS else "report",
             "description": w.description,
             "settings": {k: v for k, v in w.settings.items() if defaults.get(k) != v}} for w in _WORLDS]
