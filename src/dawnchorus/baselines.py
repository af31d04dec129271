"""Trivial reference predictors, the floor every model must clear."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data.dataset import RfcxDataset
from .submission import make_submission


def train_label_prior(dataset: RfcxDataset) -> dict[int, float]:
    """Fraction of labelled training recordings that hold a TP box of each species."""
    labelled = {b.recording_id for b in dataset.boxes} or set(dataset.train)
    counts = {s: 0 for s in dataset.species.species_ids}
    for species_id, recording_id in {(b.species_id, b.recording_id) for b in dataset.tp}:
        counts[species_id] += 1
    return {s: counts[s] / max(1, len(labelled)) for s in counts}


def constant_prior_submission(*, dataset: RfcxDataset, prior: dict[int, float] | None = None) -> pd.DataFrame:
    """Every test recording gets the same score per species: its prior.

    The default prior is the training-label frequency, which is what a model that learnt
    nothing but the label balance would say; pass an expected test prevalence to see how
    much a good prior alone is worth.
    """
    prior = prior if prior is not None else train_label_prior(dataset)
    row = np.array([prior.get(s, 0.0) for s in dataset.species.species_ids], dtype=np.float64)
    recording_ids = list(dataset.test)
    scores = np.tile(row, (len(recording_ids), 1))
    return make_submission(recording_ids=recording_ids, scores=scores, species=dataset.species)
