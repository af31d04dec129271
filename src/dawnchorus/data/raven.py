"""Raven Pro selection tables, the format most bioacoustics annotations already live in.

A selection table is tab-separated with ``Begin Time (s)``, ``End Time (s)``,
``Low Freq (Hz)``, ``High Freq (Hz)`` and annotation columns. We read a species column
(ids or scientific names), an optional ``Song Type`` column and an optional ``Label``
column (TP/FP, 1/0, present/absent; default TP). The recording comes from Raven's
``Begin File`` column when present, else from the table's file name
(``<recording>.Table.1.selections.txt``).

Tables our detection runs write carry a ``Species ID`` column, read in preference to the
species names, and a ``File Offset (s)`` column: in a table over a file sequence Begin/End
Time count from the first file, and the offset gives the time within the selection's own file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..atomic import atomic_write_with, path_inside
from ..errors import InputError, ValidationError
from .annotations import Box
from .species import SpeciesTable
from .tables import read_text_table

BEGIN, END, LOW, HIGH = "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)"
FILE_OFFSET, SPECIES_ID = "File Offset (s)", "Species ID"
_INTEGER = re.compile(r"[0-9]+")
_LABEL_WORDS = {"tp": 1, "1": 1, "present": 1, "true": 1, "yes": 1, "fp": 0, "0": 0, "absent": 0, "false": 0, "no": 0}


def recording_id_from_table_name(path: Path) -> str:
    return path.name.split(".")[0]


def read_raven(
    path: str | Path,
    *,
    species: SpeciesTable | None = None,
    species_column: str = "Species",
    recording_id: str | None = None,
) -> list[Box]:
    """Boxes of one selection table; every bad row reported with its line number.

    With the default ``species_column`` a ``Species ID`` column, when present, gives the species
    (the name column stays the fallback for rows whose id cell is empty, e.g. added by hand in Raven).
    """
    path = Path(path)
    frame = read_text_table(path, what="Raven selection table", sep="\t", fallback_encoding="cp1252",
                            header="\t".join(("Selection", "View", "Channel", BEGIN, END, LOW, HIGH, species_column)))
    use_ids = species_column == "Species" and SPECIES_ID in frame.columns
    needed = (BEGIN, END, LOW, HIGH) + (() if use_ids else (species_column,))
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValidationError(str(path), [f"missing column(s): {', '.join(missing)} (found: {', '.join(frame.columns)})"])
    boxes, problems = [], []
    for line, row in zip(frame.index, frame.to_dict("records")):
        if str(row.get("View", "")).startswith("Waveform"):
            continue  # Raven writes each selection once per view; the spectrogram row is enough
        try:
            boxes.append(_row_to_box(row, path=path, species=species, species_column=species_column, recording_id=recording_id,
                                     use_ids=use_ids))
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
    if problems:
        raise ValidationError(str(path), problems)
    return boxes


def _row_to_box(row: dict, *, path: Path, species, species_column: str, recording_id: str | None, use_ids: bool = False) -> Box:
    numbers = {}
    for column in (BEGIN, END, LOW, HIGH):
        try:
            numbers[column] = float(row[column])
        except ValueError:
            raise ValueError(f"{column} '{row[column]}' is not a number") from None
        if not math.isfinite(numbers[column]) or numbers[column] < 0:
            raise ValueError(f"{column} '{row[column]}' is not a finite number >= 0")
    raw_species = str(row.get(SPECIES_ID, "")).strip() if use_ids else ""
    if raw_species:
        if not _INTEGER.fullmatch(raw_species):
            raise ValueError(f"{SPECIES_ID} '{raw_species}' is not an integer")
    else:
        raw_species = str(row.get(species_column, "")).strip()
    species_id = _parse_species(raw_species, species)
    songtype = str(row.get("Song Type", "") or "1").strip()
    if not _INTEGER.fullmatch(songtype):
        raise ValueError(f"Song Type '{songtype}' is not an integer")
    label_word = str(row.get("Label", "") or "tp").strip().lower()
    if label_word not in _LABEL_WORDS:
        raise ValueError(f"Label '{label_word}' must be TP or FP (or 1/0, present/absent)")
    rec = recording_id or (Path(row["Begin File"]).stem if row.get("Begin File") else recording_id_from_table_name(path))
    if numbers[BEGIN] >= numbers[END] or numbers[LOW] >= numbers[HIGH]:
        raise ValueError("begin time must be before end time and low frequency below high frequency")
    t_min_s, t_max_s = numbers[BEGIN], numbers[END]
    raw_offset = str(row.get(FILE_OFFSET, "")).strip()
    if raw_offset:  # times within the file, which a box needs, even when the table spans a file sequence
        try:
            offset_s = float(raw_offset)
        except ValueError:
            raise ValueError(f"{FILE_OFFSET} '{raw_offset}' is not a number") from None
        if not math.isfinite(offset_s) or offset_s < 0:
            raise ValueError(f"{FILE_OFFSET} '{raw_offset}' is not a finite number >= 0")
        t_min_s, t_max_s = offset_s, offset_s + (numbers[END] - numbers[BEGIN])
    return Box(rec, species_id, int(songtype), t_min_s, numbers[LOW], t_max_s, numbers[HIGH], _LABEL_WORDS[label_word])


def _parse_species(raw: str, species: SpeciesTable | None) -> int:
    if _INTEGER.fullmatch(raw.lstrip("-")):
        species_id = int(raw)
        if species is not None and not species.knows(species_id):
            raise ValueError(f"unknown species id {species_id}")
        return species_id
    if species is not None:
        found = species.id_for_name(raw)
        if found is not None:
            return found
    raise ValueError(f"species '{raw}' is neither a species id nor a known scientific name")


def write_raven(path: str | Path, boxes: Iterable[Box], *, species: SpeciesTable | None = None, scores: Iterable[float] | None = None,
                file_names: dict[str, str] | None = None) -> Path:
    """One selection table; species written as scientific names when the table is known.

    ``file_names`` (recording id -> audio file name, e.g. ``20240401_060000.WAV``) lets Raven find
    the real file; recordings it does not name are written as ``<id>.flac``.
    """
    file_names = file_names or {}
    boxes = list(boxes)
    rows = []
    score_list = list(scores) if scores is not None else None
    for number, box in enumerate(boxes, start=1):
        name = species.names[species.index_of(box.species_id)] if species is not None else str(box.species_id)
        row = {
            "Selection": number,
            "View": "Spectrogram 1",
            "Channel": 1,
            "Begin File": file_names.get(box.recording_id) or f"{box.recording_id}.flac",
            BEGIN: round(box.t_min_s, 4),
            END: round(box.t_max_s, 4),
            LOW: round(box.f_min_hz, 1),
            HIGH: round(box.f_max_hz, 1),
            "Species": name,
            "Species ID": box.species_id,
            "Song Type": box.songtype_id,
            "Label": "TP" if box.label == 1 else "FP",
        }
        if score_list is not None:
            row["Score"] = round(float(score_list[number - 1]), 6)
        rows.append(row)
    path = Path(path)
    columns = ["Selection", "View", "Channel", "Begin File", BEGIN, END, LOW, HIGH, "Species", "Species ID", "Song Type", "Label"]
    if score_list is not None:
        columns.append("Score")
    atomic_write_with(path, lambda tmp: pd.DataFrame(rows, columns=columns).to_csv(tmp, sep="\t", index=False))
    return path


def raven_table_name(recording_id: str) -> str:
    return f"{recording_id}.Table.1.selections.txt"


def export_raven_tables(*, boxes: Iterable[Box], out_dir: str | Path, species: SpeciesTable | None = None,
                        file_names: dict[str, str] | None = None) -> list[Path]:
    """One selection table per recording, named so Raven pairs it with the audio file
    (``file_names``: recording id -> real audio file name, see :func:`write_raven`)."""
    by_recording: dict[str, list[Box]] = {}
    for box in boxes:
        by_recording.setdefault(box.recording_id, []).append(box)
    out_dir = Path(out_dir)
    targets = {rec: path_inside(out_dir, raven_table_name(rec), what="recording id") for rec in sorted(by_recording)}
    return [write_raven(targets[rec], sorted(group, key=lambda b: b.t_min_s), species=species, file_names=file_names)
            for rec, group in sorted(by_recording.items())]


def import_raven_tables(*, paths: Iterable[str | Path], species: SpeciesTable | None = None, species_column: str = "Species") -> list[Box]:
    """Boxes of many tables (a directory's ``*.txt`` or explicit files); all problems at once."""
    boxes, problems = [], []
    for path in paths:
        try:
            boxes.extend(read_raven(path, species=species, species_column=species_column))
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        raise InputError("\n".join(problems))
    return boxes
