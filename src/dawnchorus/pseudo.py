"""Pseudo-label rounds: a teacher labels every recording framewise, a student learns from it.

Round 0 is the ordinary run in ``RUN``; round k lives in ``RUN/pseudo/round<k>`` as a full run
directory (config, folds, weights) plus ``pseudo_labels.parquet``, the framewise class
scores its teacher (round k-1) gave. Training recordings are labelled out of fold where the
teacher has a held-out fold for them, so a student never learns a recording's pseudo labels
from a model that was fitted on that recording's boxes when an unbiased view exists.
Recordings outside the training split (``pseudo.audio_dir``, e.g. the test split as the
competition's teams did) are labelled by the whole fold ensemble. Hard box labels always
override pseudo labels and pseudo targets weigh ``pseudo.weight`` (2nd place's guard against
confirmation bias). Every round is kept on disk; an interrupted round resumes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import RunConfig, load_config
from .data.audio import find_audio_files
from .data.crops import SoftLabels
from .data.dataset import load_dataset
from .errors import InputError
from .infer import class_columns, load_run, predict_out_of_fold
from .models import ClassLayout, resolve_device
from .train import train


def teacher_labels(*, teacher_dir: str | Path, audio_paths: dict[str, Path], device: torch.device,
                   progress: bool = False) -> pd.DataFrame:
    """Framewise class scores (keyed by recording and time) of a trained run on some recordings.

    A recording held out by one of the teacher's folds is scored by that fold's model only;
    every other recording by the mean of all folds.
    """
    teacher = load_run(teacher_dir, device=device, pseudo_round=0)
    return predict_out_of_fold(run=teacher, audio_paths=audio_paths, device=device, progress=progress,
                               frame_step_s=teacher.config.pseudo.step_s, fold_classes=False)


def soft_labels_from_table(table: pd.DataFrame, *, columns: list[str], step_s: float,
                           hard_thresholds: tuple[float, float] | None = None) -> SoftLabels:
    """Per-recording (steps x classes) arrays from a framewise table.

    With ``hard_thresholds`` (low, high) the soft scores become conservative hard labels
    (10th place): >= high -> 1, <= low -> 0, anything between -> unknown.
    """
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"pseudo labels lack class columns {', '.join(missing)}; were they made by a run with other classes?")
    scores = {}
    for recording_id, group in table.groupby("recording_id", sort=False):
        values = group.sort_values("t_start_s")[columns].to_numpy(dtype=np.float32)
        if hard_thresholds is not None:
            low, high = hard_thresholds
            values = np.where(values >= high, 1.0, np.where(values <= low, 0.0, np.nan)).astype(np.float32)
        scores[str(recording_id)] = values
    return SoftLabels(scores, step_s=step_s)


def train_pseudo_rounds(*, run_dir: str | Path, data_dir: str | Path, rounds: int, audio_dir: str | Path | None = None,
                        config: RunConfig | None = None, progress: bool = False) -> list[Path]:
    """Make sure rounds 1..``rounds`` exist on top of a trained run; returns their directories.

    Finished rounds are kept as they are, an unfinished one resumes, missing ones are trained.
    """
    run_dir = Path(run_dir)
    config = config or load_config(run_dir / "config.yaml")
    if rounds < 0:
        raise InputError(f"pseudo rounds must be >= 0, not {rounds}")
    pseudo = config.pseudo
    if not 0.0 <= pseudo.prob <= 1.0 or not 0.0 <= pseudo.weight <= 1.0:
        raise InputError("pseudo.prob and pseudo.weight must lie in [0, 1]")
    if pseudo.init not in ("teacher", "scratch"):
        raise InputError(f"pseudo.init '{pseudo.init}' is unknown; use teacher or scratch")
    dataset = load_dataset(data_dir, require_labels=True)
    audio_paths = {r: info.path for r, info in dataset.train.items()}
    extra_dir = audio_dir if audio_dir is not None else pseudo.audio_dir
    extra_paths = find_audio_files(extra_dir) if extra_dir else {}
    if extra_dir and not extra_paths:
        raise InputError(f"{extra_dir}: no audio recordings (FLAC, WAV, MP3, OGG) to pseudo-label")
    clash = sorted(set(extra_paths) & set(audio_paths))
    if clash:
        raise InputError(f"{extra_dir}: recordings {', '.join(clash[:5])} are also training recordings; give a separate directory")
    device = resolve_device(config.train.device)
    # Every round reads the first run's audio cache: a cache per round would decode (and store,
    # 2 GB for the standard corpus with its test split) the same recordings again.
    cache_dir = config.train.cache_dir or str(run_dir / "audio_cache")
    round_config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=pseudo.epochs or config.train.epochs,
                                                                         cache_dir=cache_dir))
    done = []
    for number in range(1, rounds + 1):
        round_dir = run_dir / "pseudo" / f"round{number}"
        teacher_dir = run_dir if number == 1 else run_dir / "pseudo" / f"round{number - 1}"
        if not any(Path(teacher_dir).glob("fold*/model.safetensors")):
            raise InputError(f"{teacher_dir}: the teacher of round {number} has no finished fold; finish it first (--resume)")
        labels_path = round_dir / "pseudo_labels.parquet"
        if not labels_path.is_file():
            round_dir.mkdir(parents=True, exist_ok=True)
            table = teacher_labels(teacher_dir=teacher_dir, audio_paths={**audio_paths, **extra_paths}, device=device,
                                   progress=progress)
            tmp = labels_path.with_suffix(".tmp")
            table.to_parquet(tmp, index=False)
            tmp.replace(labels_path)
        layout = ClassLayout.from_dict(json.loads((Path(teacher_dir) / "layout.json").read_text()))  # no weights needed
        soft = soft_labels_from_table(pd.read_parquet(labels_path), columns=class_columns(layout), step_s=pseudo.step_s,
                                      hard_thresholds=pseudo.hard_thresholds)
        if progress:
            print(f"pseudo-label round {number}: teacher {teacher_dir}, {len(soft.scores)} recordings labelled", flush=True)
        train(data_dir=data_dir, out_dir=round_dir, config=round_config, resume=(round_dir / "config.yaml").is_file(),
              progress=progress, soft_labels=soft, soft_audio_paths=extra_paths,
              init_dir=teacher_dir if pseudo.init == "teacher" else None)
        done.append(round_dir)
    return done
