"""Label boxes: the RFCx ``train_tp.csv`` / ``train_fp.csv`` tables, validated on load.

A box says "species k calls here" (label 1, a TP) or "a detector flagged species k here and
it is not there" (label 0, an FP). Validation reports every problem with its file and line,
because a user fixing a 10,000-row table wants the whole list at once, not one per run.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from ..errors import InputError, ValidationError
from .audio import AudioInfo
from .species import SpeciesTable
from .tables import read_text_table

LABEL_COLUMNS = ("recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max")
_TIME_TOLERANCE_S = 1e-3


@dataclass(frozen=True)
class Box:
    """One labelled time-frequency box in one recording."""

    recording_id: str
    species_id: int
    songtype_id: int
    t_min_s: float
    f_min_hz: float
    t_max_s: float
    f_max_hz: float
    label: int  # 1 = species present in the box (TP), 0 = absent (FP)

    @property
    def duration_s(self) -> float:
        return self.t_max_s - self.t_min_s

    def as_row(self) -> dict:
        return {
            "recording_id": self.recording_id,
            "species_id": self.species_id,
            "songtype_id": self.songtype_id,
            "t_min": self.t_min_s,
            "f_min": self.f_min_hz,
            "t_max": self.t_max_s,
            "f_max": self.f_max_hz,
        }


def read_boxes(
    path: str | Path,
    *,
    label: int,
    species: SpeciesTable | None = None,
    recordings: Mapping[str, AudioInfo] | None = None,
    drop_bad_rows: bool = False,
) -> list[Box]:
    """Read and validate an RFCx label CSV.

    ``species`` enables the unknown-species and song-type checks, ``recordings`` (id -> header
    info) the missing-audio, duration and Nyquist checks. Every problem is collected; by default
    they raise one :class:`ValidationError`, with ``drop_bad_rows`` the bad rows are dropped and
    listed in a warning instead.
    """
    path = Path(path)
    frame = read_text_table(path, what="label file", header=",".join(LABEL_COLUMNS))
    missing = [c for c in LABEL_COLUMNS if c not in frame.columns]
    if missing:
        raise ValidationError(
            str(path),
            [f"missing column(s) {', '.join(missing)}; expected header: {','.join(LABEL_COLUMNS)} (found: {','.join(frame.columns)})"],
        )
    boxes: list[Box] = []
    problems: list[str] = []
    seen: dict[tuple, int] = {}
    for line, row in zip(frame.index, frame.to_dict("records")):
        row_problems, box = _check_row(row, label=label, species=species, recordings=recordings)
        if box is not None:
            key = tuple(box.as_row().values())
            if key in seen:
                row_problems.append(f"duplicate of line {seen[key]}")
            else:
                seen[key] = line
        if row_problems:
            problems.extend(f"line {line}: {p}" for p in row_problems)
        elif box is not None:
            boxes.append(box)
    if problems:
        if not drop_bad_rows:
            raise ValidationError(str(path), problems)
        warnings.warn(str(ValidationError(str(path), problems)) + "\n(these rows were dropped)", stacklevel=2)
    return boxes




def _number(row: dict, column: str, problems: list[str], *, integer: bool = False) -> float | int | None:
    raw = str(row.get(column, "")).strip()
    if raw == "":
        problems.append(f"{column} is empty")
        return None
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{column} '{raw}' is not a number")
        return None
    if not math.isfinite(value):
        problems.append(f"{column} '{raw}' is not a finite number")
        return None
    if integer:
        if value != int(value):
            problems.append(f"{column} '{raw}' is not an integer")
            return None
        return int(value)
    return value


def _check_row(row, *, label, species, recordings) -> tuple[list[str], Box | None]:
    problems: list[str] = []
    recording_id = str(row.get("recording_id", "")).strip()
    if not recording_id:
        problems.append("recording_id is empty")
    species_id = _number(row, "species_id", problems, integer=True)
    songtype_id = _number(row, "songtype_id", problems, integer=True)
    t_min, t_max = _number(row, "t_min", problems), _number(row, "t_max", problems)
    f_min, f_max = _number(row, "f_min", problems), _number(row, "f_max", problems)
    if species is not None and species_id is not None:
        if not species.knows(species_id):
            problems.append(f"unknown species_id {species_id} (known: {min(species.species_ids)}..{max(species.species_ids)})")
        elif songtype_id is not None and not species.allows_songtype(species_id, songtype_id):
            problems.append(f"unknown songtype_id {songtype_id} for species {species_id}")
    if t_min is not None and t_max is not None:
        if t_min < 0 or t_max < 0:
            problems.append(f"negative time (t_min={t_min}, t_max={t_max})")
        if t_min >= t_max:
            problems.append(f"t_min ({t_min}) must be less than t_max ({t_max})")
    if f_min is not None and f_max is not None:
        if f_min < 0:
            problems.append(f"negative frequency f_min={f_min}")
        if f_min >= f_max:
            problems.append(f"f_min ({f_min}) must be less than f_max ({f_max})")
    if recordings is not None and recording_id:
        info = recordings.get(recording_id)
        if info is None:
            problems.append(f"recording '{recording_id}' has no audio file")
        else:
            if t_max is not None and t_max > info.duration_s + _TIME_TOLERANCE_S:
                problems.append(f"t_max {t_max} s is beyond the recording's duration ({info.duration_s:.3f} s)")
            if f_max is not None and f_max > info.nyquist_hz:
                problems.append(f"f_max {f_max} Hz is above the Nyquist frequency ({info.nyquist_hz:.0f} Hz) of {info.path.name}")
    if problems:
        return problems, None
    return problems, Box(recording_id, species_id, songtype_id, t_min, f_min, t_max, f_max, label)


def boxes_to_frame(boxes: Iterable[Box]) -> pd.DataFrame:
    """The RFCx CSV layout (without the label, which the file name carries)."""
    return pd.DataFrame([b.as_row() for b in boxes], columns=list(LABEL_COLUMNS))


def write_boxes(path: str | Path, boxes: Iterable[Box]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    boxes_to_frame(boxes).to_csv(path, index=False, float_format="%.4f")
    return path


def read_htk_segments(path: str | Path, *, label: str) -> dict[str, tuple[float, float]]:
    """Start and end (s) of the ``label`` segment per file stem, from an HTK master label file
    (``.mlf``: a quoted file name, then ``start end label`` lines in 100 ns units). Where a
    file holds several such segments the last one is kept."""
    path = Path(path)
    segments, stem = {}, None
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the HTK label file ({exc.strerror or exc})") from None
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if line.startswith('"'):
            stem = Path(line.strip('"')).stem
            continue
        fields = line.split()
        if stem is None or len(fields) < 3 or fields[2] != label:
            continue
        try:
            start, end = float(fields[0]) * 1e-7, float(fields[1]) * 1e-7
        except ValueError:
            raise InputError(f"{path} line {number}: start and end must be numbers (100 ns units), not {line!r}") from None
        segments[stem] = (start, end)
    return segments
