"""What an archive job writes: detections for Raven, Audacity and BirdNET users, and per-recording scores.

Every writer takes recordings one at a time (``add``) and keeps no window rows between calls,
so a 100,000-file archive costs the memory of one recording. Tables that cover many recordings
are streamed to a temporary file beside the target and moved into place on ``close``; a job
killed half-way leaves the previous complete file, never half a table under the real name.

Window rows have ``t_start_s``, ``t_end_s`` (seconds within the file) and one score column per
species (``s<species_id>``); a detection is a (window, species) whose score reaches the threshold.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np
import pandas as pd

from ..atomic import atomic_write_text, path_inside
from ..data.species import SpeciesTable, species_column
from ..errors import InputError
from ..scores import check_aggregation

if TYPE_CHECKING:
    from .manifest import ManifestEntry

Band = tuple[float, float]
RAVEN_COLUMNS = ("Selection", "View", "Channel", "Begin File", "Begin Path", "File Offset (s)", "Begin Time (s)",
                 "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)", "Species", "Species ID", "Score", "Begin Date Time")
RAVEN_COMBINED_NAME = "detections.selections.txt"
BIRDNET_COLUMNS = ("Start (s)", "End (s)", "Scientific name", "Common name", "Confidence", "File")
SUMMARY_COLUMNS = ("path", "recording_id", "site", "start_time", "duration_s", "species_id", "species", "max_score", "topk_mean")


class OutputWriter(Protocol):
    def add(self, entry: ManifestEntry, windows: pd.DataFrame) -> None: ...

    def close(self) -> list[Path]: ...


def display_names(species: SpeciesTable) -> list[str]:
    """What a person reads for each species: its name, or ``species <id>`` when only the column name is known."""
    return [f"species {s}" if name == species_column(s) else name for s, name in zip(species.species_ids, species.names)]


def _number(value: float, decimals: int = 6) -> str:
    value = float(value)
    return repr(round(value, decimals)) if math.isfinite(value) else ""


def _check_threshold(threshold, species: SpeciesTable) -> np.ndarray:
    """The threshold of each species column: one number for all, or a mapping species id -> number
    (``predict --threshold-precision``: each species its own calibrated threshold)."""
    given = threshold if isinstance(threshold, Mapping) else {species_id: threshold for species_id in species.species_ids}
    unknown = sorted(set(given) - set(species.species_ids))
    if unknown:
        raise InputError(f"detection thresholds for species {unknown} that the run does not have")
    values = []
    for species_id in species.species_ids:
        raw = given.get(species_id, math.nan)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise InputError(f"detection threshold '{raw}' of species {species_id} is not a number; give e.g. --threshold 0.5")
        values.append(value)
    return np.asarray(values, dtype=np.float64)


def _scores(entry: ManifestEntry, windows: pd.DataFrame, species: SpeciesTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window starts, ends and the (window x species) score matrix, in time order."""
    if len(windows) == 0:  # an empty frame may come without columns at all
        return np.zeros(0), np.zeros(0), np.zeros((0, len(species)))
    missing = [c for c in ("t_start_s", "t_end_s", *species.columns) if c not in windows.columns]
    if missing:
        raise InputError(f"{entry.path}: window scores lack column(s) {', '.join(missing)}; "
                         "score the recording again with this species list")
    ordered = windows.sort_values("t_start_s", kind="stable")
    return (ordered["t_start_s"].to_numpy(np.float64), ordered["t_end_s"].to_numpy(np.float64),
            ordered[species.columns].to_numpy(np.float64))


def _detections(entry, windows, species, threshold) -> list[tuple[float, float, int, float]]:
    """(t_start_s, t_end_s, species index, score) by time, then species order."""
    starts, ends, scores = _scores(entry, windows, species)
    rows, columns = np.nonzero(scores >= threshold)
    return [(float(starts[r]), float(ends[r]), int(c), float(scores[r, c])) for r, c in zip(rows, columns)]


def _band(entry: ManifestEntry, species_id: int, bands: dict[int, Band] | None) -> Band:
    if entry.sample_rate_hz <= 0:
        raise InputError(f"{entry.path}: the manifest has no sample rate for this file; list the archive again")
    nyquist = entry.sample_rate_hz / 2
    band = (bands or {}).get(species_id)
    if band is None:
        return 0.0, nyquist
    low, high = (min(max(float(f), 0.0), nyquist) for f in band)
    if low >= high:  # the band lies above this file's Nyquist: a zero-height box cannot be drawn or read back
        return 0.0, nyquist
    return low, high


def _mirrored(out_dir: Path, entry: ManifestEntry, suffix: str) -> Path:
    """``out_dir`` / the file's folder / its stem + suffix: two sites' ``20240401_060000.WAV`` stay apart."""
    relative = PurePosixPath(entry.path)
    # Where a folder holds x.WAV and x.mp3 the recording id keeps the extension; so must the output name.
    base = relative.name if PurePosixPath(entry.recording_id).name == relative.name else relative.stem
    # the manifest is a file in the job folder, so its paths are checked like any other name read from disk
    return path_inside(out_dir, (relative.parent / f"{base}{suffix}").as_posix(), what="archive file")


def _tsv_line(cells: list[str]) -> str:
    # Raven reads plain tab-separated text: quotes or escapes would end up inside its cells (and
    # double the backslashes of Windows paths), so a stray tab or newline in a name becomes a space.
    return "\t".join(str(c).replace("\t", " ").replace("\r", " ").replace("\n", " ") for c in cells) + "\n"


def _clock_time(start_time: str, offset_s: float) -> str:
    """Raven's ``Begin Date Time`` (``2024/04/01 06:00:01.500``) of a detection, '' when the file's start is unknown."""
    if not start_time:
        return ""
    from datetime import datetime, timedelta

    moment = datetime.fromisoformat(start_time) + timedelta(seconds=float(offset_s))
    return moment.strftime("%Y/%m/%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


class _StreamedTable:
    """One table across all recordings: rows go to a temporary file at once, which replaces the target on close."""

    def __init__(self, path: Path, header: list[str], *, delimiter: str):
        self.path = Path(path)
        self._header, self._delimiter = header, delimiter
        self._stream = self._temporary = self._writer = None
        self._closed: list[Path] | None = None

    def write_rows(self, rows: list[list[str]]) -> None:
        if self._closed is not None:
            raise RuntimeError(f"{self.path}: add() after close()")
        if self._stream is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, self._temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            self._stream = os.fdopen(handle, "w", encoding="utf-8", newline="")
            if self._delimiter != "\t":
                self._writer = csv.writer(self._stream, lineterminator="\n")
            self._write([self._header])
        self._write(rows)

    def _write(self, rows: list[list[str]]) -> None:
        if self._writer is not None:
            self._writer.writerows(rows)
        else:
            self._stream.writelines(_tsv_line(row) for row in rows)

    def close(self) -> list[Path]:
        if self._closed is None:
            self.write_rows([])  # a job with nothing to report still leaves the (empty) table
            self._stream.close()
            os.replace(self._temporary, self.path)
            self._closed = [self.path]
        return list(self._closed)


class RavenTables:
    """Raven Pro selection tables of the detections: one per recording (mirroring the archive's
    folders), or with ``combined`` one table for the whole run laid out as Raven writes a file
    sequence (``Begin Time`` counts from the first recording added, ``File Offset`` within the file)."""

    def __init__(self, *, out_dir: str | Path, audio_root: str | Path, species: SpeciesTable, threshold: float,
                 bands: dict[int, Band] | None = None, combined: bool = False):
        self.out_dir, self.audio_root = Path(out_dir), Path(audio_root).absolute()
        self.species, self.threshold, self.bands = species, _check_threshold(threshold, species), bands
        self._names = display_names(species)
        self._sequence_start_s = 0.0
        self._combined = _StreamedTable(self.out_dir / RAVEN_COMBINED_NAME, list(RAVEN_COLUMNS), delimiter="\t") if combined else None
        self._selections = 0
        self._written: list[Path] = []

    def table_path(self, entry: ManifestEntry) -> Path:
        if self._combined is not None:
            return self._combined.path
        return _mirrored(self.out_dir, entry, ".Table.1.selections.txt")

    def add(self, entry: ManifestEntry, windows: pd.DataFrame) -> None:
        detections = _detections(entry, windows, self.species, self.threshold)
        if self._combined is None:
            self._selections = 0
            path = self.table_path(entry)
            rows = self._rows(entry, detections, sequence_start_s=0.0)
            if rows:
                text = "".join(_tsv_line(row) for row in [list(RAVEN_COLUMNS), *rows])
                self._written.append(atomic_write_text(path, text))
            else:
                path.unlink(missing_ok=True)  # a table left by an earlier run (another threshold) would now be wrong
            return
        self._combined.write_rows(self._rows(entry, detections, sequence_start_s=self._sequence_start_s))
        self._sequence_start_s += float(entry.duration_s)

    def _rows(self, entry: ManifestEntry, detections, *, sequence_start_s: float) -> list[list[str]]:
        file_name, file_path = PurePosixPath(entry.path).name, str(entry.absolute(self.audio_root))
        rows = []
        for start_s, end_s, index, score in detections:
            self._selections += 1
            species_id = self.species.species_ids[index]
            low, high = _band(entry, species_id, self.bands)
            rows.append([str(self._selections), "Spectrogram 1", "1", file_name, file_path, _number(start_s),
                         _number(sequence_start_s + start_s), _number(sequence_start_s + end_s), _number(low, 3),
                         _number(high, 3), self._names[index], str(species_id), _number(score),
                         _clock_time(entry.start_time, start_s)])
        return rows

    def close(self) -> list[Path]:
        return self._combined.close() if self._combined is not None else list(self._written)


class AudacityLabels:
    """One Audacity label track per recording with detections, with each label's frequency band
    (the spectral-selection line Audacity itself writes: ``\\<TAB>f_min<TAB>f_max``)."""

    def __init__(self, *, out_dir: str | Path, species: SpeciesTable, threshold: float, bands: dict[int, Band] | None = None):
        self.out_dir, self.species, self.threshold, self.bands = Path(out_dir), species, _check_threshold(threshold, species), bands
        self._names = display_names(species)
        self._written: list[Path] = []

    def add(self, entry: ManifestEntry, windows: pd.DataFrame) -> None:
        path = _mirrored(self.out_dir, entry, ".txt")
        lines = []
        for start_s, end_s, index, score in _detections(entry, windows, self.species, self.threshold):
            low, high = _band(entry, self.species.species_ids[index], self.bands)
            lines.append(f"{start_s:.6f}\t{end_s:.6f}\t{self._names[index]} {score:.3f}\n\\\t{low:.6f}\t{high:.6f}\n")
        if lines:
            self._written.append(atomic_write_text(path, "".join(lines)))
        else:
            path.unlink(missing_ok=True)  # a track left by an earlier run (another threshold) would now be wrong

    def close(self) -> list[Path]:
        return list(self._written)


class BirdnetCsv:
    """All detections in BirdNET-Analyzer's CSV layout, for tools that read its results."""

    def __init__(self, *, out_path: str | Path, audio_root: str | Path, species: SpeciesTable, threshold: float):
        self.audio_root, self.species, self.threshold = Path(audio_root).absolute(), species, _check_threshold(threshold, species)
        self._names = display_names(species)
        self._table = _StreamedTable(Path(out_path), list(BIRDNET_COLUMNS), delimiter=",")

    def add(self, entry: ManifestEntry, windows: pd.DataFrame) -> None:
        file_path = str(entry.absolute(self.audio_root))
        self._table.write_rows([[_number(start_s), _number(end_s), self._names[index], self._names[index], _number(score), file_path]
                                for start_s, end_s, index, score in _detections(entry, windows, self.species, self.threshold)])

    def close(self) -> list[Path]:
        return self._table.close()


def _recording_scores(entry, windows, species, top_k) -> tuple[np.ndarray, np.ndarray]:
    """Per species: the highest window score and the mean of the top_k (NaN without windows)."""
    _, _, scores = _scores(entry, windows, species)
    if len(scores) == 0:
        return np.full(len(species), np.nan), np.full(len(species), np.nan)
    ranked = -np.sort(-scores, axis=0)
    return scores.max(axis=0), ranked[:top_k].mean(axis=0)


class RecordingSummary:
    """One row per recording and species: where, when, and how strongly the species was heard."""

    def __init__(self, *, out_path: str | Path, species: SpeciesTable, top_k: int = 3):
        check_aggregation("topk_mean", top_k)
        self.species, self.top_k = species, int(top_k)
        self._names = display_names(species)
        self._table = _StreamedTable(Path(out_path), list(SUMMARY_COLUMNS), delimiter=",")

    def add(self, entry: ManifestEntry, windows: pd.DataFrame) -> None:
        best, top_mean = _recording_scores(entry, windows, self.species, self.top_k)
        facts = [entry.path, entry.recording_id, entry.site, entry.start_time, _number(entry.duration_s)]
        self._table.write_rows([facts + [str(species_id), self._names[i], _number(best[i]), _number(top_mean[i])]
                                for i, species_id in enumerate(self.species.species_ids)])

    def close(self) -> list[Path]:
        return self._table.close()


class SubmissionCsv:
    """The wide Kaggle table ``recording_id,s0,s1,...``: one score per recording and species."""

    def __init__(self, *, out_path: str | Path, species: SpeciesTable, aggregate: str = "max", top_k: int = 3):
        check_aggregation(aggregate, top_k)
        self.species, self.aggregate, self.top_k = species, aggregate, int(top_k)
        self._table = _StreamedTable(Path(out_path), ["recording_id", *species.columns], delimiter=",")

    def add(self, entry: ManifestEntry, windows: pd.DataFrame) -> None:
        best, top_mean = _recording_scores(entry, windows, self.species, self.top_k)
        values = best if self.aggregate == "max" else top_mean
        self._table.write_rows([[entry.recording_id, *(_number(v) for v in values)]])

    def close(self) -> list[Path]:
        return self._table.close()


# Format name -> writer, each placed under the job's output folder.
WRITERS: dict[str, Callable[..., OutputWriter]] = {
    "submission": lambda *, out_dir, species, aggregate, top_k, **_: SubmissionCsv(
        out_path=out_dir / "submission.csv", species=species, aggregate=aggregate, top_k=top_k),
    "summary": lambda *, out_dir, species, top_k, **_: RecordingSummary(
        out_path=out_dir / "recordings.csv", species=species, top_k=top_k),
    "raven": lambda *, out_dir, audio_root, species, threshold, bands, **_: RavenTables(
        out_dir=out_dir / "raven", audio_root=audio_root, species=species, threshold=threshold, bands=bands),
    "raven-combined": lambda *, out_dir, audio_root, species, threshold, bands, **_: RavenTables(
        out_dir=out_dir / "raven", audio_root=audio_root, species=species, threshold=threshold, bands=bands, combined=True),
    "audacity": lambda *, out_dir, species, threshold, bands, **_: AudacityLabels(
        out_dir=out_dir / "audacity", species=species, threshold=threshold, bands=bands),
    "birdnet": lambda *, out_dir, audio_root, species, threshold, **_: BirdnetCsv(
        out_path=out_dir / "detections.birdnet.csv", audio_root=audio_root, species=species, threshold=threshold),
}


def make_writers(*, formats: list[str], out_dir: str | Path, audio_root: str | Path, species: SpeciesTable, threshold: float,
                 bands: dict[int, Band] | None = None, aggregate: str = "max", top_k: int = 3) -> list[OutputWriter]:
    """One writer per named format (each name once, in the order given)."""
    names = list(dict.fromkeys(str(f).strip() for f in formats))
    unknown = [name for name in names if name not in WRITERS]
    if unknown:
        raise InputError(f"unknown output format(s) {', '.join(map(repr, unknown))}; known formats: {', '.join(WRITERS)}")
    return [WRITERS[name](out_dir=Path(out_dir), audio_root=audio_root, species=species, threshold=threshold, bands=bands,
                          aggregate=aggregate, top_k=top_k) for name in names]
