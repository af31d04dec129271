"""The Kaggle submission table: one row per recording, one score column per species."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .data.species import SpeciesTable
from .atomic import atomic_write_with
from .errors import InputError


def make_submission(*, recording_ids: Sequence[str], scores: np.ndarray, species: SpeciesTable) -> pd.DataFrame:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(recording_ids), len(species)):
        raise InputError(f"scores have shape {scores.shape}, expected ({len(recording_ids)}, {len(species)})")
    frame = pd.DataFrame(scores, columns=species.columns)
    frame.insert(0, "recording_id", list(recording_ids))
    return frame


def write_submission(path: str | Path, frame: pd.DataFrame) -> Path:
    return atomic_write_with(Path(path), lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g"))
