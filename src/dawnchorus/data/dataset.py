"""A dataset directory in the RFCx/Kaggle layout, read and validated as typed records.

Layout: ``train/`` and ``test/`` (FLAC/WAV), ``train_tp.csv``, ``train_fp.csv``,
``sample_submission.csv``, and optionally ``species.csv``. Only ``train/`` with at least one
label file, or ``test/``, is required, so a user can point the tool at their own archive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import AudioError, InputError, ValidationError
from .annotations import Box, read_boxes
from .audio import AudioInfo, find_audio_files, probe_audio
from .species import SpeciesTable, read_species_csv


@dataclass(frozen=True)
class RfcxDataset:
    root: Path
    species: SpeciesTable
    train: dict[str, AudioInfo] = field(repr=False)
    test: dict[str, AudioInfo] = field(repr=False)
    tp: tuple[Box, ...] = field(repr=False)
    fp: tuple[Box, ...] = field(repr=False)
    submission_ids: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def boxes(self) -> tuple[Box, ...]:
        return self.tp + self.fp

    def summary(self) -> dict:
        return {
            "root": str(self.root),
            "species": len(self.species),
            "train_recordings": len(self.train),
            "test_recordings": len(self.test),
            "tp_boxes": len(self.tp),
            "fp_boxes": len(self.fp),
            "train_sample_rates_hz": sorted({i.sample_rate_hz for i in self.train.values()}),
            "test_sample_rates_hz": sorted({i.sample_rate_hz for i in self.test.values()}),
        }


def probe_directory(directory: str | Path, *, ids: str = "stem") -> dict[str, AudioInfo]:
    """Header info for every recording under ``directory`` (ids as ``find_audio_files``); all
    unreadable files reported at once."""
    infos: dict[str, AudioInfo] = {}
    problems: list[str] = []
    for recording_id, path in find_audio_files(directory, ids=ids).items():
        try:
            infos[recording_id] = probe_audio(path)
        except AudioError as exc:
            problems.append(str(exc))
    if problems:
        raise ValidationError(str(directory), problems)
    return infos


def resolve_species(root: Path, species_csv: str | Path | None = None) -> SpeciesTable:
    """Species list: explicit file, else ``species.csv``, else the sample submission's columns."""
    if species_csv is not None:
        return read_species_csv(species_csv)
    if (root / "species.csv").is_file():
        return read_species_csv(root / "species.csv")
    submission = root / "sample_submission.csv"
    if submission.is_file():
        try:
            columns = list(pd.read_csv(submission, nrows=0).columns)
        except Exception as exc:
            raise InputError(f"{submission}: cannot read the header ({exc})") from None
        return SpeciesTable.from_submission_columns(columns, source=str(submission))
    raise InputError(
        f"{root}: cannot tell the species list: add species.csv (species_id,scientific_name) "
        "or sample_submission.csv (recording_id,s0,s1,...), or pass a species file"
    )


def load_dataset(
    root: str | Path,
    *,
    species_csv: str | Path | None = None,
    drop_bad_rows: bool = False,
    require_labels: bool = False,
) -> RfcxDataset:
    """Read and validate a dataset directory. Raises one error listing every problem found."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset directory not found")
    species = resolve_species(root, species_csv)
    label_files = {1: root / "train_tp.csv", 0: root / "train_fp.csv"}
    train_ids = "path" if _labels_name_paths(label_files.values()) else "stem"
    train = probe_directory(root / "train", ids=train_ids) if (root / "train").is_dir() else {}
    test = probe_directory(root / "test") if (root / "test").is_dir() else {}
    if not train and not test:
        raise InputError(f"{root}: no recordings found: expected FLAC/WAV files under {root / 'train'} or {root / 'test'}")
    if require_labels and not label_files[1].is_file():
        raise InputError(f"{label_files[1]}: not found; training needs TP boxes (recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max)")
    boxes: dict[int, list[Box]] = {1: [], 0: []}
    problems: list[str] = []
    for label, path in label_files.items():
        if not path.is_file():
            continue
        try:
            boxes[label] = read_boxes(path, label=label, species=species, recordings=train, drop_bad_rows=drop_bad_rows)
        except ValidationError as exc:
            problems.append(str(exc))
    if problems:
        raise InputError("\n".join(problems))
    return RfcxDataset(
        root=root,
        species=species,
        train=train,
        test=test,
        tp=tuple(boxes[1]),
        fp=tuple(boxes[0]),
        submission_ids=_submission_ids(root / "sample_submission.csv"),
    )


def _labels_name_paths(paths) -> bool:
    """Labels exported from an archive's review name recordings by their path under the archive
    (``site12/20240401_060000``), where one file name repeats across site folders; the train
    folder's recordings are then keyed the same way, not by file name."""
    for path in paths:
        if not Path(path).is_file():
            continue
        try:
            names = pd.read_csv(path, usecols=["recording_id"], dtype=str)["recording_id"]
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
            continue  # read_boxes reports what is wrong with the file
        if names.str.contains("/", regex=False).any():
            return True
    return False


def _submission_ids(path: Path) -> tuple[str, ...] | None:
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, usecols=["recording_id"], dtype=str)
    except ValueError:
        raise InputError(f"{path}: missing column 'recording_id'") from None
    return tuple(frame["recording_id"])
