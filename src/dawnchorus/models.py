"""Detector networks: spectrogram front end + any timm backbone + a head from the registry.

A model maps waveforms (batch, samples) to a dict of logits: ``clip`` (batch, classes) and,
for heads that keep time, ``frame`` (batch, classes, frames). Weights are never downloaded:
``pretrained`` backbones load from a local file the user names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import FeatureConfig, ModelConfig
from .errors import InputError
from .registry import registrar
from .features import FrontEnd

HEADS: dict[str, Callable[..., nn.Module]] = {}

register_head = registrar(HEADS)

# Narrower versions of timm architectures: same blocks, fewer channels. Trained from scratch
# on a CPU, ResNet-18 at a quarter of its width sees about 3x the crops per minute and ends
# far better in the same time than the full width (benchmarks/RESULTS.md, issue 3).
SLIM_BACKBONES: dict[str, tuple[str, dict]] = {
    "resnet18_half": ("resnet18", {"channels": (32, 64, 128, 256), "stem_width": 32}),
    "resnet18_quarter": ("resnet18", {"channels": (16, 32, 64, 128), "stem_width": 16}),
    "resnet18_eighth": ("resnet18", {"channels": (8, 16, 32, 64), "stem_width": 8}),
}


def create_backbone(name: str, *, in_chans: int) -> nn.Module:
    """A timm backbone (or one of ``SLIM_BACKBONES``) without classifier or pooling, random weights."""
    base, extra = SLIM_BACKBONES.get(name, (name, {}))
    try:
        import timm  # here, not at import: timm (and torchvision) add 2 s to every start, which ONNX runs never need

        return timm.create_model(base, pretrained=False, in_chans=in_chans, num_classes=0, global_pool="", **extra)
    except RuntimeError as exc:
        raise InputError(f"model.backbone '{name}' is not a timm model nor one of {', '.join(SLIM_BACKBONES)} "
                         f"({exc})") from None


@dataclass(frozen=True)
class ClassLayout:
    """What the network's output units mean: one per species, or per (species, song type).

    Several top teams split the song types of species 17 and 23 into their own classes and
    folded them back (max) at output; ``fold`` does that.
    """

    species_ids: tuple[int, ...]
    classes: tuple[tuple[int, int | None], ...]  # (species_id, songtype_id or None for "any")

    @classmethod
    def for_species(cls, species_ids) -> "ClassLayout":
        ids = tuple(species_ids)
        return cls(ids, tuple((s, None) for s in ids))

    @classmethod
    def for_songtypes(cls, species_ids, pairs) -> "ClassLayout":
        """One class per (species, song type) pair seen in the labels; species with none get one class."""
        ids = tuple(species_ids)
        seen = sorted(set(pairs))
        classes = []
        for species_id in ids:
            songtypes = [t for s, t in seen if s == species_id]
            classes += [(species_id, t) for t in songtypes] if len(songtypes) > 1 else [(species_id, None)]
        return cls(ids, tuple(classes))

    def __len__(self) -> int:
        return len(self.classes)

    def class_index(self, species_id: int, songtype_id: int) -> int:
        for index, (s, t) in enumerate(self.classes):
            if s == species_id and (t is None or t == songtype_id):
                return index
        raise KeyError((species_id, songtype_id))

    def classes_of_species(self, species_id: int) -> list[int]:
        return [i for i, (s, _) in enumerate(self.classes) if s == species_id]

    def fold(self, scores: torch.Tensor, *, dim: int = 1) -> torch.Tensor:
        """Class scores -> species scores (max over a species' classes)."""
        if len(self.classes) == len(self.species_ids):
            return scores
        parts = [scores.index_select(dim, torch.tensor(self.classes_of_species(s), device=scores.device)).amax(dim=dim)
                 for s in self.species_ids]
        return torch.stack(parts, dim=dim)

    def to_dict(self) -> dict:
        return {"species_ids": list(self.species_ids), "classes": [list(c) for c in self.classes]}

    @classmethod
    def from_dict(cls, raw: dict) -> "ClassLayout":
        return cls(tuple(raw["species_ids"]), tuple((int(s), None if t is None else int(t)) for s, t in raw["classes"]))


class GeM(nn.Module):
    """Generalised mean pooling over frequency and time, with a learnt exponent."""

    def __init__(self, p: float = 3.0):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(1e-6).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)


@register_head("clip")
class ClipHead(nn.Module):
    """Pooled features -> per-class logits (avg+max over time after a frequency mean, or GeM)."""

    def __init__(self, in_features: int, n_classes: int, *, pool: str = "avgmax", dropout: float = 0.2):
        super().__init__()
        if pool not in ("avgmax", "gem"):
            raise InputError(f"model.pool '{pool}' is not one of avgmax, gem")
        self.pool = pool
        self.gem = GeM() if pool == "gem" else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, n_classes)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.gem is not None:
            pooled = self.gem(features)
        else:
            over_time = features.mean(dim=2)
            pooled = over_time.mean(dim=-1) + over_time.amax(dim=-1)
        return {"clip": self.fc(self.dropout(pooled))}


@register_head("sed")
class AttentionSEDHead(nn.Module):
    """PANNs-style sound event detection head: framewise logits plus attention pooling.

    The clip logit is the attention-weighted mean of frame logits, so clip and frame outputs
    live on the same scale and the frame output can give detections real time boundaries.
    """

    def __init__(self, in_features: int, n_classes: int, *, pool: str = "avgmax", dropout: float = 0.2):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, in_features)
        self.attention = nn.Conv1d(in_features, n_classes, kernel_size=1)
        self.classifier = nn.Conv1d(in_features, n_classes, kernel_size=1)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        x = features.mean(dim=2)  # (batch, channels, frames)
        x = F.max_pool1d(x, 3, 1, 1) + F.avg_pool1d(x, 3, 1, 1)
        x = self.dropout(x)
        x = F.relu(self.fc(x.transpose(1, 2))).transpose(1, 2)
        x = self.dropout(x)
        weights = torch.softmax(torch.tanh(self.attention(x)), dim=-1)
        frame = self.classifier(x)
        return {"clip": (weights * frame).sum(dim=-1), "frame": frame}


@register_head("frame")
class FrameHead(nn.Module):
    """Per-class logits per time frame from features pooled over frequency only (1st place).

    The clip logit is the max over frames, the same reduction inference uses, so a model
    trained on box frames scores a recording by its strongest frame.
    """

    def __init__(self, in_features: int, n_classes: int, *, pool: str = "avgmax", dropout: float = 0.2,
                 hidden: int = 256):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Conv1d(in_features, hidden, kernel_size=3, padding=1)
        self.classifier = nn.Conv1d(hidden, n_classes, kernel_size=1)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        x = features.mean(dim=2) + features.amax(dim=2)  # (batch, channels, frames)
        x = F.relu(self.hidden(self.dropout(x)))
        frame = self.classifier(self.dropout(x))
        return {"clip": frame.amax(dim=-1), "frame": frame}


def geometric_mean_logit(logits: torch.Tensor, *, dim: int = 0) -> torch.Tensor:
    """The logit of the geometric mean of sigmoid(logits) along ``dim``: the ensemble rule that
    measured best for a clip and a frame-level model (benchmarks/RESULTS.md, issue 4)."""
    log_p = F.logsigmoid(logits.float()).mean(dim=dim).clamp_max(-1e-7)
    return log_p - torch.log(-torch.expm1(log_p))


@register_head("clip_frame")
class ClipFrameHead(nn.Module):
    """A clip head and a frame-level head on one backbone: the clip + frame ensemble at the
    cost of one model.

    Each branch is trained with its own clip loss (``branches``; the frame branch also with the
    loss on box frames when ``loss.frame_weight`` > 0); ``clip``, which validation and
    inference read, is their geometric mean. ``frame`` is the frame branch's output.
    """

    def __init__(self, in_features: int, n_classes: int, *, pool: str = "avgmax", dropout: float = 0.2):
        super().__init__()
        self.clip_branch = ClipHead(in_features, n_classes, pool=pool, dropout=dropout)
        self.frame_branch = FrameHead(in_features, n_classes, dropout=dropout)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        framed = self.frame_branch(features)
        branches = torch.stack([self.clip_branch(features)["clip"].float(), framed["clip"].float()])
        return {"clip": geometric_mean_logit(branches), "frame": framed["frame"], "branches": branches}


class Detector(nn.Module):
    """Waveforms -> logits. The front end lives inside so inference needs nothing else."""

    def __init__(self, *, features: FeatureConfig, model: ModelConfig, n_classes: int):
        super().__init__()
        self.frontend = FrontEnd(features)
        self.backbone = create_backbone(model.backbone, in_chans=features.in_chans)
        if model.weights:
            load_backbone_weights(self.backbone, model.weights)
        if model.head not in HEADS:
            raise InputError(f"model.head '{model.head}' is unknown; choose from {', '.join(HEADS)}")
        self.head = HEADS[model.head](self.backbone.num_features, n_classes, pool=model.pool, dropout=model.dropout)
        self.spec_augment: nn.Module | None = None  # set by training; identity at inference

    def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        image = self.frontend(wave)
        if self.training and self.spec_augment is not None:
            image = self.spec_augment(image)
        return self.classify(image)

    def classify(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network after the front end: images -> logits."""
        return self.head(self.backbone.forward_features(image))


def check_model_choices(model: ModelConfig) -> None:
    """The backbone and head names, checked before a run spends minutes loading data."""
    problems = []
    if model.head not in HEADS:
        problems.append(f"model.head '{model.head}' is unknown; choose from {', '.join(HEADS)}")
    base = SLIM_BACKBONES.get(model.backbone, (model.backbone, {}))[0]
    import timm

    if not timm.is_model(base):
        problems.append(f"model.backbone '{model.backbone}' is not a timm model (timm.list_models() lists them) nor one of "
                        f"{', '.join(SLIM_BACKBONES)}")
    if problems:
        raise InputError("config: " + "; ".join(problems))


def build_model(*, features: FeatureConfig, model: ModelConfig, n_classes: int) -> Detector:
    return Detector(features=features, model=model, n_classes=n_classes)


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a local checkpoint (safetensors or torch) into a backbone, skipping classifier and stem shape mismatches."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: backbone weights file not found (dawnchorus never downloads weights; pass a local file)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise InputError(f"{path}: no tensor in this file matches the backbone's parameters; is it for the same architecture?")
    backbone.load_state_dict(usable, strict=False)


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA when present; anything else is passed to torch as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"device '{name}' is not a torch device ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device '{name}' asked for, but no CUDA GPU is available here; use --set train.device=cpu")
    return device
