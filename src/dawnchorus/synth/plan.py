"""What happens in one recording: which species call, when, how loud, and which boxes are labelled.

Presence: every species independently with its prevalence (the test prior); at least one species.
Train recordings also carry a *focus* species (assigned round-robin over the corpus) that is
always present and receives the TP label(s). Frogs call in regular bouts, birds at scattered
times; calls of one species never overlap each other.

FP boxes of species k mimic what a template matcher for k would report: k's template box
(its nominal duration and band) centred on a distractor imitating k or on any other sound whose
band overlaps k's band, only where no call of k overlaps the box in time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dawnchorus.synth.calls import MAX_FREQ_HZ, SpeciesModel, Syllable, nominal_box, syllables_box, vary

EDGE_S = 0.05  # calls keep this far from the ends of the recording
SEP_S = 0.01  # FP boxes keep this far from calls of their species


@dataclass
class Event:
    kind: str  # "call" or "distractor"
    species_id: int
    songtype_id: int
    onset: float
    t_min: float
    f_min: float
    t_max: float
    f_max: float
    snr_db: float
    syllables: list[Syllable] = field(repr=False, default_factory=list)


def sample_presence(prevalence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean presence per species: independent draws with ``prevalence``; never all absent."""
    p = np.asarray(prevalence, dtype=float)
    present = rng.random(p.shape[0]) < p
    if not present.any():
        w = p + 1e-9
        present[rng.choice(p.shape[0], p=w / w.sum())] = True
    return present


def _place(syl: list[Syllable], onset: float, duration: float, sr: int) -> tuple[float, float, float, float] | None:
    t0, f0, t1, f1 = syllables_box(syl)
    if onset + t0 < EDGE_S - 1e-9 or onset + t1 > duration - EDGE_S or f1 >= 0.49 * sr:
        return None
    return onset + t0, f0, onset + t1, f1


def _free(busy: list[tuple[float, float]], a: float, b: float, gap: float) -> bool:
    return all(b + gap <= x or a >= y + gap for x, y in busy)


def schedule_species(model: SpeciesModel, *, duration: float, sr: int, rng: np.random.Generator,
                     snr_range: tuple[float, float], rate_scale: float, variation: float = 1.0) -> list[Event]:
    """Calls of one present species in one recording."""
    songs = model.songs
    if len(songs) > 1:
        r = rng.random()
        songs = songs[:1] if r < 0.5 else songs[1:] if r < 0.8 else songs
    lo, hi = snr_range
    base = rng.uniform(lo, hi)
    rate = songs[0][1].rate_per_min * rate_scale * rng.uniform(0.5, 1.6) * duration / 60.0
    n_calls = max(1, int(rng.poisson(rate)))
    frog = model.taxon == "frog" or songs[0][1].bouts
    events: list[Event] = []
    busy: list[tuple[float, float]] = []

    def add(onset: float, st: int, syl: list[Syllable]) -> bool:
        box = _place(syl, onset, duration, sr)
        if box is None or not _free(busy, box[0], box[2], 0.15):
            return False
        snr = float(np.clip(base + rng.normal(0.0, 3.0), lo, hi))
        events.append(Event("call", model.species_id, st, onset, *box, snr, syl))
        busy.append((box[0], box[2]))
        return True

    if frog:
        n_bouts = min(n_calls, 1 + int(rng.poisson(0.7)))
        per_bout = np.full(n_bouts, n_calls // n_bouts)
        per_bout[: n_calls % n_bouts] += 1
        gap = rng.uniform(0.3, 2.0)
        for k in per_bout:
            st, rec = songs[int(rng.integers(len(songs)))]
            t = rng.uniform(EDGE_S, max(duration - rec.duration - EDGE_S, EDGE_S + 1e-3))
            for _ in range(int(k)):
                syl = vary(rec, rng, variation=variation)
                if not add(t, st, syl) and t + rec.duration > duration - EDGE_S:
                    break
                t += syllables_box(syl)[2] + gap * rng.uniform(0.85, 1.15)
    else:
        for _ in range(n_calls):
            st, rec = songs[int(rng.integers(len(songs)))]
            for _try in range(6):
                syl = vary(rec, rng, variation=variation)
                span = duration - 2 * EDGE_S - syllables_box(syl)[2]
                if span > 0 and add(EDGE_S + rng.uniform(0.0, span), st, syl):
                    break
    return events


def make_distractors(models: tuple[SpeciesModel, ...], *, n: int, duration: float, sr: int,
                     rng: np.random.Generator, snr_range: tuple[float, float],
                     shift_range: tuple[float, float], variation: float = 1.0) -> list[Event]:
    """Unlabelled lookalikes: a species' call shifted in frequency and/or tempo."""
    out: list[Event] = []
    for _ in range(n):
        model = models[int(rng.integers(len(models)))]
        st, rec = model.songs[int(rng.integers(len(model.songs)))]
        mode = rng.random()
        fscale, tscale = 1.0, 1.0
        if mode < 0.8:
            shift = rng.uniform(*shift_range)
            up = rng.random() < 0.5 and nominal_box(rec)[3] * (1 + shift) < min(MAX_FREQ_HZ, 0.45 * sr)
            fscale = 1.0 + shift if up else 1.0 / (1.0 + shift)
        if mode >= 0.5:
            tscale = rng.uniform(0.6, 0.78) if rng.random() < 0.5 else rng.uniform(1.3, 1.6)
        syl = vary(rec, rng, fscale=fscale, tscale=tscale, variation=variation)
        span = duration - 2 * EDGE_S - syllables_box(syl)[2]
        if span <= 0:
            continue
        onset = EDGE_S + rng.uniform(0.0, span)
        box = _place(syl, onset, duration, sr)
        if box is not None:
            out.append(Event("distractor", model.species_id, st, onset, *box, float(rng.uniform(*snr_range)), syl))
    return out


def _overlap_frac(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = min(a1, b1) - max(a0, b0)
    return max(inter, 0.0) / max(min(a1 - a0, b1 - b0), 1e-9)


def choose_tp(events: list[Event], focus: int, *, rng: np.random.Generator, second_prob: float,
              background_prob: float, prevalence: dict[int, float]) -> list[Event]:
    """The labelled calls: mostly one clear call of the focus species."""
    def pick(cands: list[Event], k: int) -> list[Event]:
        if not cands:
            return []
        w = 10.0 ** (np.array([e.snr_db for e in cands]) / 20.0)
        idx = rng.choice(len(cands), size=min(k, len(cands)), replace=False, p=w / w.sum())
        return [cands[i] for i in sorted(idx)]

    calls = [e for e in events if e.kind == "call"]
    tps = pick([e for e in calls if e.species_id == focus], 2 if rng.random() < second_prob else 1)
    others = sorted({e.species_id for e in calls} - {focus})
    if others and rng.random() < background_prob:
        # favour rarely present species so that TP counts stay balanced over species
        w = np.array([1.0 / (prevalence.get(s, 0.0) + 0.02) for s in others])
        sp = others[int(rng.choice(len(others), p=w / w.sum()))]
        tps += pick([e for e in calls if e.species_id == sp], 1)
    return tps


def choose_fp(events: list[Event], models: tuple[SpeciesModel, ...], *, n_fp: int, duration: float,
              sr: int, rng: np.random.Generator, mode: str = "lookalike") -> list[tuple[int, int, float, float, float, float]]:
    """FP boxes ``(species_id, songtype_id, t_min, f_min, t_max, f_max)``, see module docstring.

    ``mode="random"`` puts them anywhere the species is silent, on a sound or not: FP labels
    that carry less information than a template matcher's false alarms."""
    out: list[tuple[int, int, float, float, float, float]] = []
    used: set[tuple[int, int]] = set()
    for _try in range(6 * n_fp):
        if len(out) >= n_fp:
            break
        model = models[int(rng.integers(len(models)))]
        k = model.species_id
        st, rec = model.songs[int(rng.integers(len(model.songs)))]
        _, kf0, kd, kf1 = nominal_box(rec)
        kf1 = min(kf1, 0.49 * sr)
        own = [(e.t_min, e.t_max) for e in events if e.kind == "call" and e.species_id == k]
        own += [(b[2], b[4]) for b in out if b[0] == k]
        if mode == "random":
            d = min(kd, duration)
            t0 = float(rng.uniform(0.0, duration - d))
            if _free(own, t0, t0 + d, SEP_S):
                out.append((k, st, t0, kf0, t0 + d, kf1))
            continue
        cands = [
            i for i, e in enumerate(events)
            if (k, i) not in used
            and ((e.kind == "distractor" and e.species_id == k)
                 or (e.species_id != k and _overlap_frac(e.f_min, e.f_max, kf0, kf1) >= 0.3))
        ]
        rng.shuffle(cands)
        for i in cands[:8]:
            e = events[i]
            d = min(kd, duration)
            t0 = float(np.clip(0.5 * (e.t_min + e.t_max) - d / 2, 0.0, duration - d))
            if _free(own, t0, t0 + d, SEP_S):
                used.add((k, i))
                out.append((k, st, t0, kf0, t0 + d, kf1))
                break
    return out
