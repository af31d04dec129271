"""Candidate detections to review: the template matcher's CSV or the detections Parquet of ``predict``.

Both are read into :class:`Candidate` boxes. Validation collects every bad row (file and
line or row, column, value) into one error, as the label readers do, because a candidate file
is machine-made and one bug usually breaks many rows at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..data.tables import read_text_table
from ..errors import InputError, ValidationError

CANDIDATE_COLUMNS = ("recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max")
OPTIONAL_CANDIDATE_COLUMNS = ("score", "template_id")
DETECTION_COLUMNS = ("recording_id", "species_id", "t_start_s", "t_end_s", "score")
DETECTION_SONGTYPE = 1  # the model predicts species, not song types; 1 is every RFCx species' main song type
_MAX_PROBLEMS_PER_COLUMN = 100  # enough to see the pattern; the error shows the first 50 anyway


@dataclass(frozen=True)
class Candidate:
    """One box a person should confirm (TP) or reject (FP)."""

    recording_id: str
    species_id: int
    songtype_id: int
    t_min_s: float
    t_max_s: float
    f_min_hz: float = 0.0
    f_max_hz: float | None = None  # None: the full band, up to the recording's Nyquist frequency
    score: float | None = None
    template_id: str = ""
    source: str = "candidates"


def read_candidates_csv(path: str | Path) -> list[Candidate]:
    """Read ``recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max[,score][,template_id]``."""
    path = Path(path)
    frame = read_text_table(path, what="candidates file", header=f"{','.join(CANDIDATE_COLUMNS)},score,template_id")
    _require_columns(frame, CANDIDATE_COLUMNS, path, optional=OPTIONAL_CANDIDATE_COLUMNS)
    problems: list[str] = []
    lines = frame.index.to_numpy()
    frame = frame.reset_index(drop=True)
    where = lambda index: f"line {lines[index]}"  # noqa: E731
    recording_ids = frame["recording_id"].astype(str).str.strip()
    _flag(recording_ids == "", lambda i: "recording_id is empty", where, problems)
    species = _numbers(frame, "species_id", where, problems, integer=True)
    songtype = _numbers(frame, "songtype_id", where, problems, integer=True)
    t_min, t_max = _numbers(frame, "t_min", where, problems), _numbers(frame, "t_max", where, problems)
    f_min, f_max = _numbers(frame, "f_min", where, problems), _numbers(frame, "f_max", where, problems)
    has_score = "score" in frame.columns
    score = _numbers(frame, "score", where, problems, allow_empty=True) if has_score else np.full(len(frame), np.nan)
    _check_boxes(t_min, t_max, where, problems, names=("t_min", "t_max"))
    with np.errstate(invalid="ignore"):
        _flag(f_min < 0, lambda i: f"f_min ({f_min[i]:g}) is negative", where, problems)
        _flag(f_min >= f_max, lambda i: f"f_min ({f_min[i]:g}) must be less than f_max ({f_max[i]:g})", where, problems)
    if problems:
        raise ValidationError(str(path), problems)
    templates = frame["template_id"].astype(str).str.strip() if "template_id" in frame.columns else [""] * len(frame)
    return [
        Candidate(recording_ids.iat[i], int(species[i]), int(songtype[i]), float(t_min[i]), float(t_max[i]),
                  float(f_min[i]), float(f_max[i]), _optional(score[i]), templates[i], "candidates")
        for i in range(len(frame))
    ]


def read_detections(path: str | Path, *, min_score: float = 0.0, group: bool = False,
                    sample_per_species: int | None = None, seed: int = 0) -> list[Candidate]:
    """Read the Parquet of ``dawnchorus predict --detections``, or the window parts of an archive
    job folder (``predict --out DIR``); rows below ``min_score`` are left out. With
    ``sample_per_species``, each species keeps that many windows drawn across its score range
    (``sample_across_scores``). With ``group``, consecutive overlapping windows of one species
    are one candidate (``group_windows``).

    Detections are whole windows without a frequency band, so they cover the full band.
    """
    path = Path(path)
    if path.is_dir() and (path / "parts").is_dir():
        frame = _job_detections(path, min_score=min_score)
    elif not path.is_file():
        raise InputError(f"{path}: detections file not found; write one with 'dawnchorus predict ... --detections {path.name}'")
    else:
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise InputError(f"{path}: cannot read as Parquet ({exc}); pass a file written by 'dawnchorus predict --detections'") from None
    candidates = _from_frame(frame, path, min_score)
    if sample_per_species is not None:
        candidates = sample_across_scores(candidates, per_species=sample_per_species, seed=seed)
    return group_windows(candidates) if group else candidates


SCORE_BINS = 10


def sample_across_scores(candidates: list[Candidate], *, per_species: int, seed: int = 0) -> list[Candidate]:
    """Up to ``per_species`` candidates of each species, drawn at random from ``SCORE_BINS``
    equal-width bins of its score range (equal shares, what a bin cannot fill going to the
    others), so that a calibration sees the low scores and the high ones, not only the many
    low. Within a bin the draw is uniform; in input order."""
    if per_species < 1:
        raise InputError(f"--sample-per-species must be at least 1, not {per_species}")
    rng = np.random.default_rng(seed)
    scores = np.array([c.score if c.score is not None else np.nan for c in candidates], dtype=float)
    species = np.array([c.species_id for c in candidates])
    kept: list[int] = []
    for species_id in np.unique(species):
        members = np.flatnonzero((species == species_id) & np.isfinite(scores))
        if len(members) <= per_species:
            kept.extend(members)
            continue
        low, high = scores[members].min(), scores[members].max()
        bins = np.minimum(((scores[members] - low) / max(high - low, 1e-12) * SCORE_BINS).astype(int), SCORE_BINS - 1)
        pools = [list(rng.permutation(members[bins == b])) for b in range(SCORE_BINS)]
        chosen: list[int] = []
        while len(chosen) < per_species:  # round-robin over the bins: equal shares, empty bins give way
            for pool in pools:
                if pool and len(chosen) < per_species:
                    chosen.append(pool.pop())
        kept.extend(chosen)
    return [candidates[i] for i in sorted(kept)]


def group_windows(candidates: list[Candidate]) -> list[Candidate]:
    """Windows of one recording and species that overlap or touch, merged into one candidate per
    call: it spans them and keeps the best score (a call in overlapping windows is reviewed once)."""
    merged: list[Candidate] = []
    for c in sorted(candidates, key=lambda c: (c.recording_id, c.species_id, c.songtype_id, c.t_min_s)):
        last = merged[-1] if merged else None
        if (last is not None and (last.recording_id, last.species_id, last.songtype_id) == (c.recording_id, c.species_id,
                                                                                           c.songtype_id)
                and c.t_min_s <= last.t_max_s):
            best = max(s for s in (last.score, c.score) if s is not None) if (last.score, c.score) != (None, None) else None
            merged[-1] = replace(last, t_max_s=max(last.t_max_s, c.t_max_s), score=best)
        else:
            merged.append(c)
    return merged


def _job_detections(job_dir: Path, *, min_score: float) -> pd.DataFrame:
    """An archive job's window scores (one column per species) as long detection rows, part by
    part, keeping only those at ``min_score`` or above (an archive has millions of windows)."""
    frames = []
    for part in sorted((job_dir / "parts").glob("*.parquet")):
        try:
            windows = pd.read_parquet(part)
        except Exception as exc:
            raise InputError(f"{part}: cannot read this window part ({exc}); run the job again to rewrite it") from None
        columns = [c for c in windows.columns if c.startswith("s") and c[1:].isdigit()]
        if not columns:
            raise InputError(f"{job_dir}: its parts hold no species scores (an embed or match job?); review a predict job")
        long = windows.melt(id_vars=["recording_id", "t_start_s", "t_end_s"], value_vars=columns, var_name="column",
                            value_name="score")
        long = long[long["score"] >= min_score]
        frames.append(long.assign(species_id=long["column"].str[1:].astype(int)).drop(columns="column"))
    if not frames:
        raise InputError(f"{job_dir}: no finished recordings in parts/; run the job first")
    return pd.concat(frames, ignore_index=True)


def _from_frame(frame: pd.DataFrame, path: Path, min_score: float) -> list[Candidate]:
    _require_columns(frame, DETECTION_COLUMNS, path)
    problems: list[str] = []
    where = lambda index: f"row {index + 1}"  # noqa: E731
    recording_ids = frame["recording_id"].astype(str).str.strip()
    _flag(recording_ids == "", lambda i: "recording_id is empty", where, problems)
    species = _numbers(frame, "species_id", where, problems, integer=True)
    t_start, t_end = _numbers(frame, "t_start_s", where, problems), _numbers(frame, "t_end_s", where, problems)
    score = _numbers(frame, "score", where, problems)
    _check_boxes(t_start, t_end, where, problems, names=("t_start_s", "t_end_s"))
    if problems:
        raise ValidationError(str(path), problems)
    keep = score >= min_score
    return [
        Candidate(recording_ids.iat[i], int(species[i]), DETECTION_SONGTYPE, float(t_start[i]), float(t_end[i]),
                  0.0, None, float(score[i]), "", "detections")
        for i in np.flatnonzero(keep)
    ]


def _require_columns(frame: pd.DataFrame, required, path: Path, *, optional=()) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        expected = ",".join(list(required) + [f"[{c}]" for c in optional])
        raise ValidationError(str(path), [f"missing column(s) {', '.join(missing)}; expected header: {expected} (found: {','.join(map(str, frame.columns))})"])


def _numbers(frame: pd.DataFrame, column: str, where: Callable[[int], str], problems: list[str], *,
             integer: bool = False, allow_empty: bool = False) -> np.ndarray:
    """The column as float64; every value that is not a (finite, integer) number is reported."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(values)
    if allow_empty:
        bad &= raw.astype(str).str.strip().to_numpy() != ""
    if integer:
        bad |= np.isfinite(values) & (values != np.round(values))
    kind = "an integer" if integer else "a finite number"
    for index in np.flatnonzero(bad)[:_MAX_PROBLEMS_PER_COLUMN]:
        problems.append(f"{where(index)}: {column} {str(raw.iloc[index])!r} is not {kind}")
    return values


def _check_boxes(start: np.ndarray, end: np.ndarray, where, problems: list[str], *, names) -> None:
    with np.errstate(invalid="ignore"):  # NaNs were reported as non-numbers already
        _flag(start < 0, lambda i: f"{names[0]} ({start[i]:g}) is negative", where, problems)
        _flag(start >= end, lambda i: f"{names[0]} ({start[i]:g}) must be less than {names[1]} ({end[i]:g})", where, problems)


def _flag(mask, message: Callable[[int], str], where, problems: list[str]) -> None:
    for index in np.flatnonzero(np.asarray(mask, dtype=bool))[:_MAX_PROBLEMS_PER_COLUMN]:
        problems.append(f"{where(index)}: {message(index)}")


def _optional(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
