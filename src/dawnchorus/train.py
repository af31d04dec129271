"""K-fold training of the masked-loss detector from TP/FP boxes.

A run directory holds ``config.yaml`` (reload it to repeat the run), ``layout.json``,
``species.csv``, ``folds.csv``, ``history.csv`` and, per fold, ``model.safetensors``
(the average of the best epochs' weights), ``oof.csv`` (out-of-fold recording scores),
``oof_windows.parquet`` (their window scores) and
``resume.pt``, written every few steps so an interrupted run continues where it stopped,
mid-epoch included, with identical results.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import distributed
from .atomic import atomic_write_text
from .calibration import write_calibration
from .config import RunConfig, load_config, save_config
from .data.crops import SoftLabels
from .data.dataset import RfcxDataset, load_dataset
from .distributed import Ranks
from .data.bands import species_bands, write_bands_csv
from .data.species import write_species_csv
from .errors import InputError
from .losses import check_loss_choice
from .fold_trainer import FoldTrainer, write_csv
from .models import ClassLayout, check_model_choices, resolve_device


def class_layout(dataset: RfcxDataset, mode: str) -> ClassLayout:
    if mode == "species":
        return ClassLayout.for_species(dataset.species.species_ids)
    if mode == "songtype":
        return ClassLayout.for_songtypes(dataset.species.species_ids, [(b.species_id, b.songtype_id) for b in dataset.tp])
    raise InputError(f"model.classes '{mode}' is unknown; use species or songtype")


def assign_folds(dataset: RfcxDataset, *, folds: int, seed: int) -> dict[str, int]:
    """Recording -> fold, stratified on which species have TP and FP boxes in each recording."""
    recordings = sorted({b.recording_id for b in dataset.boxes})
    if folds <= 1:
        return {r: -1 for r in recordings}  # -1: in every fold's training set
    if len(recordings) < folds:
        raise InputError(f"{len(recordings)} labelled recordings cannot be split into {folds} folds; lower train.folds")
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    n_species = len(dataset.species)
    matrix = np.zeros((len(recordings), 2 * n_species), dtype=np.int64)
    row = {r: i for i, r in enumerate(recordings)}
    for box in dataset.boxes:
        matrix[row[box.recording_id], dataset.species.index_of(box.species_id) + (0 if box.label else n_species)] = 1
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    assignment = {}
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(recordings)), matrix)):
        for index in held_out:
            assignment[recordings[index]] = fold
    return assignment


def prepare_run(*, data_dir, out_dir, config: RunConfig, resume: bool,
                write: bool = True) -> tuple[RunConfig, RfcxDataset, ClassLayout, dict]:
    """Check the config, read the dataset, split it into folds and (``write``) record all of it
    in ``out_dir``; processes that join a run another one prepared pass ``write=False``."""
    out_dir = Path(out_dir)
    check_model_choices(config.model)
    check_loss_choice(config.loss)
    saved = out_dir / "config.yaml"
    if saved.is_file():
        if not resume:
            raise InputError(f"{out_dir}: already holds a run; pass --resume to continue it, or choose another --out")
        saved_config = load_config(saved)
        if saved_config != config:
            warnings.warn(f"{out_dir}: resuming with the run's saved config.yaml; the preset and --set values given now are ignored",
                          stacklevel=2)
        config = saved_config
    elif resume:
        raise InputError(f"{out_dir}: nothing to resume (no config.yaml); start the run without --resume")
    for name in ("epochs", "batch_size"):
        if getattr(config.train, name) < 1:
            raise InputError(f"train.{name} must be at least 1, not {getattr(config.train, name)}")
    if config.sampling.crops_per_epoch < 1:
        raise InputError(f"sampling.crops_per_epoch must be at least 1, not {config.sampling.crops_per_epoch}")
    dataset = load_dataset(data_dir, require_labels=True)
    if not dataset.tp:
        raise InputError(f"{dataset.root / 'train_tp.csv'}: no TP boxes; training needs at least one")
    layout = class_layout(dataset, config.model.classes)
    folds = assign_folds(dataset, folds=config.train.folds, seed=config.train.seed)
    if not write:
        return config, dataset, layout, folds
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, saved)
    atomic_write_text(out_dir / "layout.json", json.dumps(layout.to_dict()))
    write_species_csv(dataset.species, out_dir / "species.csv")
    write_bands_csv(species_bands(dataset.tp), out_dir / "species_bands.csv")  # where detections are drawn in Raven
    write_csv(pd.DataFrame(sorted(folds.items()), columns=["recording_id", "fold"]), out_dir / "folds.csv")
    return config, dataset, layout, folds


def train(*, data_dir: str | Path, out_dir: str | Path, config: RunConfig, resume: bool = False, progress: bool = False,
          soft_labels: SoftLabels | None = None, soft_audio_paths: dict[str, Path] | None = None,
          init_dir: str | Path | None = None) -> Path:
    """Train every configured fold; returns the run directory.

    ``soft_labels`` (a teacher's framewise scores, see ``pseudo``) add pseudo-labelled crops;
    ``soft_audio_paths`` locates pseudo-labelled recordings outside the training split, and
    ``init_dir`` is a run whose fold weights each fold starts from. Under ``torchrun`` every
    process calls this, and each fold trains data-parallel across them (``distributed``).
    """
    out_dir = Path(out_dir)
    ranks = distributed.ranks_from_env()
    distributed.batch_share(ranks, config.train.batch_size)  # before anything is written
    distributed.start(ranks, resolve_device(config.train.device))
    try:
        prepared = distributed.on_main(ranks, lambda: prepare_run(data_dir=data_dir, out_dir=out_dir, config=config,
                                                                  resume=resume))
        if not ranks.is_main:  # rank 0 has written the run; join it
            prepared = prepare_run(data_dir=data_dir, out_dir=out_dir, config=config, resume=True, write=False)
        config, dataset, layout, folds = prepared
        for fold in selected_folds(config):
            train_fold(config=config, dataset=dataset, layout=layout, folds=folds, fold=fold, out_dir=out_dir,
                       progress=progress and ranks.is_main, soft_labels=soft_labels, soft_audio_paths=soft_audio_paths,
                       init_dir=init_dir, ranks=ranks)
        if ranks.is_main:
            finish_run(out_dir=out_dir, config=config, dataset=dataset)
        distributed.barrier(ranks)
    finally:
        distributed.stop(ranks)
    return out_dir


def selected_folds(config: RunConfig) -> list[int]:
    """The folds this run trains (``train.train_folds``, else all of them)."""
    n_folds = max(1, config.train.folds)
    chosen = list(config.train.train_folds) if config.train.train_folds is not None else list(range(n_folds))
    for fold in chosen:
        if not 0 <= fold < n_folds:
            raise InputError(f"train.train_folds has fold {fold}, but there are {n_folds} folds")
    return chosen


def train_fold(*, config: RunConfig, dataset: RfcxDataset, layout: ClassLayout, folds: dict, fold: int, out_dir: Path,
               progress: bool = False, soft_labels: SoftLabels | None = None, soft_audio_paths: dict[str, Path] | None = None,
               init_dir: str | Path | None = None, ranks: Ranks = Ranks()) -> None:
    """Train one fold of a prepared run (``prepare_run``) into ``out_dir/fold{fold}``; a finished fold is kept."""
    held_out = {r for r, f in folds.items() if f == fold}
    init_weights = Path(init_dir) / f"fold{fold}" / "model.safetensors" if init_dir else None
    FoldTrainer(config=config, dataset=dataset, layout=layout, fold=fold, held_out=held_out, fold_dir=Path(out_dir) / f"fold{fold}",
                progress=progress, soft_labels=soft_labels, soft_audio_paths=soft_audio_paths, init_weights=init_weights,
                ranks=ranks).run()


def finish_run(*, out_dir: Path, config: RunConfig, dataset: RfcxDataset) -> None:
    """The run-level files from its finished folds: history, out-of-fold scores, calibration."""
    out_dir = Path(out_dir)
    histories = [pd.read_csv(p) for p in sorted(out_dir.glob("fold*/history.csv"))]
    if histories:
        write_csv(pd.concat(histories), out_dir / "history.csv")
    oofs = [pd.read_csv(p) for p in sorted(out_dir.glob("fold*/oof.csv"))]
    if oofs:
        oof = pd.concat(oofs)
        write_csv(oof, out_dir / "oof.csv")
        window_files = sorted(out_dir.glob("fold*/oof_windows.parquet"))
        # folds finished by an older version have no window scores: no persistence rule then
        oof_windows = pd.concat([pd.read_parquet(p) for p in window_files]) if len(window_files) == len(oofs) else None
        write_calibration(out_dir, oof=oof, dataset=dataset, oof_windows=oof_windows, persistence_windows=config.infer.top_k)
