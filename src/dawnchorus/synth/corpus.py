"""Generate a whole synthetic corpus in the Kaggle RFCx layout, with ground truth.

Output (under ``out_dir``)::

    train/<id>.flac, test/<id>.flac   mono PCM_16 FLAC, duration_s long, 48 kHz (some 44.1 kHz)
    train_tp.csv, train_fp.csv        recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max
    sample_submission.csv             recording_id,s0..sN (all 0)
    species.csv                       species_id,scientific_name,songtype_ids ("1" or "1;4")
    truth/test_labels.csv             recording_id,s0..sN presence (0/1) per test recording
    truth/prevalence.csv              species_id,prevalence: the world's prior (presence probability)
    truth/events.csv                  split,recording_id,species_id,songtype_id,kind,t_min,f_min,
                                      t_max,f_max,snr_db for every call and distractor placed
    synth_config.json                 the SynthConfig used

Each recording's random stream comes from ``SeedSequence([seed, split, index])``, so the corpus
is identical whatever the number of worker processes.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from dawnchorus.errors import InputError
from dawnchorus.synth.calls import species_models
from dawnchorus.synth.config import SpeciesInfo, SynthConfig
from dawnchorus.synth.plan import choose_fp, choose_tp, make_distractors, sample_presence, schedule_species
from dawnchorus.synth.scene import ambient_bed, mix_recording, real_background

BOX_COLUMNS = ["recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max"]
EVENT_COLUMNS = ["split", "recording_id", "species_id", "songtype_id", "kind", "t_min", "f_min", "t_max", "f_max", "snr_db"]
SPLIT_CODE = {"train": 0, "test": 1}


@dataclass(frozen=True)
class CorpusSummary:
    out_dir: Path
    n_train: int
    n_test: int
    n_tp: int
    n_fp: int
    n_calls: int
    n_distractors: int
    mean_species_per_test: float
    tp_per_species: dict[int, int] = field(default_factory=dict)
    fp_per_species: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Job:
    config: SynthConfig
    species: tuple[SpeciesInfo, ...]
    split: str
    index: int
    recording_id: str
    focus: int | None  # species_id
    sample_rate: int
    path: str
    backgrounds: tuple[str, ...] = ()  # real soundscapes to mix in (config.background_dir)


def _make_recording(job: _Job) -> dict:
    cfg = job.config
    models = species_models(job.species, pitch_jitter=cfg.species_pitch_jitter, seed=cfg.seed)
    sr, duration = job.sample_rate, cfg.duration_s
    n = int(round(duration * sr))
    plan_ss, bed_ss, mix_ss = np.random.SeedSequence([cfg.seed, SPLIT_CODE[job.split], job.index]).spawn(3)
    rng = np.random.default_rng(plan_ss)

    present = sample_presence(np.array([m.prevalence for m in models]), rng)
    ids = [m.species_id for m in models]
    if job.focus is not None:
        present[ids.index(job.focus)] = True
    events = []
    for m, here in zip(models, present):
        if here:
            snr = cfg.focus_snr_db_range if m.species_id == job.focus else cfg.snr_db_range
            events += schedule_species(m, duration=duration, sr=sr, rng=rng, snr_range=snr, rate_scale=cfg.call_rate_scale,
                                       variation=cfg.call_variation)
    n_dis = int(rng.poisson(cfg.distractors_per_minute * duration / 60.0))
    events += make_distractors(models, n=n_dis, duration=duration, sr=sr, rng=rng, snr_range=cfg.snr_db_range,
                               shift_range=cfg.distractor_shift_range, variation=cfg.call_variation)
    events.sort(key=lambda e: (e.t_min, e.species_id, e.kind))

    tp_rows, fp_rows = [], []
    if job.split == "train" and job.focus is not None:
        tps = choose_tp(events, job.focus, rng=rng, second_prob=cfg.second_tp_prob,
                        background_prob=cfg.background_tp_prob, prevalence={m.species_id: m.prevalence for m in models})
        tp_rows = [(job.recording_id, e.species_id, e.songtype_id, e.t_min, e.f_min, e.t_max, e.f_max) for e in tps]
        n_fp = int(rng.poisson(cfg.fp_per_tp * len(tps)))
        fps = choose_fp(events, models, n_fp=n_fp, duration=duration, sr=sr, rng=rng, mode=cfg.fp_mode)
        fp_rows = [(job.recording_id, *b) for b in fps]

    bed_rng, mix_rng = np.random.default_rng(bed_ss), np.random.default_rng(mix_ss)
    bed, _info = ambient_bed(n, sr, bed_rng, cfg)
    # world draws come after the reference world's, so its corpora stay as they were
    if job.backgrounds and bed_rng.random() < cfg.background_mix_prob:
        bed = bed + real_background(n, sr, bed_rng, files=job.backgrounds, bed=bed, level_db_range=cfg.background_level_db_range)
    rt60 = float(mix_rng.uniform(*cfg.reverb_rt60_range_s)) if cfg.reverb_prob and mix_rng.random() < cfg.reverb_prob else None
    audio = mix_recording(bed, sr, events, mix_rng, rt60_s=rt60)
    sf.write(job.path, audio, sr, subtype="PCM_16", format="FLAC")
    event_rows = [
        (job.split, job.recording_id, e.species_id, e.songtype_id, e.kind, e.t_min, e.f_min, e.t_max, e.f_max, e.snr_db)
        for e in events
    ]
    return {"events": event_rows, "tp": tp_rows, "fp": fp_rows}


def _recording_ids(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    seen: dict[str, None] = {}
    while len(seen) < n:
        for x in rng.integers(0, 16**9, size=n - len(seen) + 8):
            seen.setdefault(f"{int(x):09x}", None)
            if len(seen) == n:
                break
    return list(seen)


def background_files(directory: str | None) -> tuple[str, ...]:
    """Every audio file under ``directory`` (in path order, so a world is the same on every machine)."""
    if directory is None:
        return ()
    from dawnchorus.data.audio import soundscape_files

    return tuple(str(p) for p in soundscape_files(directory, setting="background_dir"))


def _jobs(cfg: SynthConfig, species: tuple[SpeciesInfo, ...], out: Path) -> list[_Job]:
    backgrounds = background_files(cfg.background_dir)
    ids = _recording_ids(cfg.seed, cfg.n_train + cfg.n_test)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 8]))
    species_ids = [s.species_id for s in species]
    focus = [species_ids[i % len(species_ids)] for i in range(cfg.n_train)]
    focus = [focus[i] for i in rng.permutation(cfg.n_train)]
    jobs = []
    for split, count, offset in (("train", cfg.n_train, 0), ("test", cfg.n_test, cfg.n_train)):
        alt = np.zeros(count, dtype=bool)
        alt[rng.choice(count, size=int(round(cfg.alt_rate_fraction * count)), replace=False)] = True
        for i in range(count):
            rid = ids[offset + i]
            jobs.append(_Job(cfg, species, split, i, rid, focus[i] if split == "train" else None,
                             cfg.alt_sample_rate_hz if alt[i] else cfg.sample_rate_hz, str(out / split / f"{rid}.flac"),
                             backgrounds))
    return jobs


def _run(jobs: list[_Job], workers: int, progress: bool) -> list[dict]:
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(jobs), desc="synth recordings", unit="rec")
        except ImportError:  # progress is optional
            bar = None
    results = []
    if workers <= 1 or len(jobs) <= 1:
        it = map(_make_recording, jobs)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        it = pool.map(_make_recording, jobs, chunksize=1)
    try:
        for res in it:
            results.append(res)
            if bar is not None:
                bar.update(1)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    return results


def generate_corpus(*, out_dir: str | Path, config: SynthConfig, progress: bool = False) -> CorpusSummary:
    """Write a synthetic RFCx-style corpus to ``out_dir`` (see module docstring) and summarise it."""
    if not isinstance(config, SynthConfig):
        raise InputError(f"config must be a SynthConfig, got {type(config).__name__}")
    start = time.perf_counter()
    species = config.world_species()
    out = Path(out_dir)
    try:
        for sub in ("train", "test", "truth"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {str(out)!r}: {exc}") from exc
    jobs = _jobs(config, species, out)
    workers = config.workers or os.cpu_count() or 1
    results = _run(jobs, min(workers, max(len(jobs), 1)), progress)

    def frame(key: str, columns: list[str], sort: list[str]) -> pd.DataFrame:
        rows = [r for res in results for r in res[key]]
        return pd.DataFrame(rows, columns=columns).sort_values(sort, kind="stable").reset_index(drop=True)

    tp = frame("tp", BOX_COLUMNS, ["recording_id", "t_min"])
    fp = frame("fp", BOX_COLUMNS, ["recording_id", "t_min"])
    events = frame("events", EVENT_COLUMNS, ["split", "recording_id", "t_min"])
    fmt = "%.4f"
    tp.to_csv(out / "train_tp.csv", index=False, float_format=fmt)
    fp.to_csv(out / "train_fp.csv", index=False, float_format=fmt)
    events.to_csv(out / "truth" / "events.csv", index=False, float_format=fmt)

    cols = [f"s{s.species_id}" for s in species]
    test_ids = sorted(j.recording_id for j in jobs if j.split == "test")
    pd.DataFrame(0, index=pd.Index(test_ids, name="recording_id"), columns=cols).reset_index().to_csv(
        out / "sample_submission.csv", index=False)
    calls = events[(events["split"] == "test") & (events["kind"] == "call")]
    labels = pd.DataFrame(0, index=pd.Index(test_ids, name="recording_id"), columns=cols)
    for rid, sid in calls[["recording_id", "species_id"]].drop_duplicates().itertuples(index=False):
        labels.loc[rid, f"s{sid}"] = 1
    labels.reset_index().to_csv(out / "truth" / "test_labels.csv", index=False)

    models = species_models(species, pitch_jitter=config.species_pitch_jitter, seed=config.seed)
    pd.DataFrame({
        "species_id": [s.species_id for s in species],
        "scientific_name": [s.scientific_name for s in species],
        "songtype_ids": [";".join(str(st) for st in m.songtype_ids) for m in models],
    }).to_csv(out / "species.csv", index=False)
    # the world's own prior table: what a host-paper table is for the RFCx species
    pd.DataFrame({"species_id": [s.species_id for s in species], "prevalence": [s.prevalence for s in species]}).to_csv(
        out / "truth" / "prevalence.csv", index=False)
    (out / "synth_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    ids = [s.species_id for s in species]
    return CorpusSummary(
        out_dir=out,
        n_train=config.n_train,
        n_test=config.n_test,
        n_tp=len(tp),
        n_fp=len(fp),
        n_calls=int((events["kind"] == "call").sum()),
        n_distractors=int((events["kind"] == "distractor").sum()),
        mean_species_per_test=float(labels.to_numpy().sum(axis=1).mean()) if len(labels) else 0.0,
        tp_per_species={i: int((tp["species_id"] == i).sum()) for i in ids},
        fp_per_species={i: int((fp["species_id"] == i).sum()) for i in ids},
        seconds=time.perf_counter() - start,
    )
