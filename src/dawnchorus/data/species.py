"""The species list of a dataset: ids, names, legal song types and submission column names.

Nothing about the 24 RFCx species is hard-coded: a dataset brings its list through a
``species.csv`` (``species_id,scientific_name[,songtype_ids]``), the columns of its
``sample_submission.csv`` (``s0..sN``), or an explicit file the user names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from ..errors import InputError, ValidationError
from .tables import read_text_table

_COLUMN_RE = re.compile(r"^s(\d+)$")


def species_column(species_id: int) -> str:
    """Submission column name of a species (Kaggle's ``s<k>`` convention)."""
    return f"s{species_id}"


@dataclass(frozen=True)
class SpeciesTable:
    """Ordered species of one task. ``songtypes[i]`` is None when any song type is legal."""

    species_ids: tuple[int, ...]
    names: tuple[str, ...]
    songtypes: tuple[frozenset[int] | None, ...]

    def __post_init__(self) -> None:
        if not self.species_ids:
            raise InputError("species list is empty: give at least one species")
        if len(set(self.species_ids)) != len(self.species_ids):
            raise InputError(f"species list has duplicate ids: {sorted(self.species_ids)}")
        if not (len(self.names) == len(self.songtypes) == len(self.species_ids)):
            raise InputError("species ids, names and song types must have the same length")

    def __len__(self) -> int:
        return len(self.species_ids)

    @property
    def columns(self) -> list[str]:
        return [species_column(s) for s in self.species_ids]

    def index_of(self, species_id: int) -> int:
        try:
            return self.species_ids.index(species_id)
        except ValueError:
            raise InputError(f"unknown species_id {species_id}; known ids: {list(self.species_ids)}") from None

    def knows(self, species_id: int) -> bool:
        return species_id in self.species_ids

    def allows_songtype(self, species_id: int, songtype_id: int) -> bool:
        allowed = self.songtypes[self.index_of(species_id)]
        return allowed is None or songtype_id in allowed

    def id_for_name(self, name: str) -> int | None:
        """Species id for a scientific name (case-insensitive), or None."""
        wanted = name.strip().lower()
        for species_id, known in zip(self.species_ids, self.names):
            if known.lower() == wanted:
                return species_id
        return None

    @classmethod
    def from_ids(cls, species_ids: list[int]) -> "SpeciesTable":
        ids = tuple(sorted(int(s) for s in species_ids))
        return cls(ids, tuple(species_column(s) for s in ids), tuple(None for _ in ids))

    @classmethod
    def from_submission_columns(cls, columns: list[str], *, source: str) -> "SpeciesTable":
        ids = []
        for column in columns:
            if column == "recording_id":
                continue
            match = _COLUMN_RE.match(column)
            if match is None:
                raise InputError(f"{source}: column '{column}' is not a species column; expected recording_id,s0,s1,...")
            ids.append(int(match.group(1)))
        if not ids:
            raise InputError(f"{source}: no species columns (s0, s1, ...) found")
        return cls(tuple(ids), tuple(species_column(s) for s in ids), tuple(None for _ in ids))


def read_species_csv(path: str | Path) -> SpeciesTable:
    """Read ``species_id[,scientific_name][,songtype_ids]``; songtype_ids like ``1`` or ``1;4``."""
    path = Path(path)
    frame = read_text_table(path, what="species file", header="species_id,scientific_name,songtype_ids")
    if "species_id" not in frame.columns:
        raise InputError(f"{path}: missing column 'species_id' (found: {', '.join(frame.columns)})")
    ids, names, songtypes, problems = [], [], [], []
    first_line: dict[int, int] = {}
    for row_number, row in zip(frame.index, frame.to_dict("records")):
        try:
            species_id = int(row["species_id"])
        except ValueError:
            problems.append(f"line {row_number}: species_id '{row['species_id']}' is not an integer")
            continue
        if species_id in first_line:
            problems.append(f"line {row_number}: species_id {species_id} is already listed on line {first_line[species_id]}")
            continue
        first_line[species_id] = row_number
        ids.append(species_id)
        names.append(row.get("scientific_name") or species_column(species_id))
        raw = str(row.get("songtype_ids", "")).strip()
        try:
            songtypes.append(frozenset(int(s) for s in raw.split(";")) if raw else None)
        except ValueError:
            problems.append(f"line {row_number}: songtype_ids '{raw}' must be integers separated by ';'")
    if problems:
        raise ValidationError(str(path), problems)
    if not ids:
        raise InputError(f"{path}: no species listed; add one row per species under the header species_id,...")
    return SpeciesTable(tuple(ids), tuple(names), tuple(songtypes))


def rfcx_species() -> SpeciesTable:
    """The 24 species of the RFCx Kaggle task, with the host paper's names."""
    with resources.as_file(resources.files("dawnchorus.resources") / "rfcx_species.csv") as path:
        return read_species_csv(path)


def rfcx_test_prevalence() -> dict[int, float]:
    """Host paper Table 2: expected fraction of test recordings where each species is present."""
    with resources.as_file(resources.files("dawnchorus.resources") / "rfcx_species.csv") as path:
        frame = pd.read_csv(path)
    return {int(r.species_id): float(r.test_presences_per_1000) / 1000.0 for r in frame.itertuples()}


# Priors a user can name instead of giving a file.
NAMED_PRIORS = {"rfcx-host-paper": rfcx_test_prevalence}


def read_prior_csv(path: str | Path, *, species: SpeciesTable | None = None) -> dict[int, float]:
    """A prevalence table ``species_id,prevalence`` (fraction of recordings where present),
    or a named built-in one (``rfcx-host-paper``: the host paper's Table 2)."""
    if str(path) in NAMED_PRIORS:
        prior = NAMED_PRIORS[str(path)]()
        unknown = [s for s in prior if species is not None and not species.knows(s)]
        if unknown:
            raise InputError(f"prior {path}: species {', '.join(map(str, unknown))} are not in this dataset's species list")
        return prior
    path = Path(path)
    if not path.exists():
        names = ", ".join(NAMED_PRIORS)
        raise InputError(f"{path}: prior file not found (give a CSV species_id,prevalence or a built-in prior: {names})")
    frame = read_text_table(path, what="prior table", header="species_id,prevalence")
    missing = [c for c in ("species_id", "prevalence") if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected species_id,prevalence")
    prior, problems = {}, []
    for line, row in zip(frame.index, frame.to_dict("records")):
        try:
            species_id, value = int(row["species_id"]), float(row["prevalence"])
        except ValueError:
            problems.append(f"line {line}: species_id must be an integer and prevalence a number")
            continue
        if not 0.0 <= value <= 1.0:
            problems.append(f"line {line}: prevalence {value} is not a fraction in [0, 1]")
        elif species_id in prior:
            problems.append(f"line {line}: species_id {species_id} is listed twice; keep one prevalence per species")
        elif species is not None and not species.knows(species_id):
            problems.append(f"line {line}: unknown species_id {species_id}")
        else:
            prior[species_id] = value
    if problems:
        raise ValidationError(str(path), problems)
    return prior


def write_species_csv(species: SpeciesTable, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"species_id": s, "scientific_name": n, "songtype_ids": ";".join(map(str, sorted(t))) if t else ""}
            for s, n, t in zip(species.species_ids, species.names, species.songtypes)]
    pd.DataFrame(rows, columns=["species_id", "scientific_name", "songtype_ids"]).to_csv(path, index=False)
    return path
