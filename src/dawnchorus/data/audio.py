"""Decoding recordings: FLAC/WAV/MP3/OGG to mono float32 at a target rate, whole or as a seeked crop.

Crops seek in the file instead of decoding the whole minute, and are read with a small
margin on both sides so the resampler's filter has real context at the crop edges.
Output lengths are exact (``round(duration_s * sample_rate_hz)``), so a 44.1 kHz file and a
48 kHz file of the same duration give arrays of identical length.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioError, InputError
from ..stages import timed

# What libsndfile (soundfile >= 0.12) decodes; anything else with an audio-like extension is
# reported as unreadable rather than silently passed over.
AUDIO_EXTENSIONS = (".flac", ".wav", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".w64")
UNSUPPORTED_AUDIO_EXTENSIONS = (".m4a", ".aac", ".wma", ".mp4", ".wv", ".ape", ".amr", ".3gp", ".caf", ".webm")
_RESAMPLE_MARGIN_S = 0.02


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says about one recording."""

    path: Path
    sample_rate_hz: int
    n_frames: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.sample_rate_hz

    @property
    def nyquist_hz(self) -> float:
        return self.sample_rate_hz / 2.0


def probe_audio(path: str | Path) -> AudioInfo:
    """Read the header only. Raises AudioError naming the file when it is unreadable or empty."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile reports corrupt files with several exception types
        raise AudioError(f"{path}: not a readable audio file ({_short(exc)}); re-export or remove it") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{path}: audio file is empty (0 samples); re-export or remove it")
    return AudioInfo(path=path, sample_rate_hz=int(info.samplerate), n_frames=int(info.frames), channels=int(info.channels))


def n_samples(duration_s: float, sample_rate_hz: int) -> int:
    """Number of samples a span lasts at a rate; the one rounding rule used everywhere."""
    return int(round(duration_s * sample_rate_hz))


def resample(signal: np.ndarray, *, from_hz: int, to_hz: int, n_out: int | None = None) -> np.ndarray:
    """High-quality (soxr HQ) resampling of a 1-D signal to an exact output length."""
    if from_hz != to_hz:
        signal = soxr.resample(signal, from_hz, to_hz, quality="HQ")
    if n_out is not None:
        signal = _fit_length(signal, n_out)
    return np.ascontiguousarray(signal, dtype=np.float32)


def load_audio(
    path: str | Path,
    *,
    sample_rate_hz: int,
    t_start_s: float = 0.0,
    duration_s: float | None = None,
    channel: int | None = None,
    info: AudioInfo | None = None,
) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``sample_rate_hz``.

    With ``duration_s`` only that span is decoded (the file is seeked); a span running past
    the end of the recording is zero-padded, so crops always have the asked length.
    Channels are averaged unless ``channel`` (0-based) picks one. ``info`` skips the header
    read when the caller already has it (chunked reading of long files).
    """
    info = info if info is not None else probe_audio(path)
    if channel is not None and not 0 <= channel < info.channels:
        raise AudioError(f"{path}: has {info.channels} channel(s); channel {channel} does not exist (channels count from 0)")
    if t_start_s < 0:
        raise AudioError(f"{path}: crop start {t_start_s:.3f} s is negative")
    if t_start_s >= info.duration_s:
        raise AudioError(f"{path}: crop start {t_start_s:.3f} s is beyond the end of the recording ({info.duration_s:.3f} s)")
    if duration_s is None:
        duration_s = info.duration_s - t_start_s
    if duration_s <= 0:
        raise AudioError(f"{path}: crop duration must be positive, got {duration_s}")
    n_out = n_samples(duration_s, sample_rate_hz)
    rate_in = info.sample_rate_hz
    margin = 0 if rate_in == sample_rate_hz else n_samples(_RESAMPLE_MARGIN_S, rate_in)
    first = int(np.floor(t_start_s * rate_in))
    read_from = max(0, first - margin)
    read_to = min(info.n_frames, int(np.ceil((t_start_s + duration_s) * rate_in)) + margin)
    with timed("read"):
        raw = _read_frames(info, read_from, read_to, channel=channel)
    if rate_in == sample_rate_hz:
        return _fit_length(raw, n_out)
    with timed("resample"):
        resampled = resample(raw, from_hz=rate_in, to_hz=sample_rate_hz)
    skip = n_samples((t_start_s * rate_in - read_from) / rate_in, sample_rate_hz)
    return _fit_length(resampled[skip:], n_out)


def _read_frames(info: AudioInfo, start: int, stop: int, *, channel: int | None = None) -> np.ndarray:
    try:
        with sf.SoundFile(str(info.path)) as handle:
            handle.seek(start)
            frames = handle.read(stop - start, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{info.path}: decoding failed ({_short(exc)}); the file may be truncated or corrupt") from None
    if frames.shape[0] == 0 and stop > start:
        raise AudioError(f"{info.path}: no samples could be decoded; the file may be truncated or corrupt")
    if channel is not None:
        mono = frames[:, channel]
    else:
        mono = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
    if not np.isfinite(mono).all():  # float WAVs can hold NaN/Inf; one would poison every window's spectrogram
        warnings.warn(f"{info.path}: holds NaN or infinite samples; they are read as silence", stacklevel=2)
        mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _fit_length(signal: np.ndarray, n_out: int) -> np.ndarray:
    if signal.shape[0] >= n_out:
        return np.ascontiguousarray(signal[:n_out], dtype=np.float32)
    padded = np.zeros(n_out, dtype=np.float32)
    padded[: signal.shape[0]] = signal
    return padded


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def walk_files(root: str | Path, *, skip: Sequence[Path] = ()) -> Iterator[Path]:
    """Every file under ``root``, sorted, following symbolic links to folders.

    A folder reached twice (a link loop, or two links to one place) is walked once. Hidden
    entries (``.Trashes``, macOS ``._x.WAV`` resource forks) are not recordings and are left
    out; so are the folders in ``skip`` (e.g. a job's own output folder inside the archive).
    """
    root = Path(root)
    skipped = {os.path.realpath(p) for p in skip}
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen or os.path.realpath(folder) in skipped:
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def is_audio_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS + UNSUPPORTED_AUDIO_EXTENSIONS


def path_ids(root: str | Path, paths: Sequence[Path]) -> dict[str, Path]:
    """Stable recording ids from paths under ``root``: the relative path without its extension
    (a flat folder gives the file stems), or with it where two files of one folder share a stem."""
    root = Path(root)
    relative = [p.relative_to(root).as_posix() for p in paths]
    stems = [r[: -len(Path(r).suffix)] if Path(r).suffix else r for r in relative]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    return {(stem if counts[stem] == 1 else rel): path for stem, rel, path in zip(stems, relative, paths)}


def find_audio_files(directory: str | Path, *, ids: str = "stem") -> dict[str, Path]:
    """Recording id -> path for every readable-format recording under ``directory``, sorted by id.

    ``ids="stem"`` (datasets, whose labels name recordings by file stem): two files with one
    stem would make labels ambiguous, so that is an error. ``ids="path"`` (archives, where
    every site folder holds a ``20240401_060000.WAV``): the path relative to ``directory``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AudioError(f"{directory}: audio directory not found")
    paths = [p for p in walk_files(directory) if p.suffix.lower() in AUDIO_EXTENSIONS]
    if ids == "path":
        return dict(sorted(path_ids(directory, paths).items()))
    if ids != "stem":
        raise ValueError(f"ids must be 'stem' or 'path', not {ids!r}")
    found: dict[str, Path] = {}
    for path in paths:
        if path.stem in found:
            raise AudioError(
                f"{directory}: two audio files share the recording id '{path.stem}': {found[path.stem]} and {path}; "
                "rename one (an archive of site folders can be predicted as it is: recording ids are then relative paths)"
            )
        found[path.stem] = path
    return dict(sorted(found.items()))


def soundscape_files(directory: str | Path | None, *, setting: str) -> list[Path]:
    """Every recording under a folder the user named in ``setting`` (real backgrounds, say), in
    path order so that runs repeat on every machine; a missing or audio-less folder is an error."""
    if directory is None or not Path(directory).is_dir():
        raise InputError(f"{setting} {None if directory is None else str(directory)!r} is not a folder; "
                         "give a folder of real soundscape recordings")
    files = list(find_audio_files(directory, ids="path").values())
    if not files:
        raise InputError(f"{setting} {str(directory)!r} holds no audio file (FLAC, WAV, MP3, OGG, ...)")
    return files


def find_recordings_by_id(directory: str | Path) -> dict[str, Path]:
    """Recordings under ``directory`` by every id a label may use for them: the relative path id
    (``siteA/20240401/20240401_060000``) and, where no other file shares it, the file stem."""
    by_path = find_audio_files(directory, ids="path")
    stems: dict[str, list[Path]] = {}
    for path in by_path.values():
        stems.setdefault(path.stem, []).append(path)
    return {**{stem: paths[0] for stem, paths in stems.items() if len(paths) == 1}, **by_path}


def window_starts(n_total: int, *, window: int, hop: int) -> np.ndarray:
    """Window starts (in samples) covering the whole signal; the last window ends at the end."""
    if n_total <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_total - window + 1, hop, dtype=np.int64)
    if starts[-1] + window < n_total:
        starts = np.append(starts, n_total - window)
    return starts


def window_starts_between(n_total: int, *, window: int, hop: int, first: int, stop: int) -> np.ndarray:
    """The starts of ``window_starts(n_total, ...)`` that lie in ``[first, stop)``, without listing
    the whole file's windows (a chunk of a 24-hour file asks for its own few)."""
    if n_total <= window:
        return np.zeros(1 if first <= 0 < stop else 0, dtype=np.int64)
    last = n_total - window
    starts = np.arange(-(-max(first, 0) // hop) * hop, min(stop, last + 1), hop, dtype=np.int64)
    if last % hop and first <= last < stop:  # the extra window that ends at the end of the file
        starts = np.append(starts, last)
    return starts
