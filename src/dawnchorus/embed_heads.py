"""Small heads on pretrained embeddings: per-species logistic regression ("linear probe") or an MLP.

Each embedding window gets a target per species from the TP/FP boxes it overlaps (1, 0 or
NaN = unknown, ``crops.crop_target``); only known entries are learnt from (masked BCE), with
balanced class weights per species, since the label files hold far more FP than TP boxes.
Folds are grouped by recording (``train.assign_folds``, as for the CNN), held-out recordings
get out-of-fold scores (``oof.csv``, the reference prior for post-processing), and a
recording's score is the max over its windows. Heads are stored as plain arrays in
safetensors and applied with numpy, so prediction needs neither torch nor sklearn.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from safetensors.numpy import load_file, save_file

from .data.audio import find_audio_files
from .data.species import SpeciesTable, read_species_csv, write_species_csv
from .embeddings import Embedder, EmbeddingCache, RecordingEmbeddings, embed_recordings, resolve_embedder
from .errors import InputError

HEADS = ("linear", "mlp")
KEY_COLUMNS = ["recording_id", "t_start_s", "t_end_s"]


@dataclass(frozen=True)
class HeadConfig:
    head: str = "linear"
    folds: int = 5
    seed: int = 0
    hop_s: float = 3.0
    min_box_inside: float = 0.6  # share of a box (or of the window) inside a window for it to count, as for crops
    class_weight: str = "balanced"  # balanced (positives and negatives of a species weigh alike) or none
    c: float = 1.0  # linear: inverse L2 strength of the logistic regression
    hidden: int = 256  # mlp: hidden units
    dropout: float = 0.2
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    model: str = ""  # the embedder's name, filled in by training
    window_s: float = 3.0


def window_labels(*, boxes, embeddings: dict[str, RecordingEmbeddings], species: SpeciesTable, window_s: float,
                  min_inside: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectors, {1, 0, NaN} targets and recording ids of every window that knows at least one species."""
    from .data.crops import ClassIndex, crop_target

    classes = ClassIndex([(s, None) for s in species.species_ids])
    by_recording: dict[str, list] = {}
    for box in boxes:
        by_recording.setdefault(box.recording_id, []).append(box)
    vectors, targets, recordings = [], [], []
    for recording_id, found in embeddings.items():
        for row, start in enumerate(found.t_start_s):
            target = crop_target(boxes=by_recording.get(recording_id, []), t_start_s=float(start), crop_s=window_s,
                                 classes=classes, min_inside=min_inside, label_mode="masked")
            if not np.isnan(target).all():
                vectors.append(found.vectors[row])
                targets.append(target)
                recordings.append(recording_id)
    if not vectors:
        raise InputError("no embedding window overlaps a TP/FP box enough to be labelled; check the label files' times")
    return np.stack(vectors), np.stack(targets), np.array(recordings)


def balanced_weights(targets: np.ndarray, *, mode: str) -> np.ndarray:
    """Per-entry loss weights: each species' known positives and negatives weigh half each."""
    if mode == "none":
        return np.ones_like(targets)
    if mode != "balanced":
        raise InputError(f"class_weight '{mode}' is unknown; use balanced or none")
    positives, negatives = (targets == 1).sum(axis=0), (targets == 0).sum(axis=0)
    known = positives + negatives
    pos_weight = np.where(positives > 0, known / (2 * np.maximum(positives, 1)), 1.0)
    neg_weight = np.where(negatives > 0, known / (2 * np.maximum(negatives, 1)), 1.0)
    return np.where(targets == 1, pos_weight, neg_weight).astype(np.float32)


def _standardizer(vectors: np.ndarray) -> dict[str, np.ndarray]:
    return {"mean": vectors.mean(axis=0).astype(np.float32), "scale": np.maximum(vectors.std(axis=0), 1e-6).astype(np.float32)}


def fit_linear(vectors: np.ndarray, targets: np.ndarray, *, config: HeadConfig) -> dict[str, np.ndarray]:
    """One logistic regression per species on its known windows; a constant where a class is missing."""
    from sklearn.linear_model import LogisticRegression

    params = _standardizer(vectors)
    scaled = (vectors - params["mean"]) / params["scale"]
    n_species = targets.shape[1]
    weights, bias, constant = np.zeros((n_species, vectors.shape[1]), np.float32), np.zeros(n_species, np.float32), []
    for j in range(n_species):
        known = ~np.isnan(targets[:, j])
        labels = targets[known, j]
        if len(np.unique(labels)) < 2:  # nothing to separate: a smoothed constant, flagged below
            rate = (labels.sum() + 1) / (len(labels) + 2)
            bias[j] = np.log(rate / (1 - rate))
            constant.append(j)
            continue
        model = LogisticRegression(C=config.c, class_weight=None if config.class_weight == "none" else "balanced", max_iter=2000)
        model.fit(scaled[known], labels.astype(int))
        weights[j], bias[j] = model.coef_[0], model.intercept_[0]
    if constant:
        warnings.warn(f"{len(constant)} species lack TP or FP windows in a fold and get a constant score "
                      f"(column indexes {constant}); add boxes of the missing kind", stacklevel=2)
    return {**params, "w": weights, "b": bias}


def fit_mlp(vectors: np.ndarray, targets: np.ndarray, *, config: HeadConfig, seed: int, threads: int = 1) -> dict[str, np.ndarray]:
    """A one-hidden-layer MLP over all species at once, masked BCE with class weights."""
    import torch

    from .losses import masked_bce

    params = _standardizer(vectors)
    x = torch.from_numpy(((vectors - params["mean"]) / params["scale"]).astype(np.float32))
    y = torch.from_numpy(targets.astype(np.float32))
    w = torch.from_numpy(balanced_weights(targets, mode=config.class_weight))
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
        return pd.DataFrame(columns=KEY_COLUMNS + species.columns)
    return pd.concat(frames, ignore_index=True)


def max_over_windows(windows: pd.DataFrame, *, species: SpeciesTable) -> pd.DataFrame:
    """Recording scores: the max over each recording's windows (``infer.aggregate_windows``'s default)."""
    return windows.groupby("recording_id", sort=False)[species.columns].max().reset_index()


def train_embedding_head(*, data_dir: str | Path, out_dir: str | Path, head: str = "linear", cache_dir: str | Path,
                         folds: int = 5, seed: int = 0, hop_s: float = 3.0, threads: int = 1, embedder: Embedder | None = None,
                         progress: bool = False, **options) -> Path:
    """Train a head on the embeddings of the labelled training recordings; returns the run directory.

    ``options`` set other ``HeadConfig`` fields (``c``, ``hidden``, ``epochs``, ``class_weight`` ...).
    """
    from .data import load_dataset
    from .metrics import masked_auc

    if head not in HEADS:
        raise InputError(f"head '{head}' is unknown; use one of {', '.join(HEADS)}")
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(HeadConfig)})
    if unknown:
        raise InputError(f"unknown head option(s) {', '.join(unknown)}; known: {', '.join(f.name for f in dataclasses.fields(HeadConfig))}")
    out_dir = Path(out_dir)
    if (out_dir / "config.yaml").is_file():
        raise InputError(f"{out_dir}: already holds a run; choose another --out (heads retrain in seconds from the cache)")
    dataset = load_dataset(data_dir, require_labels=True)
    labelled = sorted({b.recording_id for b in dataset.boxes})
    if folds > len(labelled):
        raise InputError(f"{len(labelled)} labelled recordings cannot be split into {folds} folds; lower --folds")
    embedder = resolve_embedder(embedder, threads=threads)
    config = HeadConfig(head=head, folds=folds, seed=seed, hop_s=hop_s, model=embedder.name, window_s=embedder.window_s,
                        **{k: v for k, v in options.items() if k not in ("model", "window_s")})
    cache = EmbeddingCache(cache_dir, embedder=embedder, hop_s=hop_s)
    embeddings = embed_recordings({r: dataset.train[r].path for r in labelled}, cache=cache, progress=progress, desc="embed train")
    vectors, targets, window_recordings = window_labels(boxes=dataset.boxes, embeddings=embeddings, species=dataset.species,
                                                        window_s=config.window_s, min_inside=config.min_box_inside)
    if folds > 1:
        from .train import assign_folds

        assignment = assign_folds(dataset, folds=folds, seed=seed)
    else:
        assignment = {r: -1 for r in labelled}
    out_dir.mkdir(parents=True, exist_ok=True)
    history, oofs = [], []
    for fold in range(max(1, folds)):
        started = time.perf_counter()
        held_out = {r for r, f in assignment.items() if f == fold}
        train_rows = np.array([r not in held_out for r in window_recordings])
        if head == "linear":
            params = fit_linear(vectors[train_rows], targets[train_rows], config=config)
        else:
            params = fit_mlp(vectors[train_rows], targets[train_rows], config=config, seed=seed + fold, threads=threads)
        (out_dir / f"fold{fold}").mkdir(exist_ok=True)
        save_file(params, str(out_dir / f"fold{fold}" / "head.safetensors"))
        entry = {"fold": fold, "train_windows": int(train_rows.sum()), "val_windows": int((~train_rows).sum()),
                 "seconds": round(time.perf_counter() - started, 3)}
        if held_out:
            val = ~train_rows
            entry["val_auc"], entry["val_auc_mean_species"] = masked_auc(y_true=targets[val], y_score=head_probabilities(params, vectors[val]))
            windows = score_windows({r: e for r, e in embeddings.items() if r in held_out}, heads=[params], species=dataset.species)
            oof = max_over_windows(windows, species=dataset.species)
            oof.insert(1, "fold", fold)
            oofs.append(oof)
        history.append(entry)
    (out_dir / "config.yaml").write_text(yaml.safe_dump({"kind": "embedding-head", **dataclasses.asdict(config)}, sort_keys=False))
    write_species_csv(dataset.species, out_dir / "species.csv")
    pd.DataFrame(sorted(assignment.items()), columns=["recording_id", "fold"]).to_csv(out_dir / "folds.csv", index=False)
    pd.DataFrame(history).to_csv(out_dir / "history.csv", index=False)
    if oofs:
        pd.concat(oofs, ignore_index=True).to_csv(out_dir / "oof.csv", index=False)
    return out_dir


def load_embedding_run(run_dir: str | Path) -> tuple[HeadConfig, SpeciesTable, list[dict[str, np.ndarray]]]:
    """A run of ``train_embedding_head``: its config, species and every fold's head."""
    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    raw = yaml.safe_load(path.read_text()) if path.is_file() else None
    if not isinstance(raw, dict) or raw.pop("kind", None) != "embedding-head":
        raise InputError(f"{run_dir}: not an embedding-head run (config.yaml with kind: embedding-head); "
                         "point --run at a directory written by 'dawnchorus embed-train'")
    try:
        config = HeadConfig(**raw)
    except TypeError as exc:
        raise InputError(f"{path}: unexpected fields ({exc}); retrain the head with this dawnchorus version") from None
    heads = [load_file(str(p)) for p in sorted(run_dir.glob("fold*/head.safetensors"))]
    if not heads:
        raise InputError(f"{run_dir}: no trained fold (fold*/head.safetensors); retrain with 'dawnchorus embed-train'")
    return config, read_species_csv(run_dir / "species.csv"), heads


@dataclass(frozen=True)
class EmbeddingPrediction:
    submission: pd.DataFrame  # recording_id, s0..sN, max over windows
    windows: pd.DataFrame  # recording_id, t_start_s, t_end_s, s0..sN
    species: SpeciesTable


def predict_embeddings(*, run_dir: str | Path, audio_dir: str | Path, cache_dir: str | Path, embedder: Embedder | None = None,
                       threads: int = 1, hop_s: float | None = None, progress: bool = False) -> EmbeddingPrediction:
    """Score every recording under ``audio_dir`` with a trained head (folds averaged); embeddings cached."""
    config, species, heads = load_embedding_run(run_dir)
    paths = find_audio_files(audio_dir)
    if not paths:
        raise InputError(f"{audio_dir}: no FLAC/WAV recordings found")
    embedder = resolve_embedder(embedder, threads=threads)
    if embedder.name != config.model:
        raise InputError(f"{run_dir}: trained on '{config.model}' embeddings, but the embedder is '{embedder.name}'; "
                         "predict with the same model")
    cache = EmbeddingCache(cache_dir, embedder=embedder, hop_s=hop_s or config.hop_s)
    embeddings = embed_recordings(paths, cache=cache, progress=progress, desc="embed")
    windows = score_windows(embeddings, heads=heads, species=species)
    return EmbeddingPrediction(submission=max_over_windows(windows, species=species), windows=windows, species=species)

