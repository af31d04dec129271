"""Small heads on pretrained embeddings: per-species logistic regression ("linear probe") or an MLP.

Each embedding window gets a target per species from the TP/FP boxes it overlaps (1, 0 or
NaN = unknown, ``crops.crop_target``); only known entries are learnt from (masked BCE), with
balanced class weights per species, since the label files hold far more FP than TP boxes.
Pseudo-label rounds add the other windows with the teacher's scores as targets (soft, or
thresholded into 0 / unknown / 1), weighted as a share of the box labels' weight. Heads are
plain arrays (safetensors) applied with numpy, so prediction needs neither torch nor sklearn.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .config import HeadConfig
from .data.species import SpeciesTable
from .embeddings import RecordingEmbeddings
from .errors import InputError
from .scores import WINDOW_KEYS


def window_labels(*, boxes, embeddings: dict[str, RecordingEmbeddings], species: SpeciesTable, window_s: float,
                  min_inside: float, with_rows: bool = False) -> tuple[np.ndarray, ...]:
    """Vectors, {1, 0, NaN} targets and recording ids (and window indexes) of every window that knows a species."""
    from .data.crops import ClassIndex, crop_target

    classes = ClassIndex([(s, None) for s in species.species_ids])
    by_recording: dict[str, list] = {}
    for box in boxes:
        by_recording.setdefault(box.recording_id, []).append(box)
    vectors, targets, recordings, rows = [], [], [], []
    for recording_id, found in embeddings.items():
        for row, start in enumerate(found.t_start_s):
            target = crop_target(boxes=by_recording.get(recording_id, []), t_start_s=float(start), crop_s=window_s,
                                 classes=classes, min_inside=min_inside, label_mode="masked")
            if not np.isnan(target).all():
                vectors.append(found.vectors[row])
                targets.append(target)
                recordings.append(recording_id)
                rows.append(row)
    if not vectors:
        raise InputError("no embedding window overlaps a TP/FP box enough to be labelled; check the label files' times")
    found = (np.stack(vectors), np.stack(targets), np.array(recordings))
    return (*found, np.array(rows, dtype=np.int64)) if with_rows else found


def balanced_weights(targets: np.ndarray, *, mode: str) -> np.ndarray:
    """Per-entry loss weights: each species' known positives and negatives weigh half each."""
    if mode == "none":
        return np.where(np.isnan(targets), 0.0, 1.0).astype(np.float32)
    if mode != "balanced":
        raise InputError(f"class_weight '{mode}' is unknown; use balanced or none")
    positives, negatives = (targets == 1).sum(axis=0), (targets == 0).sum(axis=0)
    known = positives + negatives
    pos_weight = np.where(positives > 0, known / (2 * np.maximum(positives, 1)), 1.0)
    neg_weight = np.where(negatives > 0, known / (2 * np.maximum(negatives, 1)), 1.0)
    weights = np.where(targets == 1, pos_weight, neg_weight)
    return np.where(np.isnan(targets), 0.0, weights).astype(np.float32)


def pseudo_targets(scores: np.ndarray, *, thresholds: tuple[float, float] | None) -> np.ndarray:
    """Teacher scores as targets: soft, or 0 below the low and 1 above the high threshold (else unknown)."""
    if thresholds is None:
        return scores.astype(np.float32)
    low, high = thresholds
    return np.where(scores <= low, 0.0, np.where(scores >= high, 1.0, np.nan)).astype(np.float32)


def with_pseudo_labels(vectors: np.ndarray, targets: np.ndarray, *, pseudo_vectors: np.ndarray, pseudo: np.ndarray,
                       class_weight: str, pseudo_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box-labelled windows plus pseudo-labelled ones, with per-entry weights.

    The pseudo entries of a species share ``pseudo_weight`` times the total weight of its box
    labels, however many unlabelled windows there are, so they can inform but not drown them.
    """
    hard_weights = balanced_weights(targets, mode=class_weight)
    known = ~np.isnan(pseudo)
    per_entry = pseudo_weight * hard_weights.sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    soft_weights = np.where(known, per_entry, 0.0).astype(np.float32)
    return (np.concatenate([vectors, pseudo_vectors]), np.concatenate([targets, pseudo]),
            np.concatenate([hard_weights, soft_weights]))


def _standardizer(vectors: np.ndarray) -> dict[str, np.ndarray]:
    return {"mean": vectors.mean(axis=0).astype(np.float32), "scale": np.maximum(vectors.std(axis=0), 1e-6).astype(np.float32)}


def fit_linear(vectors: np.ndarray, targets: np.ndarray, *, config: HeadConfig, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One L2 logistic regression per species on its known windows; a constant where a class is missing.

    Soft targets (between 0 and 1) enter twice, as a positive weighted by the target and a
    negative weighted by its complement: the same loss as BCE on the soft target.
    """
    from sklearn.linear_model import LogisticRegression

    weights = balanced_weights(targets, mode=config.class_weight) if weights is None else weights
    params = _standardizer(vectors)
    scaled = (vectors - params["mean"]) / params["scale"]
    n_species = targets.shape[1]
    coef, bias, constant = np.zeros((n_species, vectors.shape[1]), np.float32), np.zeros(n_species, np.float32), []
    for j in range(n_species):
        rows = np.flatnonzero(~np.isnan(targets[:, j]) & (weights[:, j] > 0))
        labels, entry_weights = targets[rows, j], weights[rows, j]
        if not (labels > 0).any() or not (labels < 1).any():  # nothing to separate: a smoothed constant
            rate = (labels.sum() + 1) / (len(labels) + 2)
            bias[j] = np.log(rate / (1 - rate))
            constant.append(j)
            continue
        hard = np.isin(labels, (0.0, 1.0))
        soft = np.flatnonzero(~hard)
        x = np.concatenate([scaled[rows], scaled[rows[soft]]])
        y = np.concatenate([np.where(hard, labels, 1.0), np.zeros(len(soft))])
        w = np.concatenate([np.where(hard, entry_weights, entry_weights * labels), entry_weights[soft] * (1 - labels[soft])])
        model = LogisticRegression(C=config.c, max_iter=3000)
        model.fit(x, y.astype(int), sample_weight=w)
        coef[j], bias[j] = model.coef_[0], model.intercept_[0]
    if constant:
        warnings.warn(f"{len(constant)} species lack TP or FP windows in a fold and get a constant score "
                      f"(column indexes {constant}); add boxes of the missing kind", stacklevel=2)
    return {**params, "w": coef, "b": bias}


def fit_mlp(vectors: np.ndarray, targets: np.ndarray, *, config: HeadConfig, seed: int, threads: int = 1,
            weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A one-hidden-layer MLP over all species at once: masked BCE (soft targets allowed), per-entry weights."""
    import torch

    from .losses import masked_bce

    weights = balanced_weights(targets, mode=config.class_weight) if weights is None else weights
    params = _standardizer(vectors)
    x = torch.from_numpy(((vectors - params["mean"]) / params["scale"]).astype(np.float32))
    y = torch.from_numpy(targets.astype(np.float32))
    w = torch.from_numpy(weights.astype(np.float32))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        with torch.random.fork_rng():  # seeded init and dropout without touching the caller's RNG
            torch.manual_seed(seed)
            model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], config.hidden), torch.nn.ReLU(),
                                        torch.nn.Dropout(config.dropout), torch.nn.Linear(config.hidden, y.shape[1]))
            optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            generator = torch.Generator().manual_seed(seed)
            model.train()
            for _ in range(config.epochs):
                order = torch.randperm(x.shape[0], generator=generator)
                for first in range(0, x.shape[0], config.batch_size):
                    batch = order[first : first + config.batch_size]
                    loss = masked_bce(model(x[batch]), y[batch], weight=w[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
    finally:
        torch.set_num_threads(previous_threads)
    layers = [m for m in model if isinstance(m, torch.nn.Linear)]
    arrays = {"w1": layers[0].weight, "b1": layers[0].bias, "w2": layers[1].weight, "b2": layers[1].bias}
    return {**params, **{k: v.detach().numpy().astype(np.float32) for k, v in arrays.items()}}


def fit_head(vectors: np.ndarray, targets: np.ndarray, *, config: HeadConfig, seed: int, threads: int = 1,
             weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    if config.head == "linear":
        return fit_linear(vectors, targets, config=config, weights=weights)
    return fit_mlp(vectors, targets, config=config, seed=seed, threads=threads, weights=weights)


def head_probabilities(params: dict[str, np.ndarray], vectors: np.ndarray) -> np.ndarray:
    """Sigmoid outputs of a stored head (linear when it has ``w``, MLP when it has ``w1``)."""
    x = (vectors - params["mean"]) / params["scale"]
    if "w1" in params:
        logits = np.maximum(x @ params["w1"].T + params["b1"], 0.0) @ params["w2"].T + params["b2"]
    else:
        logits = x @ params["w"].T + params["b"]
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)


def score_windows(embeddings: dict[str, RecordingEmbeddings], *, heads: list[dict[str, np.ndarray]], species: SpeciesTable) -> pd.DataFrame:
    """Window table ``recording_id, t_start_s, t_end_s, s..``: the mean of the heads' probabilities."""
    frames = []
    for recording_id, found in embeddings.items():
        scores = np.mean([head_probabilities(h, found.vectors) for h in heads], axis=0)
        keys = pd.DataFrame({"recording_id": recording_id, "t_start_s": found.t_start_s, "t_end_s": found.t_end_s})
        frames.append(pd.concat([keys, pd.DataFrame(scores, columns=species.columns)], axis=1))
    if not frames:
        return pd.DataFrame(columns=list(WINDOW_KEYS) + species.columns)
    return pd.concat(frames, ignore_index=True)
