"""Sliding-window inference over whole recordings, fold/model averaging, and outputs.

Recordings are streamed one at a time (the next one decodes in a background thread while
the model runs), windows from consecutive recordings share batches, and only per-window
scores are kept, so memory stays bounded whatever the size of the archive.
"""

from __future__ import annotations

import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from .config import RunConfig, load_config
from .data.audio import find_audio_files, load_audio, n_samples
from .data.species import SpeciesTable, read_species_csv
from .errors import AudioError, InputError
from .models import ClassLayout, Detector, build_model, resolve_device

try:
    from tqdm.auto import tqdm
except ImportError:  # progress bars are a nicety
    tqdm = None


@dataclass
class LoadedRun:
    run_dir: Path
    config: RunConfig
    layout: ClassLayout
    species: SpeciesTable
    models: list[Detector]


def load_run(run_dir: str | Path, *, device: torch.device) -> LoadedRun:
    """A trained run: its config, class layout, species and every finished fold's weights."""
    run_dir = Path(run_dir)
    for name in ("config.yaml", "layout.json", "species.csv"):
        if not (run_dir / name).is_file():
            raise InputError(f"{run_dir}: not a training run ({name} missing); point --run at a directory written by 'dawnchorus train'")
    config = load_config(run_dir / "config.yaml")
    layout = ClassLayout.from_dict(json.loads((run_dir / "layout.json").read_text()))
    weights = sorted(run_dir.glob("fold*/model.safetensors"))
    if not weights:
        raise InputError(f"{run_dir}: no finished fold (fold*/model.safetensors); finish training with 'dawnchorus train --resume'")
    models = []
    for path in weights:
        model = build_model(features=config.features, model=config.model, n_classes=len(layout))
        model.load_state_dict(load_file(str(path)))
        models.append(model.to(device).eval())
    return LoadedRun(run_dir, config, layout, read_species_csv(run_dir / "species.csv"), models)


def window_starts(n_total: int, *, window: int, hop: int) -> np.ndarray:
    """Window starts (in samples) covering the whole signal; the last window ends at the end."""
    if n_total <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_total - window + 1, hop, dtype=np.int64)
    if starts[-1] + window < n_total:
        starts = np.append(starts, n_total - window)
    return starts


def _windows(wave: np.ndarray, *, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    if wave.shape[0] < window:
        wave = np.pad(wave, (0, window - wave.shape[0]))
    starts = window_starts(wave.shape[0], window=window, hop=hop)
    return starts, np.stack([wave[s : s + window] for s in starts])


def _recordings(paths: Sequence[Path], sample_rate_hz: int) -> Iterator[tuple[int, np.ndarray | None]]:
    """Decode recordings in order, one ahead of the consumer.

    An unreadable file yields None (and a warning naming it) instead of ending a long run.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load_audio, paths[0], sample_rate_hz=sample_rate_hz) if paths else None
        for index in range(len(paths)):
            try:
                wave = pending.result()
            except AudioError as exc:
                warnings.warn(f"skipped: {exc}", stacklevel=2)
                wave = None
            if index + 1 < len(paths):
                pending = pool.submit(load_audio, paths[index + 1], sample_rate_hz=sample_rate_hz)
            yield index, wave


@torch.no_grad()
def predict_windows(*, run: LoadedRun, audio_paths: dict[str, Path], window_s: float, hop_s: float,
                    batch_size: int, device: torch.device, progress: bool = False) -> pd.DataFrame:
    """Species probability per window: rows keyed by (recording_id, t_start_s, t_end_s)."""
    rate = run.config.features.sample_rate_hz
    window, hop = n_samples(window_s, rate), n_samples(hop_s, rate)
    ids, paths = list(audio_paths), list(audio_paths.values())
    keys: list[tuple[str, float, float]] = []
    scores: list[np.ndarray] = []
    pending_waves: list[np.ndarray] = []

    def flush():
        waves = np.concatenate(pending_waves)
        pending_waves.clear()
        for first in range(0, waves.shape[0], batch_size):
            batch = torch.from_numpy(waves[first : first + batch_size]).to(device)
            probabilities = torch.zeros((batch.shape[0], len(run.species)), device=device)
            for model in run.models:
                probabilities += run.layout.fold(torch.sigmoid(model(batch)["clip"].float()))
            scores.append((probabilities / len(run.models)).cpu().numpy())

    iterator = _recordings(paths, rate)
    if progress and tqdm is not None:
        iterator = tqdm(iterator, total=len(paths), desc="predict", unit="rec")
    pending_count = 0
    for index, wave in iterator:
        if wave is None:
            continue
        starts, windows = _windows(wave, window=window, hop=hop)
        keys += [(ids[index], s / rate, min(s + window, max(wave.shape[0], window)) / rate) for s in starts]
        pending_waves.append(windows)
        pending_count += len(windows)
        if pending_count >= batch_size:
            flush()
            pending_count = 0
    if pending_waves:
        flush()
    frame = pd.DataFrame(keys, columns=["recording_id", "t_start_s", "t_end_s"])
    values = np.concatenate(scores) if scores else np.zeros((0, len(run.species)))
    return pd.concat([frame, pd.DataFrame(values, columns=run.species.columns)], axis=1)


def aggregate_windows(windows: pd.DataFrame, *, species_columns: list[str], method: str = "max", top_k: int = 3) -> pd.DataFrame:
    """Recording scores from window scores: max over time, or the mean of the top k windows."""
    grouped = windows.groupby("recording_id", sort=False)[species_columns]
    if method == "max":
        result = grouped.max()
    elif method == "topk_mean":
        result = grouped.agg(lambda column: np.sort(column.to_numpy())[-top_k:].mean())
    else:
        raise InputError(f"aggregation '{method}' is unknown; use max or topk_mean")
    return result.reset_index()


def average_window_tables(tables: Sequence[pd.DataFrame], *, species_columns: list[str]) -> pd.DataFrame:
    """Mean of several runs' window tables (same windows), the model-ensemble step."""
    if len(tables) == 1:
        return tables[0]
    keys = ["recording_id", "t_start_s", "t_end_s"]
    first = tables[0][keys]
    for table in tables[1:]:
        if not table[keys].equals(first):
            raise InputError("runs produced different windows; use the same --window-s and --hop-s for every run")
    mean = np.mean([t[species_columns].to_numpy() for t in tables], axis=0)
    return pd.concat([first.reset_index(drop=True), pd.DataFrame(mean, columns=species_columns)], axis=1)


def detections_table(windows: pd.DataFrame, *, species: SpeciesTable, min_score: float = 0.0) -> pd.DataFrame:
    """Long format: one row per (recording, window, species) with score >= min_score."""
    long = windows.melt(id_vars=["recording_id", "t_start_s", "t_end_s"], value_vars=species.columns,
                        var_name="column", value_name="score")
    long["species_id"] = long["column"].str[1:].astype(int)
    long = long[long["score"] >= min_score]
    return long[["recording_id", "species_id", "t_start_s", "t_end_s", "score"]].sort_values(
        ["recording_id", "t_start_s", "species_id"], kind="stable").reset_index(drop=True)


def write_raven_detections(detections: pd.DataFrame, *, out_dir: str | Path, species: SpeciesTable, threshold: float) -> list[Path]:
    """One Raven selection table per recording with the windows scoring above ``threshold``."""
    from .data.annotations import Box
    from .data.raven import raven_table_name, write_raven

    written = []
    strong = detections[detections["score"] >= threshold]
    for recording_id, group in strong.groupby("recording_id", sort=True):
        boxes = [Box(recording_id, int(r.species_id), 1, float(r.t_start_s), 0.0, float(r.t_end_s), 1.0, 1) for r in group.itertuples()]
        written.append(write_raven(Path(out_dir) / raven_table_name(recording_id), boxes, species=species, scores=group["score"]))
    return written


@dataclass(frozen=True)
class Prediction:
    submission: pd.DataFrame  # recording_id, s0..sN in the order the files were found
    windows: pd.DataFrame  # recording_id, t_start_s, t_end_s, s0..sN
    species: SpeciesTable


def predict(*, run_dirs: Sequence[str | Path], audio_dir: str | Path, window_s: float | None = None,
            hop_s: float | None = None, batch_size: int | None = None, aggregate: str | None = None,
            device: str = "auto", progress: bool = False) -> Prediction:
    """Predict every recording under ``audio_dir`` with one or more runs (all folds averaged)."""
    if not run_dirs:
        raise InputError("give at least one run directory")
    torch_device = resolve_device(device)
    audio_paths = find_audio_files(audio_dir)
    if not audio_paths:
        raise InputError(f"{audio_dir}: no FLAC/WAV recordings found")
    runs = [load_run(r, device=torch_device) for r in run_dirs]
    species = runs[0].species
    for run in runs[1:]:
        if run.species.species_ids != species.species_ids:
            raise InputError(f"{run.run_dir}: its species differ from {runs[0].run_dir}'s; ensemble runs trained on the same species")
    infer = runs[0].config.infer
    window_s, hop_s = window_s or infer.window_s, hop_s or infer.hop_s
    tables = [predict_windows(run=run, audio_paths=audio_paths, window_s=window_s, hop_s=hop_s,
                              batch_size=batch_size or infer.batch_size, device=torch_device, progress=progress)
              for run in runs]
    windows = average_window_tables(tables, species_columns=species.columns)
    submission = aggregate_windows(windows, species_columns=species.columns, method=aggregate or infer.aggregate, top_k=infer.top_k)
    return Prediction(submission=submission, windows=windows, species=species)
