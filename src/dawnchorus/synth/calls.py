"""Parametric call recipes for the synthetic species and their rendering.

A call is a short list of *syllables*. A syllable is a tone (fundamental plus optional harmonics)
or a narrow band of noise whose centre follows a frequency track
``f(u) = f0 + (f1 - f0) * u**curve + bend * sin(pi * u) + vibrato`` for ``u`` from 0 to 1,
shaped by an attack/decay envelope and optional amplitude pulsing (``am`` Hz). Trills, click
trains and phrases are many syllables. Each call is rendered over its own samples only.

Every rendering draws natural variation: fundamental frequency +-8 % (sd 3.5 %), tempo +-15 %,
slope of each syllable, per-syllable amplitude, and for long series a few dropped final notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from dawnchorus.synth.config import SpeciesInfo


@dataclass(frozen=True)
class Syllable:
    t0: float  # start within the call (s)
    dur: float  # duration (s)
    f0: float  # fundamental at the start (Hz)
    f1: float  # fundamental at the end (Hz)
    curve: float = 1.0  # shape of the f0 -> f1 glide (<1 fast first, >1 slow first)
    bend: float = 0.0  # arch added mid-syllable (Hz)
    harm: tuple[float, ...] = ()  # relative amplitudes of harmonics 2, 3, ...
    amp: float = 1.0
    am: float = 0.0  # amplitude pulsing rate (Hz), 0 = none
    sharp: float = 1.0  # exponent of the pulse shape (>1 = narrower pulses)
    noise_bw: float = 0.0  # > 0: a band of noise of this width (Hz) instead of a tone
    vib_rate: float = 0.0
    vib_depth: float = 0.0  # Hz
    attack: float = 0.15  # fraction of the syllable
    decay: float = 0.3


@dataclass(frozen=True)
class CallRecipe:
    name: str
    syllables: tuple[Syllable, ...]
    rate_per_min: float  # nominal calls per minute when present
    bouts: bool = False  # calls come in regular bouts (frogs) rather than scattered
    truncatable: bool = False  # long series may lose a few final notes

    @property
    def duration(self) -> float:
        return max(s.t0 + s.dur for s in self.syllables)


def _tone(t0, dur, f0, f1=None, **kw) -> list[Syllable]:
    return [Syllable(t0, dur, f0, f0 if f1 is None else f1, **kw)]


def _series(t0, n, period, dur, f_start, f_end, *, fm=0.0, amp=(1.0, 1.0), accel=1.0, **kw):
    """``n`` notes; note i sweeps from f to f*(1+fm); period shrinks by factor ``accel`` overall."""
    out, t = [], t0
    for i in range(n):
        u = i / max(n - 1, 1)
        f = f_start + (f_end - f_start) * u
        a = amp[0] + (amp[1] - amp[0]) * u
        out.append(Syllable(t, dur, f, f * (1.0 + fm), amp=a, **kw))
        t += period * (1.0 + (accel - 1.0) * u)
    return out


def _recipe(name, syllables, rate, **kw) -> CallRecipe:
    return CallRecipe(name, tuple(syllables), rate, **kw)


def _base_recipes() -> dict[int, dict[int, CallRecipe]]:
    """Recipes of the 24 RFCx species (index = species_id) -> {songtype_id: recipe}."""
    r: dict[int, dict[int, CallRecipe]] = {}
    # ---- frogs: repeated pulsed or tonal calls in bouts, 1-8 kHz
    r[0] = {1: _recipe("click train", _series(0, 14, 0.034, 0.009, 3900, 4050, fm=-0.03, amp=(0.6, 1)), 14, bouts=True, truncatable=True)}
    r[1] = {1: _recipe("upsweep tweet", _tone(0, 0.13, 3700, 4700, curve=0.7), 18, bouts=True)}
    r[2] = {1: _recipe("short chirp", _tone(0, 0.06, 1900, 2350, harm=(0.35,), attack=0.2), 16, bouts=True)}
    r[3] = {1: _recipe("co-qui", _tone(0, 0.10, 1150, 1210, attack=0.1) + _tone(0.16, 0.16, 1950, 2450, curve=0.8, attack=0.1), 20, bouts=True)}
    r[4] = {1: _recipe("pulsed trill", _series(0, 10, 0.09, 0.035, 2100, 2300, amp=(0.5, 1)), 10, bouts=True, truncatable=True)}
    r[8] = {1: _recipe("triple buzz", [s for k in range(3) for s in _tone(0.3 * k, 0.2, 3950, 4050, noise_bw=500, am=70, sharp=2)], 10, bouts=True)}
    r[12] = {1: _recipe("co-kee", _tone(0, 0.08, 1680, 1720) + _tone(0.13, 0.13, 2400, 2900, curve=0.6, harm=(0.12,)), 16, bouts=True)}
    r[14] = {1: _recipe("accelerating chucks", _series(0, 8, 0.3, 0.04, 2650, 2400, fm=-0.05, accel=0.4, harm=(0.15,)), 6, bouts=True, truncatable=True)}
    r[16] = {1: _recipe("wheet-eet", _tone(0, 0.12, 2800, 3700, curve=0.8) + _tone(0.17, 0.08, 3600, 3650), 14, bouts=True)}
    r[18] = {1: _recipe("high pulses", _series(0, 6, 0.04, 0.02, 5600, 5800, amp=(0.7, 1)), 18, bouts=True)}
    r[21] = {1: _recipe("tick series", _series(0, 12, 0.25, 0.03, 3300, 3150, fm=-0.12), 5, bouts=True, truncatable=True)}
    # ---- birds: more varied, up to ~10 kHz
    r[5] = {1: _recipe("accelerating trill", _series(0, 14, 0.11, 0.03, 7500, 7200, fm=-0.3, accel=0.5, amp=(0.6, 1)), 6, truncatable=True)}
    r[6] = {1: _recipe("harsh wek series", _series(0, 6, 0.15, 0.08, 1100, 1050, harm=(0.8, 0.5, 0.3), vib_rate=60, vib_depth=60), 5)}
    buzzy = [s for k in range(5) for s in _tone(0.16 * k, 0.11, (5500, 6500)[k % 2], (5500, 6500)[k % 2], noise_bw=600, am=120, sharp=1.5)]
    r[7] = {1: _recipe("buzzy song", buzzy + _series(0.85, 8, 0.05, 0.025, 6800, 6000, fm=-0.1), 6)}
    thrasher = (
        _tone(0, 0.14, 1800, 2600, harm=(0.25,)) + _tone(0.24, 0.12, 3800, 2900) + _tone(0.48, 0.18, 2400, 2450, harm=(0.3,))
        + _tone(0.78, 0.15, 2200, 4200, curve=1.5) + _tone(1.05, 0.2, 3300, 2000, curve=0.7)
    )
    r[9] = {1: _recipe("varied phrase", thrasher, 5)}
    r[10] = {1: _recipe("rising whistles", _series(0, 3, 0.28, 0.18, 2200, 2300, fm=0.6, curve=1.4) + _tone(0.86, 0.12, 4800, 4700), 6)}
    r[11] = {1: _recipe("whip-tom-kelly", _tone(0, 0.12, 3600, 2600, curve=0.6) + _tone(0.25, 0.15, 2400, 2400, bend=400) + _tone(0.55, 0.2, 3200, 2300), 7)}
    r[13] = {1: _recipe("low owl trill", _series(0, 25, 0.08, 0.05, 520, 720, harm=(0.35,), amp=(0.5, 1)), 3, truncatable=True)}
    coo = _tone(0, 0.25, 520, 560, harm=(0.5, 0.25)) + _tone(0.4, 0.7, 560, 540, bend=40, harm=(0.5, 0.25)) + _tone(1.25, 0.4, 540, 500, harm=(0.5, 0.25))
    r[15] = {1: _recipe("harmonic coo", coo, 4)}
    whistle = _tone(0, 0.2, 2000, 2600, harm=(0.2,)) + _tone(0.3, 0.15, 3900, 3500) + _tone(0.55, 0.25, 2800, 2900, vib_rate=25, vib_depth=120) + _tone(0.9, 0.3, 4500, 3300, curve=0.5)
    r[17] = {
        1: _recipe("whistled phrase", whistle, 5),
        4: _recipe("harsh chucks", _series(0, 3, 0.2, 0.05, 3000, 3000, noise_bw=3000, attack=0.05, decay=0.5), 6),
    }
    r[19] = {1: _recipe("ka-ka series", _series(0, 16, 0.22, 0.07, 900, 800, harm=(0.7, 0.4), accel=0.55), 3, truncatable=True)}
    r[20] = {1: _recipe("nasal beep", _tone(0, 0.12, 4400, 4350, am=180) + _tone(0.3, 0.12, 4400, 4350, am=180), 7)}
    r[22] = {1: _recipe("chip series", _series(0, 6, 0.12, 0.025, 6500, 6400, fm=-0.38, amp=(1.0, 0.7)), 7, truncatable=True)}
    zigzag = [Syllable(0.14 * k, 0.08, 7000 + 1800 * (k % 2), 7000 + 1800 * ((k + 1) % 2)) for k in range(6)]
    r[23] = {
        1: _recipe("thin zigzag", zigzag, 6),
        4: _recipe("see-swee", _tone(0, 0.25, 5000, 4600) + _tone(0.35, 0.3, 4000, 5500, curve=1.3), 6),
    }
    return r


BASE_RECIPES = _base_recipes()
N_BASE = len(BASE_RECIPES)
FROG_IDS = frozenset({0, 1, 2, 3, 4, 8, 12, 14, 16, 18, 21})
MAX_FREQ_HZ = 11000.0


def _scale_recipe(recipe: CallRecipe, factor: float) -> CallRecipe:
    syl = tuple(
        replace(s, f0=s.f0 * factor, f1=s.f1 * factor, bend=s.bend * factor, noise_bw=s.noise_bw * factor)
        for s in recipe.syllables
    )
    return replace(recipe, syllables=syl)


@dataclass(frozen=True)
class SpeciesModel:
    species_id: int
    taxon: str
    prevalence: float
    songs: tuple[tuple[int, CallRecipe], ...]  # (songtype_id, recipe)

    @property
    def songtype_ids(self) -> tuple[int, ...]:
        return tuple(st for st, _ in self.songs)

    def recipe(self, songtype_id: int) -> CallRecipe:
        return dict(self.songs)[songtype_id]


@lru_cache(maxsize=8)
def species_models(species: tuple[SpeciesInfo, ...], *, pitch_jitter: float = 0.0, seed: int = 0) -> tuple[SpeciesModel, ...]:
    """Map table rows to recipes; ids beyond the base recipes cycle them with a pitch shift.

    ``pitch_jitter`` > 0 moves each species' calls by its own factor in [1/(1+j), 1+j] (drawn
    from ``seed`` and the species id), so that a world's call families differ from the base."""
    out = []
    for info in species:
        base = info.species_id % N_BASE
        songs = BASE_RECIPES[base]
        cycle = info.species_id // N_BASE
        if cycle:
            factor = (1.0 + 0.14 * cycle) if cycle % 2 else 1.0 / (1.0 + 0.14 * cycle)
            top = max(nominal_box(rec)[3] for rec in songs.values())
            factor = min(factor, 0.9 * MAX_FREQ_HZ / top)
            songs = {st: _scale_recipe(rec, factor) for st, rec in songs.items()}
        if pitch_jitter > 0:
            draw = np.random.default_rng(np.random.SeedSequence([seed, 13, info.species_id])).uniform(-1.0, 1.0)
            factor = float(np.exp(draw * np.log1p(pitch_jitter)))
            top = max(nominal_box(rec)[3] for rec in songs.values())
            songs = {st: _scale_recipe(rec, min(factor, 0.9 * MAX_FREQ_HZ / top)) for st, rec in songs.items()}
        taxon = info.taxon or ("frog" if base in FROG_IDS else "bird")
        out.append(SpeciesModel(info.species_id, taxon, info.prevalence, tuple(sorted(songs.items()))))
    return tuple(out)


def vary(recipe: CallRecipe, rng: np.random.Generator, *, fscale: float = 1.0, tscale: float = 1.0,
         variation: float = 1.0) -> list[Syllable]:
    """One natural rendition of ``recipe`` (syllables), optionally pitch-shifted or re-timed;
    ``variation`` scales every natural deviation (1 = the documented amounts)."""
    v = float(variation)
    fs = fscale * (1.0 + v * float(np.clip(rng.normal(0, 0.035), -0.08, 0.08)))
    ts = tscale * max(0.3, 1.0 + v * float(np.clip(rng.normal(0, 0.07), -0.15, 0.15)))
    syl = list(recipe.syllables)
    if recipe.truncatable and len(syl) > 4:
        syl = syl[: len(syl) - int(rng.integers(0, len(syl) // 4 + 1))]
    n = len(syl)
    fj = 1.0 + v * np.clip(rng.normal(0, 0.012, n), -0.03, 0.03)
    slope = 1.0 + v * np.clip(rng.normal(0, 0.03, n), -0.06, 0.06)
    amp = 10.0 ** (v * rng.normal(0, 1.5, n) / 20.0)
    return [
        replace(s, t0=s.t0 * ts, dur=s.dur * ts, f0=s.f0 * fs * fj[i], f1=s.f1 * fs * fj[i] * slope[i],
                bend=s.bend * fs, amp=s.amp * amp[i], noise_bw=s.noise_bw * fs)
        for i, s in enumerate(syl)
    ]


def _track(s: Syllable, u: np.ndarray, t: np.ndarray) -> np.ndarray:
    f = s.f0 + (s.f1 - s.f0) * u**s.curve
    if s.bend:
        f = f + s.bend * np.sin(np.pi * u)
    if s.vib_depth:
        f = f + s.vib_depth * np.sin(2 * np.pi * s.vib_rate * t)
    return f


def syllables_box(syl: list[Syllable] | tuple[Syllable, ...]) -> tuple[float, float, float, float]:
    """(t_start, f_min, t_end, f_max) bounding the energy of the syllables (call-relative time)."""
    t0 = min(s.t0 for s in syl)
    t1 = max(s.t0 + s.dur for s in syl)
    u = np.linspace(0.0, 1.0, 33)
    lo, hi = math.inf, 0.0
    for s in syl:
        f = _track(s, u, u * s.dur)
        am_pad = 1.1 * s.am * max(1.0, s.sharp)
        pad = max(40.0, 0.015 * f.max(), min(1.5 / s.dur, 300.0), s.noise_bw / 2.0 + am_pad, am_pad)
        top = f.max() * (1 + max((k for k, a in enumerate(s.harm, start=1) if a >= 0.2), default=0))
        lo = min(lo, f.min() - pad)
        hi = max(hi, top + pad)
    return t0, max(lo, 20.0), t1, hi


def nominal_box(recipe: CallRecipe) -> tuple[float, float, float, float]:
    return syllables_box(recipe.syllables)


def render(syl: list[Syllable], sr: int, rng: np.random.Generator) -> np.ndarray:
    """Waveform (float32, peak about 1) of the syllables, starting at the first syllable."""
    start = min(s.t0 for s in syl)
    n_total = int(math.ceil((max(s.t0 + s.dur for s in syl) - start) * sr)) + 1
    out = np.zeros(n_total, dtype=np.float64)
    nyq = 0.47 * sr
    for s in syl:
        n = max(int(round(s.dur * sr)), 8)
        i0 = min(int(round((s.t0 - start) * sr)), n_total - n) if n < n_total else 0
        n = min(n, n_total - i0)
        t = np.arange(n) / sr
        u = t / max(t[-1], 1e-9)
        f = _track(s, u, t)
        phase = 2 * np.pi * np.cumsum(f) / sr + rng.uniform(0, 2 * np.pi)
        if s.noise_bw:
            spec = np.fft.rfft(rng.standard_normal(n))
            spec[np.fft.rfftfreq(n, 1.0 / sr) > s.noise_bw / 2.0] = 0
            band = np.fft.irfft(spec, n)
            band /= max(float(np.sqrt(np.mean(band**2))), 1e-12)
            wave = band * np.cos(phase)
        else:
            wave = np.sin(phase)
            fmax = float(f.max())
            for k, a in enumerate(s.harm, start=2):
                if a and k * fmax < nyq:
                    wave += a * np.sin(k * phase)
        env = _envelope(n, s.attack, s.decay, sr)
        if s.am:
            env = env * (0.5 - 0.5 * np.cos(2 * np.pi * s.am * t)) ** s.sharp
        out[i0 : i0 + n] += s.amp * env * wave
    return out.astype(np.float32)


def _envelope(n: int, attack: float, decay: float, sr: int) -> np.ndarray:
    """Raised-sine attack and decay, each at least 4 ms (or half the syllable) to limit splatter."""
    floor = min(int(0.004 * sr), n // 2)
    na = max(int(n * attack), floor, 1)
    nd = max(int(n * decay), floor, 1)
    env = np.ones(n)
    env[:na] = np.sin(0.5 * np.pi * np.arange(na) / na) ** 2
    env[n - nd :] *= np.cos(0.5 * np.pi * np.arange(1, nd + 1) / nd) ** 2
    return env
