"""Training crops around TP/FP boxes, each with targets per class in {1, 0, NaN}.

A crop around a TP box of species A that also holds an FP box of species B knows both
(A = 1, B = 0); every other class is NaN (unknown) and masked out of the loss. Sampling is
balanced over species and over TP/FP, because the real label files are roughly balanced per
species while the recordings are not.

Besides the clip target (one value per class), a crop can carry a frame target (class x
label frame): only the frames a box covers are known, which is what lets a frame-level model
learn *where* a call is (the 1st place's "hard label" training). Pseudo labels (soft teacher
scores, ``SoftLabels``) fill the unknown entries with a lower weight; hard box labels always
override them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import Box
from .cache import AudioCache

LABEL_MODES = ("masked", "naive", "tp_only")


@dataclass(frozen=True)
class CropSpec:
    recording_id: str
    t_start_s: float
    target: np.ndarray  # (classes,) float32 of {1, 0, NaN}, or soft values where pseudo-labelled
    frame_target: np.ndarray  # (classes, label frames); zero frames when frame labels are off
    weight: np.ndarray  # (classes,) loss weight per entry (1 for hard labels)
    frame_weight: np.ndarray  # (classes, label frames)


class ClassIndex:
    """Maps a box to the output classes it speaks about (see ``models.ClassLayout``)."""

    def __init__(self, classes: Sequence[tuple[int, int | None]]):
        self.classes = tuple(classes)

    def __len__(self) -> int:
        return len(self.classes)

    def positive(self, box: Box) -> list[int]:
        """Classes a TP box makes 1: its species and song type."""
        return [i for i, (s, t) in enumerate(self.classes) if s == box.species_id and t in (None, box.songtype_id)]

    def negative(self, box: Box) -> list[int]:
        """Classes an FP box makes 0: every song type of its species."""
        return [i for i, (s, _) in enumerate(self.classes) if s == box.species_id]


def overlap_s(box: Box, t_start_s: float, t_end_s: float) -> float:
    return max(0.0, min(box.t_max_s, t_end_s) - max(box.t_min_s, t_start_s))


def _fill_unknown(target: np.ndarray, label_mode: str) -> np.ndarray:
    return np.nan_to_num(target, nan=0.0) if label_mode in ("naive", "tp_only") else target


def crop_target(*, boxes: Sequence[Box], t_start_s: float, crop_s: float, classes: ClassIndex,
                min_inside: float, label_mode: str = "masked") -> np.ndarray:
    """Clip target of one crop from the boxes of its recording.

    A box counts when at least ``min_inside`` of it (or of the crop, for boxes longer than the
    crop) lies inside. A TP beats an FP of the same class. Boxes that only graze the crop
    leave their classes unknown rather than asserting anything.
    """
    target = np.full(len(classes), np.nan, dtype=np.float32)
    t_end_s = t_start_s + crop_s
    counted = [b for b in boxes if overlap_s(b, t_start_s, t_end_s) >= min_inside * min(b.duration_s, crop_s)]
    for box in counted:
        if box.label == 0 and label_mode != "tp_only":
            target[classes.negative(box)] = 0.0
    for box in counted:
        if box.label == 1:
            target[classes.positive(box)] = 1.0
    return _fill_unknown(target, label_mode)


def frame_centres_s(*, t_start_s: float, crop_s: float, n_frames: int) -> np.ndarray:
    return t_start_s + (np.arange(n_frames) + 0.5) * (crop_s / max(1, n_frames))


def frame_target(*, boxes: Sequence[Box], t_start_s: float, crop_s: float, classes: ClassIndex, n_frames: int,
                 label_mode: str = "masked") -> np.ndarray:
    """Frame target (class x frame): frames whose centre lies inside a box take its label.

    Frames outside every box stay unknown: a box says nothing about the rest of the crop.
    """
    target = np.full((len(classes), n_frames), np.nan, dtype=np.float32)
    centres = frame_centres_s(t_start_s=t_start_s, crop_s=crop_s, n_frames=n_frames)
    for label, value in ((0, 0.0), (1, 1.0)):  # TPs written last, so they win
        for box in boxes:
            if box.label != label or (label == 0 and label_mode == "tp_only"):
                continue
            inside = (centres >= box.t_min_s) & (centres <= box.t_max_s)
            if inside.any():
                rows = classes.positive(box) if label == 1 else classes.negative(box)
                target[np.ix_(rows, np.flatnonzero(inside))] = value
    return _fill_unknown(target, label_mode)


def crop_start_range(box: Box, *, crop_s: float, duration_s: float, min_inside: float) -> tuple[float, float]:
    """Start times that keep at least ``min_inside`` of the box inside the crop."""
    need = min_inside * min(box.duration_s, crop_s)
    low = max(0.0, box.t_min_s + need - crop_s)
    high = min(max(0.0, duration_s - crop_s), box.t_max_s - need)
    if high < low:  # box near an edge of a short recording: centre on it as well as we can
        centre = np.clip((box.t_min_s + box.t_max_s - crop_s) / 2, 0.0, max(0.0, duration_s - crop_s))
        return float(centre), float(centre)
    return low, high


class SoftLabels:
    """A teacher's framewise class scores per recording, on a regular time grid of ``step_s``."""

    def __init__(self, scores: dict[str, np.ndarray], *, step_s: float):
        self.scores, self.step_s = scores, step_s  # recording -> (steps, classes)

    def duration_s(self, recording_id: str) -> float:
        return self.scores[recording_id].shape[0] * self.step_s

    def clip(self, recording_id: str, *, t_start_s: float, crop_s: float) -> np.ndarray:
        """Max over the steps the crop covers: the soft clip target."""
        grid = self.scores[recording_id]
        first = int(np.clip(np.floor(t_start_s / self.step_s), 0, grid.shape[0] - 1))
        last = int(np.clip(np.ceil((t_start_s + crop_s) / self.step_s), first + 1, grid.shape[0]))
        return grid[first:last].max(axis=0)

    def frames(self, recording_id: str, *, t_start_s: float, crop_s: float, n_frames: int) -> np.ndarray:
        grid = self.scores[recording_id]
        centres = frame_centres_s(t_start_s=t_start_s, crop_s=crop_s, n_frames=n_frames)
        rows = np.clip((centres / self.step_s).astype(np.int64), 0, grid.shape[0] - 1)
        return grid[rows].T.copy()


def _overlay(hard: np.ndarray, soft: np.ndarray | None, soft_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Hard labels where known, soft teacher scores (at ``soft_weight``) elsewhere."""
    weight = np.ones_like(hard)
    if soft is None:
        return hard, weight
    unknown = np.isnan(hard)
    return np.where(unknown, soft, hard).astype(np.float32), np.where(unknown, soft_weight, 1.0).astype(np.float32)


class CropSampler:
    """Draws an epoch's crops: balanced over species, then over TP/FP; deterministic per seed.

    With ``soft_labels``, a share ``pseudo_prob`` of the crops is drawn anywhere in the
    pseudo-labelled recordings instead of around boxes.
    """

    def __init__(self, *, boxes: Sequence[Box], durations_s: dict[str, float], classes: ClassIndex,
                 crop_s: float, min_inside: float, tp_fraction: float, label_mode: str = "masked",
                 label_frames: int = 0, soft_labels: SoftLabels | None = None, pseudo_prob: float = 0.5,
                 pseudo_weight: float = 0.5):
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode '{label_mode}' is not one of {', '.join(LABEL_MODES)}")
        self.classes, self.crop_s, self.min_inside = classes, crop_s, min_inside
        self.tp_fraction = 1.0 if label_mode == "tp_only" else tp_fraction
        self.label_mode, self.label_frames = label_mode, label_frames
        self.soft_labels, self.pseudo_prob, self.pseudo_weight = soft_labels, pseudo_prob, pseudo_weight
        self.durations_s = dict(durations_s)
        if soft_labels is not None:
            for recording_id in soft_labels.scores:
                self.durations_s.setdefault(recording_id, soft_labels.duration_s(recording_id))
        self.pseudo_recordings = sorted(soft_labels.scores) if soft_labels is not None else []
        self.by_recording: dict[str, list[Box]] = {}
        for box in boxes:
            self.by_recording.setdefault(box.recording_id, []).append(box)
        self.pools = {label: self._pool(boxes, label) for label in (1, 0)}
        if not self.pools[1]:
            raise ValueError("no TP boxes to sample crops from")

    @staticmethod
    def _pool(boxes, label) -> list[list[Box]]:
        by_species: dict[int, list[Box]] = {}
        for box in boxes:
            if box.label == label:
                by_species.setdefault(box.species_id, []).append(box)
        return [by_species[s] for s in sorted(by_species)]

    def sample(self, n: int, *, seed: int) -> list[CropSpec]:
        rng = np.random.default_rng(seed)
        specs = []
        for _ in range(n):
            if self.pseudo_recordings and rng.random() < self.pseudo_prob:
                recording_id = self.pseudo_recordings[rng.integers(len(self.pseudo_recordings))]
                start = float(rng.uniform(0.0, max(0.0, self.durations_s[recording_id] - self.crop_s)))
                specs.append(self.spec(recording_id, start))
                continue
            label = 1 if (not self.pools[0] or rng.random() < self.tp_fraction) else 0
            species_boxes = self.pools[label][rng.integers(len(self.pools[label]))]
            box = species_boxes[rng.integers(len(species_boxes))]
            low, high = crop_start_range(box, crop_s=self.crop_s, duration_s=self.durations_s[box.recording_id],
                                         min_inside=self.min_inside)
            start = float(rng.uniform(low, high)) if high > low else low
            specs.append(self.spec(box.recording_id, start))
        return specs

    def centred(self, boxes: Sequence[Box]) -> list[CropSpec]:
        """One crop centred on each box: the deterministic validation set."""
        specs = []
        for box in boxes:
            duration = self.durations_s[box.recording_id]
            start = float(np.clip((box.t_min_s + box.t_max_s - self.crop_s) / 2, 0.0, max(0.0, duration - self.crop_s)))
            specs.append(self.spec(box.recording_id, start))
        return specs

    def spec(self, recording_id: str, t_start_s: float) -> CropSpec:
        boxes = self.by_recording.get(recording_id, [])
        common = dict(boxes=boxes, t_start_s=t_start_s, crop_s=self.crop_s, classes=self.classes, label_mode=self.label_mode)
        clip = crop_target(min_inside=self.min_inside, **common)
        frames = frame_target(n_frames=self.label_frames, **common)
        soft = self.soft_labels if self.soft_labels is not None and recording_id in self.soft_labels.scores else None
        clip, weight = _overlay(clip, soft and soft.clip(recording_id, t_start_s=t_start_s, crop_s=self.crop_s),
                                self.pseudo_weight)
        frames, frame_weight = _overlay(
            frames, soft and soft.frames(recording_id, t_start_s=t_start_s, crop_s=self.crop_s, n_frames=self.label_frames),
            self.pseudo_weight)
        return CropSpec(recording_id, t_start_s, clip, frames, weight, frame_weight)


class CropDataset(Dataset):
    """Decoded crops (from the audio cache) with their targets, for a torch DataLoader."""

    def __init__(self, specs: Sequence[CropSpec], *, paths: dict[str, Path], cache: AudioCache, crop_s: float):
        self.specs, self.paths, self.cache, self.crop_s = list(specs), paths, cache, crop_s

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        spec = self.specs[index]
        wave = self.cache.load(self.paths[spec.recording_id], t_start_s=spec.t_start_s, duration_s=self.crop_s)
        return {"wave": torch.from_numpy(np.array(wave, dtype=np.float32)), "clip": torch.from_numpy(spec.target),
                "frame": torch.from_numpy(spec.frame_target), "weight": torch.from_numpy(spec.weight),
                "frame_weight": torch.from_numpy(spec.frame_weight)}
