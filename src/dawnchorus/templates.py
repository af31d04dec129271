"""Template matching: find calls that look like one labelled example box (the host paper's detector).

A template is one box of one recording. Both the template's recording and every searched
recording become a log-amplitude spectrogram (512-sample Hann window, 50 % overlap) with each
frequency row's median over time subtracted ("flattening", which removes steady background
such as insect choruses or hum). The template's patch, cut to its own frequency rows, slides
along time only, scored by normalized cross-correlation (NCC); local maxima above a threshold
and at least half a template apart become candidate boxes, strongest first.

Spectrograms are computed at the template's sample rate (recordings at another rate are
resampled) so that frequency rows mean the same hertz on both sides. Each recording is decoded
and transformed once per distinct template rate, then every template is matched against it.
"""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.fft
from scipy.signal import find_peaks, fftconvolve
from scipy.signal.windows import hann
from tqdm import tqdm

from .data.annotations import LABEL_COLUMNS, read_boxes
from .data.tables import read_text_table
from .data.audio import find_audio_files, find_recordings_by_id, load_audio, probe_audio
from .errors import AudioError, InputError, ValidationError

WINDOW_SAMPLES = 512
HOP_SAMPLES = WINDOW_SAMPLES // 2
DEFAULT_THRESHOLD = 0.1
CANDIDATE_COLUMNS = ("recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max", "score", "template_id")
_BOX_END_TOLERANCE_S = 1e-3
_LOG_FLOOR = 1e-10  # keeps log() finite on digital silence


@dataclass(frozen=True)
class Template:
    """One example box: the call to look for, where it is, and who it is."""

    recording_id: str
    species_id: int
    songtype_id: int
    t_min_s: float
    t_max_s: float
    f_min_hz: float
    f_max_hz: float
    template_id: str = ""
    source: str = ""  # where it was defined, e.g. "templates.csv line 3", for error messages

    @property
    def duration_s(self) -> float:
        return self.t_max_s - self.t_min_s

    @property
    def name(self) -> str:
        return self.template_id or f"{self.recording_id}@{self.t_min_s:g}s"

    @property
    def where(self) -> str:
        return self.source or f"template {self.name}"


@dataclass(frozen=True)
class TemplatePatch:
    """A template's flattened spectrogram patch, ready to slide over recordings."""

    template: Template
    sample_rate_hz: int
    row_start: int  # first frequency row (spectrogram bin) of the template's band
    row_stop: int  # one past the last
    patch: np.ndarray  # rows x frames, float64
    lag_s: float = 0.0  # how far the patch's first frame starts after t_min (frames fall on a hop grid)

    @property
    def n_frames(self) -> int:
        return self.patch.shape[1]


@dataclass(frozen=True)
class Candidate:
    """One match: a box as long as the template, starting where the NCC peaked."""

    recording_id: str
    species_id: int
    songtype_id: int
    t_min_s: float
    f_min_hz: float
    t_max_s: float
    f_max_hz: float
    score: float
    template_id: str

    def as_row(self) -> dict:
        return dict(zip(CANDIDATE_COLUMNS, (self.recording_id, self.species_id, self.songtype_id, self.t_min_s,
                                            self.f_min_hz, self.t_max_s, self.f_max_hz, self.score, self.template_id)))


def read_templates(path: str | Path) -> list[Template]:
    """Templates from a CSV with the RFCx label columns (plus an optional ``template_id``)."""
    path = Path(path)
    boxes = read_boxes(path, label=1)  # validates every row; bad rows raise naming their lines
    ids = read_text_table(path, what="template file", header=",".join(LABEL_COLUMNS) + ",template_id")
    given = list(ids["template_id"]) if "template_id" in ids.columns else [""] * len(boxes)
    lines = list(ids.index)
    templates = [Template(recording_id=b.recording_id, species_id=b.species_id, songtype_id=b.songtype_id, t_min_s=b.t_min_s,
                          t_max_s=b.t_max_s, f_min_hz=b.f_min_hz, f_max_hz=b.f_max_hz, template_id=given[i],
                          source=f"{path} line {lines[i]}") for i, b in enumerate(boxes)]
    names = [t.name for t in templates]
    # two boxes starting together in one recording would share the default id; the line tells them apart
    return [t if t.template_id or names.count(t.name) == 1 else replace(t, template_id=f"{t.name}#line{lines[i]}")
            for i, t in enumerate(templates)]


def log_spectrogram(samples: np.ndarray) -> np.ndarray:
    """Log magnitude, frequency rows x time frames; frame ``j`` starts at sample ``j * HOP_SAMPLES``."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.shape[0] < WINDOW_SAMPLES:
        samples = np.pad(samples, (0, WINDOW_SAMPLES - samples.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(samples, WINDOW_SAMPLES)[::HOP_SAMPLES]
    spectrum = scipy.fft.rfft(frames * hann(WINDOW_SAMPLES, sym=False).astype(np.float32), axis=1)
    return np.log(np.abs(spectrum) + _LOG_FLOOR).T


def flatten(spectrogram: np.ndarray) -> np.ndarray:
    """Subtract each frequency row's median over time, so only what stands out of the background is left."""
    return spectrogram - np.median(spectrogram, axis=1, keepdims=True)


def normalized_cross_correlation(band: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """NCC of ``patch`` (rows x W) at every time offset of ``band`` (rows x N): N - W + 1 scores in [-1, 1].

    Only time shifts, because a call shifted in pitch is another call. Computed with FFTs and
    running sums, so the cost grows with N log N rather than N * W.
    """
    band, patch = np.asarray(band, dtype=np.float64), np.asarray(patch, dtype=np.float64)
    n_rows, width = patch.shape
    if band.shape[0] != n_rows or band.shape[1] < width:
        return np.zeros(0)
    centred = patch - patch.mean()
    patch_norm = math.sqrt(float((centred**2).sum()))
    # the centred patch sums to zero, so correlating with the raw band already removes each window's mean
    numerator = fftconvolve(band, centred[:, ::-1], mode="valid", axes=1).sum(axis=0)
    sums = np.concatenate([[0.0], np.cumsum(band.sum(axis=0))])
    squares = np.concatenate([[0.0], np.cumsum((band**2).sum(axis=0))])
    window_sum, window_squares = sums[width:] - sums[:-width], squares[width:] - squares[:-width]
    variance = np.maximum(window_squares - window_sum**2 / (n_rows * width), 0.0)
    denominator = np.sqrt(variance) * patch_norm
    flat = denominator <= 1e-9 * max(patch_norm, 1.0)  # a window with no variation matches nothing
    scores = np.where(flat, 0.0, numerator / np.where(flat, 1.0, denominator))
    return np.clip(scores, -1.0, 1.0)


def pick_peaks(scores: np.ndarray, *, threshold: float, min_distance: int, top_n: int | None = None) -> np.ndarray:
    """Indices of local maxima >= ``threshold``, at least ``min_distance`` apart, strongest first."""
    if scores.size == 0:
        return np.zeros(0, dtype=int)
    padded = np.concatenate([[-np.inf], scores, [-np.inf]])  # lets a peak sit on the first or last offset
    peaks, _ = find_peaks(padded, height=threshold, distance=max(1, int(min_distance)))
    peaks = peaks - 1
    order = peaks[np.argsort(-scores[peaks], kind="stable")]
    return order[:top_n] if top_n is not None else order


def template_patches(templates: Iterable[Template], *, audio_dir: str | Path,
                     sample_rate_hz: int | None = None) -> list[TemplatePatch]:
    """Cut every template's patch out of its recording under ``audio_dir``; all problems raise together.

    A template names its recording by file stem or, in an archive of site folders, by its
    path id (``siteA/20240401/20240401_060000``). Patches are cut at each recording's own rate,
    or all at ``sample_rate_hz`` (archive jobs decode at one rate).
    """
    templates = list(templates)
    audio_dir = Path(audio_dir)
    files = find_recordings_by_id(audio_dir) if templates else {}
    recordings: dict[str, tuple[int, float, np.ndarray]] = {}
    patches, problems = [], []
    for template in templates:
        try:
            if template.recording_id not in recordings:
                recordings[template.recording_id] = _template_recording(template, files, audio_dir, sample_rate_hz)
            patches.append(_cut_patch(template, *recordings[template.recording_id]))
        except InputError as exc:
            problems.append(f"{template.where}: {exc}")
    if problems:
        raise ValidationError("templates", problems)
    return patches


def _template_recording(template: Template, files: dict[str, Path], audio_dir: Path,
                        sample_rate_hz: int | None = None) -> tuple[int, float, np.ndarray]:
    path = files.get(template.recording_id)
    if path is None:
        raise InputError(f"recording '{template.recording_id}' has no audio file under {audio_dir}; "
                         "check the recording_id or pass the right --template-audio")
    info = probe_audio(path)
    rate = sample_rate_hz or info.sample_rate_hz
    return rate, info.duration_s, flatten(log_spectrogram(load_audio(path, sample_rate_hz=rate)))


def _cut_patch(template: Template, sample_rate_hz: int, duration_s: float, spectrogram: np.ndarray) -> TemplatePatch:
    nyquist_hz = sample_rate_hz / 2
    if not template.t_min_s < template.t_max_s or not 0 <= template.f_min_hz < template.f_max_hz:
        raise InputError(f"empty box (t {template.t_min_s}..{template.t_max_s} s, f {template.f_min_hz}..{template.f_max_hz} Hz); "
                         "t_min must be below t_max and f_min below f_max")
    if template.t_min_s < 0 or template.t_max_s > duration_s + _BOX_END_TOLERANCE_S:
        raise InputError(f"box {template.t_min_s}..{template.t_max_s} s lies outside recording '{template.recording_id}' "
                         f"(0..{duration_s:.3f} s); fix t_min/t_max")
    if template.f_max_hz > nyquist_hz:
        raise InputError(f"f_max {template.f_max_hz} Hz is above the Nyquist frequency ({nyquist_hz:g} Hz) of recording "
                         f"'{template.recording_id}'; lower f_max")
    hz_per_row = sample_rate_hz / WINDOW_SAMPLES
    row_start, row_stop = round(template.f_min_hz / hz_per_row), round(template.f_max_hz / hz_per_row) + 1
    frame_start = round(template.t_min_s * sample_rate_hz / HOP_SAMPLES)
    frame_stop = min(round(template.t_max_s * sample_rate_hz / HOP_SAMPLES), spectrogram.shape[1])
    if frame_stop - frame_start < 2:
        raise InputError(f"box lasts {template.duration_s:.4f} s, shorter than two spectrogram hops "
                         f"({2 * HOP_SAMPLES / sample_rate_hz:.4f} s); widen t_min..t_max")
    patch = spectrogram[row_start:row_stop, frame_start:frame_stop].astype(np.float64)
    if np.ptp(patch) == 0:
        raise InputError(f"the box in recording '{template.recording_id}' is silent or constant; choose a box with a call in it")
    return TemplatePatch(template=template, sample_rate_hz=sample_rate_hz, row_start=row_start, row_stop=row_stop, patch=patch,
                         lag_s=frame_start * HOP_SAMPLES / sample_rate_hz - template.t_min_s)


def match_recording(path: str | Path, *, patches: Sequence[TemplatePatch], threshold: float = DEFAULT_THRESHOLD,
                    top_n: int | None = None, recording_id: str | None = None) -> list[Candidate]:
    """Every template's candidates in one recording (top ``top_n`` per template), strongest first."""
    recording_id = recording_id or Path(path).stem
    candidates: list[Candidate] = []
    for sample_rate_hz in sorted({p.sample_rate_hz for p in patches}):
        spectrogram = flatten(log_spectrogram(load_audio(path, sample_rate_hz=sample_rate_hz)))
        for patch in (p for p in patches if p.sample_rate_hz == sample_rate_hz):
            scores = normalized_cross_correlation(spectrogram[patch.row_start:patch.row_stop], patch.patch)
            template = patch.template
            for offset in pick_peaks(scores, threshold=threshold, min_distance=math.ceil(patch.n_frames / 2), top_n=top_n):
                t_min_s = max(0.0, offset * HOP_SAMPLES / sample_rate_hz - patch.lag_s)
                candidates.append(Candidate(recording_id, template.species_id, template.songtype_id, t_min_s, template.f_min_hz,
                                            t_min_s + template.duration_s, template.f_max_hz, float(scores[offset]), template.name))
    return sorted(candidates, key=lambda c: -c.score)


def match_directory(*, templates: Sequence[Template] | str | Path, audio_dir: str | Path, template_audio_dir: str | Path | None = None,
                    threshold: float = DEFAULT_THRESHOLD, top_n: int | None = None, workers: int = 0,
                    recording_ids: Sequence[str] | None = None, progress: bool = False) -> pd.DataFrame:
    """Match templates (a list or a label CSV) against every recording under ``audio_dir``.

    Template audio is looked up under ``template_audio_dir`` (default ``audio_dir``);
    ``recording_ids`` limits the search. Unreadable recordings are skipped with a warning.
    Returns the candidates table (:data:`CANDIDATE_COLUMNS`), recordings in id order.
    """
    if top_n is not None and top_n < 1:
        raise InputError(f"--top-n must be at least 1, got {top_n}")
    if isinstance(templates, (str, Path)):
        templates = read_templates(templates)
    patches = template_patches(templates, audio_dir=template_audio_dir if template_audio_dir is not None else audio_dir)
    files = find_audio_files(audio_dir, ids="path")
    if recording_ids is not None:
        unknown = [r for r in recording_ids if r not in files]
        if unknown:
            raise InputError(f"{audio_dir}: no audio for recording(s) {', '.join(unknown[:5])}; check the recording ids")
        files = {r: files[r] for r in recording_ids}
    workers = min(workers or os.cpu_count() or 1, max(len(files), 1))
    results: dict[str, list[Candidate]] = {}
    with tqdm(total=len(files), desc="match", unit="rec", disable=not progress) as bar:
        for recording_id, found, error in _run_jobs(list(files.items()), patches, threshold, top_n, workers):
            if error is not None:
                warnings.warn(f"skipped unreadable recording {files[recording_id]}: {error}", stacklevel=2)
            results[recording_id] = found
            bar.update(1)
    rows = [c.as_row() for recording_id in sorted(results) for c in results[recording_id]]
    return pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS))


def write_candidates(path: str | Path, candidates: pd.DataFrame) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    candidates.to_csv(path, index=False, float_format="%.4f")
    return path


_worker_state: dict = {}


def _init_worker(patches, threshold, top_n) -> None:
    # patches travel once per worker process, not once per recording
    _worker_state.update(patches=patches, threshold=threshold, top_n=top_n)


def _match_job(item: tuple[str, Path]) -> tuple[str, list[Candidate], str | None]:
    recording_id, path = item
    try:
        found = match_recording(path, patches=_worker_state["patches"], threshold=_worker_state["threshold"],
                                top_n=_worker_state["top_n"], recording_id=recording_id)
        return recording_id, found, None
    except AudioError as exc:
        return recording_id, [], str(exc)


def _run_jobs(items, patches, threshold, top_n, workers):
    if workers <= 1:
        _init_worker(patches, threshold, top_n)
        yield from map(_match_job, items)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(patches, threshold, top_n)) as pool:
        futures = [pool.submit(_match_job, item) for item in items]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


class TemplateScorer:
    """Template matching as a chunk scorer for the batch engine (``batch.scoring.ChunkScorer``).

    Every chunk is flattened and matched on its own; a chunk carries one template length of
    audio beyond its span, so a call across an edge is found whole, and peaks closer than
    half a template are merged across chunk edges in ``finish``. Files up to one chunk long
    give exactly ``match_recording``'s candidates.
    """

    def __init__(self, *, patches: Sequence[TemplatePatch], threshold: float = DEFAULT_THRESHOLD, top_n: int | None = None):
        rates = sorted({p.sample_rate_hz for p in patches})
        if len(rates) != 1:
            raise InputError(f"templates cut at several sample rates ({rates}); cut them at one (template_patches(sample_rate_hz=...))")
        if top_n is not None and top_n < 1:
            raise InputError(f"--top-n must be at least 1, got {top_n}")
        self.patches, self.threshold, self.top_n = list(patches), float(threshold), top_n
        self.sample_rate_hz = rates[0]
        self.step_s = HOP_SAMPLES / self.sample_rate_hz
        self.overlap_s = max(p.template.duration_s for p in self.patches) + 2 * self.step_s

    def fingerprint(self) -> dict:
        import hashlib

        digest = hashlib.sha1(b"".join(p.patch.astype(np.float64).tobytes() for p in self.patches)).hexdigest()[:16]
        return {"detector": "template", "templates": [p.template.name for p in self.patches], "patches": digest,
                "sample_rate_hz": self.sample_rate_hz, "threshold": self.threshold, "top_n": self.top_n}

    def score_chunk(self, samples: np.ndarray, *, offset: int, own_until: int, n_total: int) -> pd.DataFrame:
        spectrogram = flatten(log_spectrogram(samples))
        rows = []
        for patch in self.patches:
            scores = normalized_cross_correlation(spectrogram[patch.row_start:patch.row_stop], patch.patch)
            template = patch.template
            for frame in pick_peaks(scores, threshold=self.threshold, min_distance=math.ceil(patch.n_frames / 2)):
                start = offset + int(frame) * HOP_SAMPLES
                if not offset <= start < own_until:
                    continue  # the next chunk owns it
                t_min_s = max(0.0, start / self.sample_rate_hz - patch.lag_s)
                rows.append((template.species_id, template.songtype_id, t_min_s, template.f_min_hz,
                             t_min_s + template.duration_s, template.f_max_hz, float(scores[frame]), template.name))
        return pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS[1:]))

    def finish(self, rows: pd.DataFrame) -> pd.DataFrame:
        if rows.empty:
            return pd.DataFrame(columns=list(CANDIDATE_COLUMNS[1:]))
        kept = []
        for patch in self.patches:
            mine = rows[rows["template_id"] == patch.template.name].sort_values("score", ascending=False, kind="stable")
            min_gap_s = math.ceil(patch.n_frames / 2) * HOP_SAMPLES / self.sample_rate_hz
            chosen: list[float] = []
            for index, t_min_s in zip(mine.index, mine["t_min"]):
                if all(abs(t_min_s - t) >= min_gap_s for t in chosen):
                    chosen.append(t_min_s)
                    kept.append(index)
                    if self.top_n is not None and len(chosen) == self.top_n:
                        break
        return rows.loc[kept].sort_values("score", ascending=False, kind="stable")
