"""Training crops around TP/FP boxes, each with a target per class in {1, 0, NaN}.

A crop around a TP box of species A that also holds an FP box of species B knows both
(A = 1, B = 0); every other class is NaN (unknown) and masked out of the loss. Sampling is
balanced over species and over TP/FP, because the real label files are roughly balanced per
species while the recordings are not.
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
    target: np.ndarray  # (n_classes,) float32 of {1, 0, NaN}


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


def crop_target(*, boxes: Sequence[Box], t_start_s: float, crop_s: float, classes: ClassIndex,
                min_inside: float, label_mode: str = "masked") -> np.ndarray:
    """Target of one crop from the boxes of its recording.

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
    if label_mode in ("naive", "tp_only"):
        target = np.nan_to_num(target, nan=0.0)
    return target


def crop_start_range(box: Box, *, crop_s: float, duration_s: float, min_inside: float) -> tuple[float, float]:
    """Start times that keep at least ``min_inside`` of the box inside the crop."""
    need = min_inside * min(box.duration_s, crop_s)
    low = max(0.0, box.t_min_s + need - crop_s)
    high = min(max(0.0, duration_s - crop_s), box.t_max_s - need)
    if high < low:  # box near an edge of a short recording: centre on it as well as we can
        centre = np.clip((box.t_min_s + box.t_max_s - crop_s) / 2, 0.0, max(0.0, duration_s - crop_s))
        return float(centre), float(centre)
    return low, high


class CropSampler:
    """Draws an epoch's crops: balanced over species, then over TP/FP; deterministic per seed."""

    def __init__(self, *, boxes: Sequence[Box], durations_s: dict[str, float], classes: ClassIndex,
                 crop_s: float, min_inside: float, tp_fraction: float, label_mode: str = "masked"):
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode '{label_mode}' is not one of {', '.join(LABEL_MODES)}")
        self.classes, self.crop_s, self.min_inside = classes, crop_s, min_inside
        self.tp_fraction = 1.0 if label_mode == "tp_only" else tp_fraction
        self.label_mode = label_mode
        self.durations_s = durations_s
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
        target = crop_target(boxes=self.by_recording.get(recording_id, []), t_start_s=t_start_s, crop_s=self.crop_s,
                             classes=self.classes, min_inside=self.min_inside, label_mode=self.label_mode)
        return CropSpec(recording_id, t_start_s, target)


class CropDataset(Dataset):
    """Decoded crops (from the audio cache) with their targets, for a torch DataLoader."""

    def __init__(self, specs: Sequence[CropSpec], *, paths: dict[str, Path], cache: AudioCache, crop_s: float):
        self.specs, self.paths, self.cache, self.crop_s = list(specs), paths, cache, crop_s

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, index: int):
        spec = self.specs[index]
        wave = self.cache.load(self.paths[spec.recording_id], t_start_s=spec.t_start_s, duration_s=self.crop_s)
        return torch.from_numpy(np.array(wave, dtype=np.float32)), torch.from_numpy(spec.target)
