"""Configuration of the synthetic corpus and loading of the species table."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dawnchorus.errors import InputError

DEFAULT_SPECIES_RESOURCE = "rfcx_species.csv"
FP_MODES = ("lookalike", "random")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a synthetic corpus; the same config and seed give the same files.

    Rates are given per 60 s of audio and scale with ``duration_s``.
    """

    n_train: int = 300
    n_test: int = 200
    seed: int = 0
    duration_s: float = 60.0
    sample_rate_hz: int = 48000
    alt_sample_rate_hz: int = 44100
    alt_rate_fraction: float = 0.10
    species_csv: str | None = None
    workers: int = 0
    # per-call signal-to-noise ratio (dB, see scene.py for the definition)
    snr_db_range: tuple[float, float] = (-5.0, 25.0)
    # the focus species of a train recording is heard more clearly (it was chosen for it)
    focus_snr_db_range: tuple[float, float] = (3.0, 25.0)
    # multiplies every species' nominal calling rate
    call_rate_scale: float = 1.0
    # unlabelled lookalike calls per 60 s (Poisson mean)
    distractors_per_minute: float = 5.0
    # frequency shift of a distractor relative to the species it imitates (fraction, either sign)
    distractor_shift_range: tuple[float, float] = (0.10, 0.30)
    # train labels: TP boxes per train recording and FP boxes per TP box
    second_tp_prob: float = 0.2
    background_tp_prob: float = 0.15
    fp_per_tp: float = 6.0
    # background
    insects_per_minute: float = 1.3
    rain_prob: float = 0.25
    wind_prob: float = 0.35
    # --- the world: what varies between worlds (synth/worlds.py), defaults = the reference world ---
    # reassign the table's prevalences to other species (None keeps the table's)
    prevalence_permutation_seed: int | None = None
    # each species' calls pitch-shifted by a factor in [1/(1+j), 1+j], fixed per species and seed
    species_pitch_jitter: float = 0.0
    # multiplies the natural variation of every rendition (pitch, tempo, slopes, loudness)
    call_variation: float = 1.0
    # share of recordings in reverberant surroundings, and the range of their RT60
    reverb_prob: float = 0.0
    reverb_rt60_range_s: tuple[float, float] = (0.3, 1.2)
    # real soundscapes mixed into the ambient bed: a folder of audio files, the share of
    # recordings that get one, and its level relative to the synthetic bed (dB)
    background_dir: str | None = None
    background_mix_prob: float = 0.0
    background_level_db_range: tuple[float, float] = (-6.0, 6.0)
    # FP boxes: "lookalike" (on a distractor or another sound in the species' band, like a
    # template matcher's false alarms) or "random" (anywhere the species is silent)
    fp_mode: str = "lookalike"

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> InputError:
            return InputError(f"SynthConfig.{field}={getattr(self, field)!r}: {why}")

        for field in ("n_train", "n_test"):
            value = getattr(self, field)
            if not isinstance(value, (int,)) or isinstance(value, bool) or value < 0:
                raise bad(field, "must be an integer >= 0")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise bad("seed", "must be an integer >= 0")
        if not _finite(self.duration_s) or self.duration_s <= 0:
            raise bad("duration_s", "must be a positive number of seconds")
        if self.duration_s < 2.0:
            raise bad("duration_s", "must be at least 2 s so that whole calls fit into a recording")
        for field in ("sample_rate_hz", "alt_sample_rate_hz"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 22050:
                raise bad(field, "must be an integer >= 22050 Hz (calls reach about 10 kHz)")
        if not _finite(self.alt_rate_fraction) or not 0.0 <= self.alt_rate_fraction <= 1.0:
            raise bad("alt_rate_fraction", "must be between 0 and 1")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise bad("workers", "must be an integer >= 0 (0 = one per CPU core)")
        for field in ("snr_db_range", "focus_snr_db_range", "distractor_shift_range", "reverb_rt60_range_s",
                      "background_level_db_range"):
            value = getattr(self, field)
            if (
                not isinstance(value, (tuple, list))
                or len(value) != 2
                or not all(_finite(v) for v in value)
                or value[0] > value[1]
            ):
                raise bad(field, "must be a pair (low, high) of numbers with low <= high")
            object.__setattr__(self, field, (float(value[0]), float(value[1])))
        if not (0.0 <= self.distractor_shift_range[0] and self.distractor_shift_range[1] < 0.9):
            raise bad("distractor_shift_range", "fractions must lie in [0, 0.9)")
        for field in (
            "call_rate_scale",
            "distractors_per_minute",
            "fp_per_tp",
            "insects_per_minute",
            "call_variation",
        ):
            value = getattr(self, field)
            if not _finite(value) or value < 0:
                raise bad(field, "must be a number >= 0")
        for field in ("second_tp_prob", "background_tp_prob", "rain_prob", "wind_prob", "reverb_prob",
                      "background_mix_prob"):
            value = getattr(self, field)
            if not _finite(value) or not 0.0 <= value <= 1.0:
                raise bad(field, "must be a probability between 0 and 1")
        for field in ("species_csv", "background_dir"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, (str, Path)):
                raise bad(field, "must be a path or None")
            if value is not None:
                object.__setattr__(self, field, str(value))
        if self.background_mix_prob > 0 and self.background_dir is None:
            raise bad("background_mix_prob", "needs background_dir, a folder of real soundscape recordings")
        seed = self.prevalence_permutation_seed
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise bad("prevalence_permutation_seed", "must be an integer >= 0 or None")
        if not _finite(self.species_pitch_jitter) or not 0.0 <= self.species_pitch_jitter <= 0.5:
            raise bad("species_pitch_jitter", "must lie in [0, 0.5]")
        if self.call_variation > 4:
            raise bad("call_variation", "must lie in [0, 4] (1 = the natural variation)")
        if self.reverb_rt60_range_s[0] <= 0 or self.reverb_rt60_range_s[1] > 5:
            raise bad("reverb_rt60_range_s", "RT60 values must lie in (0, 5] s")
        if self.fp_mode not in FP_MODES:
            raise bad("fp_mode", f"must be one of {', '.join(FP_MODES)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SynthConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"synth config: unknown field(s) {unknown}; known: {sorted(names)}")
        return cls(**data)

    def world_species(self) -> tuple["SpeciesInfo", ...]:
        """The species table as this world uses it: prevalences permuted when the world asks for it."""
        species = load_species(self.species_csv)
        if self.prevalence_permutation_seed is None:
            return species
        order = np.random.default_rng(np.random.SeedSequence([self.prevalence_permutation_seed, 11])).permutation(len(species))
        return tuple(dataclasses.replace(s, prevalence=species[j].prevalence) for s, j in zip(species, order))

    @classmethod
    def from_json(cls, path: str | Path) -> "SynthConfig":
        """Read a ``synth_config.json`` written by :func:`generate_corpus`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: cannot read synth config JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InputError(f"{path}: synth config must be a JSON object")
        return cls.from_dict(data)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SpeciesInfo:
    species_id: int
    scientific_name: str
    taxon: str  # "frog", "bird" or "" when unknown
    prevalence: float  # probability of presence in a test recording


def load_species(species_csv: str | None) -> tuple[SpeciesInfo, ...]:
    """Read the species table (packaged RFCx table when ``species_csv`` is None)."""
    if species_csv is None:
        source = f"dawnchorus.resources/{DEFAULT_SPECIES_RESOURCE}"
        text = resources.files("dawnchorus.resources").joinpath(DEFAULT_SPECIES_RESOURCE).read_text()
    else:
        source = str(species_csv)
        path = Path(species_csv)
        if not path.is_file():
            raise InputError(f"species table {source!r} does not exist; pass an existing CSV or None")
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError(f"species table {source!r} cannot be read: {exc}") from exc
    try:
        table = pd.read_csv(io.StringIO(text))
    except Exception as exc:  # pandas raises several parser error types
        raise InputError(f"species table {source!r} is not a readable CSV: {exc}") from exc
    if "species_id" not in table.columns:
        raise InputError(f"species table {source!r}: missing column 'species_id'")
    if "test_presences_per_1000" in table.columns:
        prevalence = pd.to_numeric(table["test_presences_per_1000"], errors="coerce") / 1000.0
    elif "prevalence" in table.columns:
        prevalence = pd.to_numeric(table["prevalence"], errors="coerce")
    else:
        raise InputError(
            f"species table {source!r}: needs a column 'test_presences_per_1000' "
            "(presences per 1000 test recordings) or 'prevalence' (fraction 0..1)"
        )
    if len(table) == 0:
        raise InputError(f"species table {source!r} has no rows")
    ids = pd.to_numeric(table["species_id"], errors="coerce")
    if ids.isna().any() or (ids < 0).any() or (ids % 1 != 0).any():
        raise InputError(f"species table {source!r}: species_id must be integers >= 0")
    if ids.duplicated().any():
        dups = sorted(set(ids[ids.duplicated()].astype(int)))
        raise InputError(f"species table {source!r}: duplicated species_id {dups}")
    if prevalence.isna().any() or (prevalence < 0).any() or (prevalence > 1).any():
        raise InputError(f"species table {source!r}: prevalence values must lie in [0, 1]")
    names = table["scientific_name"] if "scientific_name" in table.columns else ids.map(lambda i: f"species {int(i)}")
    taxa = table["taxon"] if "taxon" in table.columns else pd.Series([""] * len(table))
    out = [
        SpeciesInfo(int(i), str(n), str(t).strip().lower() if isinstance(t, str) else "", float(p))
        for i, n, t, p in zip(ids, names, taxa, prevalence)
    ]
    return tuple(sorted(out, key=lambda s: s.species_id))
