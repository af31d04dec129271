"""Sliding-window inference over whole recordings, fold/model averaging, and outputs.

One row per window (the default) runs on the batch engine's loop (``batch.engine.score_recordings``):
each recording read in chunks, decoding a few chunks ahead, so memory does not grow with file
length. A frame grid (frame-level heads, several window lengths, shifted passes) decodes whole
recordings, the next one in a background thread, windows of consecutive recordings sharing
batches. Only per-window scores are kept, whatever the size of the archive.
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
from .data.audio import find_audio_files, load_audio, n_samples, probe_audio, window_starts
from .data.species import SpeciesTable, read_species_csv, species_column
from .errors import AudioError, InputError
from .models import ClassLayout, Detector, build_model, resolve_device
from .postprocess import species_columns_of
from .priors import persistence_from_run
from .runs import file_digest, resolve_round
from .scores import aggregate_windows, average_window_tables, kth_best_window
from .stages import timed

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


RUNTIMES = ("torch", "onnx")


def load_run(run_dir: str | Path, *, device: torch.device, pseudo_round: int | None = None,
             with_models: bool = True) -> LoadedRun:
    """A trained run: its config, class layout, species and every finished fold's weights.

    A run trained with pseudo-label rounds resolves to its last finished round unless
    ``pseudo_round`` names one (0 is the first, teacher model). ``with_models=False`` skips
    building the networks (ONNX Runtime scores with the exported graph instead).
    """
    run_dir = resolve_round(run_dir, pseudo_round)
    for name in ("config.yaml", "layout.json", "species.csv"):
        if not (run_dir / name).is_file():
            raise InputError(f"{run_dir}: not a training run ({name} missing); point --run at a directory written by 'dawnchorus train'")
    config = load_config(run_dir / "config.yaml")
    layout = ClassLayout.from_dict(json.loads((run_dir / "layout.json").read_text()))
    weights = sorted(run_dir.glob("fold*/model.safetensors"))
    if not weights:
        raise InputError(f"{run_dir}: no finished fold (fold*/model.safetensors); finish training with 'dawnchorus train --resume'")
    models = []
    for path in weights if with_models else []:
        model = build_model(features=config.features, model=config.model, n_classes=len(layout))
        model.load_state_dict(load_file(str(path)))
        models.append(model.to(device).eval())
    return LoadedRun(run_dir, config, layout, read_species_csv(run_dir / "species.csv"), models)


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


def _model_scores(run: LoadedRun, batch: torch.Tensor, *, fold_classes: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``_batch_scores``, in halves (recursively, with a warning) when the device runs out of memory."""
    try:
        return _batch_scores(run, batch, fold_classes=fold_classes)
    except torch.OutOfMemoryError:
        if batch.shape[0] <= 1:
            raise InputError(f"one window does not fit in the memory of {batch.device}; predict with --device cpu or a "
                             "shorter --window-s") from None
        if batch.is_cuda:
            torch.cuda.empty_cache()
        half = batch.shape[0] // 2
        warnings.warn(f"out of memory on {batch.device} for a batch of {batch.shape[0]} windows; scoring it as {half} + "
                      f"{batch.shape[0] - half} (lower infer.batch_size to avoid the retry)", stacklevel=2)
        parts = [_model_scores(run, batch[:half], fold_classes=fold_classes),
                 _model_scores(run, batch[half:], fold_classes=fold_classes)]
        frames = None if parts[0][1] is None else torch.cat([parts[0][1], parts[1][1]])
        return torch.cat([parts[0][0], parts[1][0]]), frames


def _batch_scores(run: LoadedRun, batch: torch.Tensor, *, fold_classes: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Clip and (when the head has one) frame probabilities, averaged over the run's models."""
    clip, frame = None, None
    with timed("spectrogram"):  # the folds of a run share one front end (its config; nothing in it is learnt)
        image = run.models[0].frontend(batch)
    for model in run.models:
        with timed("network"):
            outputs = model.classify(image)
        probs = torch.sigmoid(outputs["clip"].float())
        clip = probs if clip is None else clip + probs
        if "frame" in outputs:
            frames = torch.sigmoid(outputs["frame"].float())
            frame = frames if frame is None else frame + frames
    clip = clip / len(run.models)
    frame = frame / len(run.models) if frame is not None else None
    if fold_classes:
        clip = run.layout.fold(clip)
        frame = run.layout.fold(frame) if frame is not None else None
    return clip, frame


class _FrameGrid:
    """Framewise scores of one recording on a regular grid, per window length (scale).

    Each scale's steps average the windows covering them; ``rows`` then mixes the scales per
    class with ``weights`` (scales x classes): equal weights for multi-scale averaging, one-hot
    rows for a per-class choice of window length.
    """

    def __init__(self, n_samples_total: int, *, rate: int, step_s: float, n_classes: int, n_scales: int = 1):
        self.rate, self.step_s = rate, step_s
        self.duration_s = n_samples_total / rate
        n_steps = max(1, int(np.ceil(self.duration_s / step_s - 1e-9)))
        self.centres_s = (np.arange(n_steps) + 0.5) * step_s
        self.total = np.zeros((n_scales, n_steps, n_classes))
        self.count = np.zeros((n_scales, n_steps, 1))

    def add(self, start: int, window: int, clip: np.ndarray, frame: np.ndarray | None, *, scale: int = 0) -> None:
        t0, length_s = start / self.rate, window / self.rate
        inside = np.flatnonzero((self.centres_s >= t0) & (self.centres_s < t0 + length_s))
        if frame is None:  # a clip-level head: the window's score holds for all its steps
            self.total[scale, inside] += clip
        else:
            index = np.minimum(((self.centres_s[inside] - t0) / length_s * frame.shape[-1]).astype(np.int64), frame.shape[-1] - 1)
            self.total[scale, inside] += frame[:, index].T
        self.count[scale, inside] += 1

    def rows(self, weights: np.ndarray | None = None) -> tuple[list[tuple[float, float]], np.ndarray]:
        starts = self.centres_s - self.step_s / 2
        keys = [(float(a), float(min(a + self.step_s, self.duration_s))) for a in starts]
        means = self.total / np.maximum(self.count, 1)  # (scales, steps, classes)
        weights = np.ones(self.total[:, 0].shape) if weights is None else weights
        covered = weights[:, None, :] * (self.count > 0)  # a scale whose windows missed a step does not vote there
        return keys, (means * covered).sum(axis=0) / np.maximum(covered.sum(axis=0), 1e-12)


@torch.no_grad()
def predict_windows(*, run: LoadedRun, audio_paths: dict[str, Path], window_s: float, hop_s: float,
                    batch_size: int, device: torch.device, progress: bool = False, frame_step_s: float | None = None,
                    extra_window_s: Sequence[float] = (), tta_shifts: int = 1, fold_classes: bool = True,
                    class_window_s: dict[str, float] | None = None, onnx_model: Path | None = None,
                    threads: int = 1) -> pd.DataFrame:
    """Scores keyed by (recording_id, t_start_s, t_end_s), species columns (or class columns).

    Without ``frame_step_s`` a row is a window and holds its clip score. With it, rows are a
    regular grid of ``frame_step_s`` steps, each the mean over every window covering it of the
    window's frame score (heads with a frame output) or clip score; that grid is also where
    several window lengths (multi-scale) and shifted passes (test-time augmentation) meet.
    Scales are averaged with equal weight, except for the columns of ``class_window_s``, which
    take only the scale of their chosen window length (``choose_class_windows``, 23rd place).
    """
    rate = run.config.features.sample_rate_hz
    columns = run.species.columns if fold_classes else class_columns(run.layout)
    windows_s = list(dict.fromkeys([float(window_s), *map(float, extra_window_s), *(class_window_s or {}).values()]))
    scale_weights = _scale_weights(windows_s, columns, class_window_s or {})
    grid_mode = frame_step_s is not None or len(windows_s) > 1 or tta_shifts > 1
    if not grid_mode:
        return _window_rows(run=run, audio_paths=audio_paths, window_s=window_s, hop_s=hop_s, batch_size=batch_size,
                            device=device, fold_classes=fold_classes, columns=columns, progress=progress,
                            onnx_model=onnx_model, threads=threads)
    if onnx_model is not None:
        raise InputError("--runtime onnx scores one row per window: drop --frame-step-s, --extra-window-s, --tta-shifts and "
                         "--class-windows (or predict on the torch runtime)")
    if frame_step_s is None:
        frame_step_s = hop_s / max(1, tta_shifts)
    hop = n_samples(hop_s, rate)
    ids, paths = list(audio_paths), list(audio_paths.values())
    keys: list[tuple[str, float, float]] = []
    scores: list[np.ndarray] = []
    pending: list[tuple[int, np.ndarray]] = []  # (recording index, waveform)

    def flush():
        grids = [_FrameGrid(w.shape[0], rate=rate, step_s=frame_step_s, n_classes=len(columns), n_scales=len(windows_s))
                 for _, w in pending]
        for scale, length_s in enumerate(windows_s):
            window = n_samples(length_s, rate)
            where, stacks = [], []  # windows of every pending recording share batches
            for position, (_, wave) in enumerate(pending):
                for shift in range(tta_shifts):
                    offset = hop * shift // tta_shifts if hop * shift // tta_shifts < wave.shape[0] else 0
                    starts, stack = _windows(wave[offset:], window=window, hop=hop)
                    where += [(position, int(start) + offset) for start in starts]
                    stacks.append(stack)
            stack = np.concatenate(stacks)
            for first in range(0, len(stack), batch_size):
                clip, frame = _model_scores(run, torch.from_numpy(stack[first : first + batch_size]).to(device),
                                            fold_classes=fold_classes)
                clip, frame = clip.cpu().numpy(), (frame.cpu().numpy() if frame is not None else None)
                for row, (position, start) in enumerate(where[first : first + batch_size]):
                    grids[position].add(start, window, clip[row], frame[row] if frame is not None else None, scale=scale)
        for position, (recording, _) in enumerate(pending):
            grid_keys, grid_scores = grids[position].rows(scale_weights)
            keys.extend((ids[recording], a, b) for a, b in grid_keys)
            scores.append(grid_scores)
        pending.clear()

    iterator = _recordings(paths, rate)
    if progress and tqdm is not None:
        iterator = tqdm(iterator, total=len(paths), desc="predict", unit="rec")
    pending_windows = 0
    for index, wave in iterator:
        if wave is None:
            continue
        pending.append((index, wave))
        pending_windows += max(1, wave.shape[0] // max(1, hop))
        if pending_windows >= batch_size:
            flush()
            pending_windows = 0
    if pending:
        flush()
    frame = pd.DataFrame(keys, columns=["recording_id", "t_start_s", "t_end_s"])
    values = np.concatenate(scores) if scores else np.zeros((0, len(columns)))
    return pd.concat([frame, pd.DataFrame(values.astype(np.float32), columns=columns)], axis=1)


def _window_rows(*, run: LoadedRun, audio_paths: dict[str, Path], window_s: float, hop_s: float, batch_size: int,
                 device: torch.device, fold_classes: bool, columns: list[str], progress: bool,
                 onnx_model: Path | None = None, threads: int = 1) -> pd.DataFrame:
    """One row per window, read and scored in chunks by the batch engine (the archive jobs' loop);
    an unreadable recording is skipped with a warning naming it. With ``onnx_model`` the run's
    exported graph scores the windows on ONNX Runtime instead of torch."""
    from .batch.engine import score_recordings
    from .batch.scoring import WindowChunks

    if onnx_model is not None:
        from .onnx_models import OnnxScorer

        inner = OnnxScorer(model_path=onnx_model, threads=threads, window_s=window_s, hop_s=hop_s, batch_size=batch_size)
    else:
        inner = CnnScorer(runs=[run], window_s=window_s, hop_s=hop_s, batch_size=batch_size, device=device,
                          fold_classes=fold_classes)
    scorer = WindowChunks(inner)
    headers = []
    for recording_id, path in audio_paths.items():
        try:
            headers.append((recording_id, probe_audio(path)))
        except AudioError as exc:
            warnings.warn(f"skipped: {exc}", stacklevel=3)
    tables = []
    for recording_id, rows, error, _ in score_recordings(headers, scorer=scorer, progress=progress):
        if error is not None:
            warnings.warn(f"skipped: {error}", stacklevel=3)
            continue
        rows.insert(0, "recording_id", recording_id)
        tables.append(rows)
    if not tables:
        return pd.DataFrame(columns=["recording_id", "t_start_s", "t_end_s", *columns])
    return pd.concat(tables, ignore_index=True)


def predict_out_of_fold(*, run: LoadedRun, audio_paths: dict[str, Path], device: torch.device, progress: bool = False,
                        **options) -> pd.DataFrame:
    """``predict_windows`` where each recording a fold held out is scored by that fold's model only
    (the others by the mean of all folds); rows in the order of ``audio_paths``. ``options`` are
    ``predict_windows``'s (window and hop default to the run's).
    """
    infer = run.config.infer
    options = {"window_s": infer.window_s, "hop_s": infer.hop_s, "batch_size": infer.batch_size, **options}
    fold_names = [p.parent.name for p in sorted(Path(run.run_dir).glob("fold*/model.safetensors"))]
    folds_csv = Path(run.run_dir) / "folds.csv"
    held_out_by = pd.read_csv(folds_csv, dtype={"recording_id": str}) if folds_csv.is_file() else pd.DataFrame(columns=["recording_id", "fold"])
    fold_of = dict(zip(held_out_by["recording_id"], held_out_by["fold"]))
    groups: dict[int | None, dict[str, Path]] = {}
    for recording_id, path in audio_paths.items():
        fold = fold_of.get(recording_id)
        use = f"fold{fold}" if fold is not None and f"fold{fold}" in fold_names else None
        groups.setdefault(fold_names.index(use) if use else None, {})[recording_id] = path
    tables = []
    for model_index, paths in groups.items():
        models = run.models if model_index is None else [run.models[model_index]]
        subset = LoadedRun(run.run_dir, run.config, run.layout, run.species, models)
        tables.append(predict_windows(run=subset, audio_paths=paths, device=device, progress=progress, **options))
    table = pd.concat(tables, ignore_index=True)
    order = {r: i for i, r in enumerate(audio_paths)}
    return table.sort_values(["recording_id", "t_start_s"], key=lambda c: c.map(order) if c.name == "recording_id" else c,
                             kind="stable").reset_index(drop=True)


def _scale_weights(windows_s: list[float], columns: list[str], class_window_s: dict[str, float]) -> np.ndarray:
    unknown = sorted(set(class_window_s) - set(columns))
    if unknown:
        raise InputError(f"per-class window lengths name column(s) {', '.join(unknown)} that the run does not predict")
    weights = np.ones((len(windows_s), len(columns)))
    for column, length_s in class_window_s.items():
        weights[:, columns.index(column)] = [float(w == float(length_s)) for w in windows_s]
    return weights


def class_columns(layout: ClassLayout) -> list[str]:
    """Column names of a class-level (not folded) score table: s<species> or s<species>_t<songtype>."""
    return [species_column(s) if t is None else f"{species_column(s)}_t{t}" for s, t in layout.classes]


def detections_table(windows: pd.DataFrame, *, species: SpeciesTable, min_score: float = 0.0) -> pd.DataFrame:
    """Long format: one row per (recording, window, species) with score >= min_score."""
    long = windows.melt(id_vars=["recording_id", "t_start_s", "t_end_s"], value_vars=species.columns,
                        var_name="column", value_name="score")
    long["species_id"] = long["column"].str[1:].astype(int)
    long = long[long["score"] >= min_score]
    return long[["recording_id", "species_id", "t_start_s", "t_end_s", "score"]].sort_values(
        ["recording_id", "t_start_s", "species_id"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Prediction:
    submission: pd.DataFrame  # recording_id, s0..sN in the order the files were found
    windows: pd.DataFrame  # recording_id, t_start_s, t_end_s, s0..sN
    species: SpeciesTable


def predict(*, run_dirs: Sequence[str | Path], audio_dir: str | Path, window_s: float | None = None,
            hop_s: float | None = None, batch_size: int | None = None, aggregate: str | None = None,
            frame_step_s: float | None = None, extra_window_s: Sequence[float] | None = None,
            tta_shifts: int | None = None, pseudo_round: int | None = None, device: str = "auto",
            class_window_s: dict[str, float] | None = None, window_rows: bool = False,
            progress: bool = False, runtime: str = "torch", threads: int = 1) -> Prediction:
    """Predict every recording under ``audio_dir`` with one or more runs (all folds averaged).

    Options left as None take the first run's ``infer`` settings; ``pseudo_round`` picks a
    pseudo-label round of a run trained with them (default: its last finished round).
    ``class_window_s`` gives some species columns their own window length (``multiscale``).
    ``window_rows`` keeps one row per window, as training keeps out-of-fold scores, instead
    of the run's frame grid, extra window lengths and TTA shifts. ``runtime="onnx"`` scores the
    windows with the run's exported graph (``RUN/model.onnx``, exported when missing or stale)
    on ONNX Runtime with ``threads`` CPU threads.
    """
    if not run_dirs:
        raise InputError("give at least one run directory")
    if runtime not in RUNTIMES:
        raise InputError(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if window_rows and (frame_step_s or extra_window_s or tta_shifts or class_window_s):
        raise InputError("window rows have no frame grid: drop frame_step_s, extra_window_s, tta_shifts and class_window_s")
    torch_device = resolve_device(device)
    audio_paths = find_audio_files(audio_dir, ids="path")
    if not audio_paths:
        raise InputError(f"{audio_dir}: no audio recordings (FLAC, WAV, MP3, OGG) found")
    runs = [load_run(r, device=torch_device, pseudo_round=pseudo_round, with_models=runtime == "torch") for r in run_dirs]
    species = runs[0].species
    for run in runs[1:]:
        if run.species.species_ids != species.species_ids:
            raise InputError(f"{run.run_dir}: its species differ from {runs[0].run_dir}'s; ensemble runs trained on the same species")
    infer = runs[0].config.infer
    window_s, hop_s = window_s or infer.window_s, hop_s or infer.hop_s
    if window_rows:
        grid = dict(frame_step_s=None, extra_window_s=(), tta_shifts=1, class_window_s=None)
    else:
        grid = dict(frame_step_s=frame_step_s if frame_step_s is not None else infer.frame_step_s,
                    extra_window_s=tuple(extra_window_s if extra_window_s is not None else infer.extra_window_s),
                    tta_shifts=tta_shifts or infer.tta_shifts, class_window_s=class_window_s)
    onnx_model = None
    if runtime == "onnx":
        from .onnx_models import onnx_for_runs

        onnx_model = onnx_for_runs(run_dirs, pseudo_round=pseudo_round)
    tables = [predict_windows(run=run, audio_paths=audio_paths, window_s=window_s, hop_s=hop_s,
                              batch_size=batch_size or infer.batch_size, device=torch_device, progress=progress,
                              onnx_model=onnx_model, threads=threads, **grid)
              for run in runs]
    windows = average_window_tables(tables, species_columns=species.columns)
    submission = aggregate_windows(windows, species_columns=species.columns, method=aggregate or infer.aggregate, top_k=infer.top_k)
    return Prediction(submission=submission, windows=windows, species=species)


def persistence_evidence(*, run_dirs: Sequence[str | Path], audio_dir: str | Path, windows: pd.DataFrame | None = None,
                         device: str = "auto", progress: bool = False) -> tuple[pd.DataFrame, int, float] | None:
    """What classify and count should count on to estimate the test prevalence for these runs:
    each recording's k-th best window score of round 0 (the first model, not a pseudo-label
    student) at the run's own window settings, with the k and threshold its out-of-fold
    recordings chose (``priors.persistence_from_run``). Returns ``(table, k, threshold)``
    for ``postprocess(estimate_from=table, cc_threshold=threshold)``, or None when the first
    run has no such rule (trained before it existed).

    Pass ``windows`` when round 0 at the run's settings has already scored ``audio_dir``;
    otherwise it is predicted here. Round 0 because students trained on the teacher's soft
    labels score away from their own out-of-fold threshold (benchmarks/RESULTS.md, issue 4).
    Counted on window rows, as the threshold was chosen: a run that predicts on a frame grid
    (``infer.frame_step_s``, extra windows, TTA) has ``windows`` ignored and window rows
    predicted here, since its k best 0.5 s frames are not its k best windows.
    """
    rule = persistence_from_run(run_dirs[0])
    if rule is None:
        return None
    k, threshold = rule
    infer = load_config(resolve_round(run_dirs[0], 0) / "config.yaml").infer
    on_grid = infer.frame_step_s is not None or bool(infer.extra_window_s) or infer.tta_shifts > 1
    if windows is None or on_grid:
        windows = predict(run_dirs=run_dirs, audio_dir=audio_dir, pseudo_round=0, window_rows=True, device=device,
                          progress=progress).windows
    columns = species_columns_of(windows, source="window scores")
    return kth_best_window(windows, species_columns=columns, k=k), k, threshold


class CnnScorer:
    """Trained CNN runs as a window scorer (``batch.scoring.WindowScorer``): each window's clip
    probabilities, the mean over every fold of every run, one column per species."""

    def __init__(self, *, runs: Sequence[LoadedRun], window_s: float | None = None, hop_s: float | None = None,
                 batch_size: int | None = None, device: torch.device, fold_classes: bool = True):
        if not runs:
            raise InputError("give at least one run directory")
        infer = runs[0].config.infer
        self.runs, self.device = list(runs), device
        self.sample_rate_hz = runs[0].config.features.sample_rate_hz
        for run in self.runs[1:]:
            if run.species.species_ids != runs[0].species.species_ids:
                raise InputError(f"{run.run_dir}: its species differ from {runs[0].run_dir}'s; ensemble runs trained on the same species")
            if run.config.features.sample_rate_hz != self.sample_rate_hz:
                raise InputError(f"{run.run_dir}: works at {run.config.features.sample_rate_hz} Hz, {runs[0].run_dir} at "
                                 f"{self.sample_rate_hz} Hz; archive jobs score runs of one sample rate together")
        self.window_s, self.hop_s = float(window_s or infer.window_s), float(hop_s or infer.hop_s)
        self.batch_size = int(batch_size or infer.batch_size)
        self.species, self.fold_classes = runs[0].species, fold_classes
        self.columns = runs[0].species.columns if fold_classes else class_columns(runs[0].layout)

    @torch.no_grad()
    def score(self, windows: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
        total = None
        for run in self.runs:
            clip, _ = _model_scores(run, batch, fold_classes=self.fold_classes)
            total = clip if total is None else total + clip
        return (total / len(self.runs)).cpu().numpy().astype(np.float32)

    def to(self, device: torch.device) -> "CnnScorer":
        """Move every model to ``device`` (a Ray actor moves the driver's CPU copy onto its own GPU)."""
        for run in self.runs:
            run.models[:] = [model.to(device) for model in run.models]
        self.device = device
        return self

    def fingerprint(self) -> dict:
        weights = {str(p): file_digest(p) for run in self.runs for p in sorted(Path(run.run_dir).glob("fold*/model.safetensors"))}
        return {"detector": "cnn", "sample_rate_hz": self.sample_rate_hz, "weights": weights}
