"""Self-supervised pretraining of a backbone on the user's own unlabelled recordings.

Contrastive, as the 23rd place and COLA (Saeed et al. 2021) did: two crops of one recording a
few seconds apart, each augmented (gain, noise, SpecAugment), are a positive pair; every other
crop of the batch is a negative (NT-Xent, SimCLR's loss). What is learned is the recordings'
own sounds — their calls, insects, rain and recorder — without a label or a downloaded
weight, so a user who may not use a pretrained model's licence still starts from something.

``pretrain(...)`` writes the backbone's weights as safetensors; training loads them with
``--set model.weights=FILE``. The features and backbone come from the run config, so the
file fits the preset it is pretrained for. Every ``checkpoint_every`` steps the backbone and
projection are saved (atomically), and a rerun continues from the last save (with a fresh
optimiser) until ``steps`` are done.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from .atomic import atomic_write_bytes, atomic_write_text
from .augment import SpecAugment, augment_waveforms
from .config import RunConfig
from .data.audio import find_audio_files, load_audio, probe_audio
from .errors import AudioError, InputError
from .features import FrontEnd
from .models import create_backbone, resolve_device


@dataclass(frozen=True)
class PretrainSettings:
    steps: int = 1000
    batch_size: int = 32
    max_gap_s: float = 5.0  # the two crops of a pair start at most this far apart
    temperature: float = 0.1
    lr: float = 1e-3
    projection_dim: int = 128
    checkpoint_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "projection_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"pretraining {name} must be a whole number >= 1, not {value!r}")
        if self.batch_size < 2:
            raise InputError("pretraining batch_size must be at least 2: the other crops of a batch are the negatives")
        for name in ("max_gap_s", "temperature", "lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"pretraining {name} must be a positive number, not {value!r}")


class ContrastiveEncoder(nn.Module):
    """Front end + backbone + a projection head used only by the contrastive loss."""

    def __init__(self, config: RunConfig, *, projection_dim: int):
        super().__init__()
        self.frontend = FrontEnd(config.features)
        self.backbone = create_backbone(config.model.backbone, in_chans=config.features.in_chans)
        width = self.backbone.num_features
        self.projection = nn.Sequential(nn.Linear(2 * width, width), nn.ReLU(), nn.Linear(width, projection_dim))
        self.spec_augment = SpecAugment(config.augment)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        image = self.spec_augment(self.frontend(wave))
        features = self.backbone.forward_features(image)
        pooled = torch.cat([features.mean(dim=(-2, -1)), features.amax(dim=(-2, -1))], dim=1)
        return F.normalize(self.projection(pooled), dim=1)


def nt_xent(a: torch.Tensor, b: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """SimCLR's loss: row i of ``a`` must pick row i of ``b`` (and back) among all 2N - 1 others."""
    z = torch.cat([a, b])
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    n = a.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(similarity, target)


class PairSampler:
    """Pairs of crops of one recording, a random gap apart, from every readable file under a folder."""

    def __init__(self, audio_dir: str | Path, *, sample_rate_hz: int, crop_s: float, max_gap_s: float, seed: int):
        files = find_audio_files(audio_dir, ids="path")
        if not files:
            raise InputError(f"{audio_dir}: no audio files to pretrain on")
        self.files, self.durations, unreadable = [], [], []
        for path in files.values():
            try:
                self.durations.append(probe_audio(path).duration_s)
                self.files.append(path)
            except AudioError as exc:
                unreadable.append(str(exc))
        if not self.files:
            raise InputError(f"{audio_dir}: none of {len(files)} audio files can be read (first: {unreadable[0]})")
        self.skipped = unreadable
        if unreadable:
            warnings.warn(f"{audio_dir}: {len(unreadable)} of {len(files)} audio files cannot be read and are left out "
                          f"(first: {unreadable[0]}); the list is kept in the pretraining log", stacklevel=2)
        self.rate, self.crop_s, self.max_gap_s = sample_rate_hz, crop_s, max_gap_s
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = [], []
        for index in self.rng.integers(len(self.files), size=size):
            span = max(self.durations[index] - self.crop_s, 0.0)
            t1 = float(self.rng.uniform(0.0, span)) if span > 0 else 0.0
            t2 = float(np.clip(t1 + self.rng.uniform(-self.max_gap_s, self.max_gap_s), 0.0, span))
            for start, out in ((t1, first), (t2, second)):
                out.append(load_audio(self.files[index], sample_rate_hz=self.rate, t_start_s=start, duration_s=self.crop_s))
        return torch.from_numpy(np.stack(first)), torch.from_numpy(np.stack(second))


def _save(state: dict[str, torch.Tensor], path: Path) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write_bytes(path, safetensors_bytes(tensors))


def pretrain(*, audio_dir: str | Path, out: str | Path, config: RunConfig, settings: PretrainSettings = PretrainSettings(),
             progress: bool = False) -> Path:
    """Pretrain ``config``'s backbone on the audio under ``audio_dir``; returns the weights file ``out``."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise InputError(f"{out}: the backbone weights are written as safetensors; give a path ending in .safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    state_path, log_path = out.with_suffix(".state.safetensors"), out.with_suffix(".json")
    # more steps (or other checkpoint spacing) continue a pretraining; anything else starts another
    kept = {k: v for k, v in asdict(settings).items() if k not in ("steps", "checkpoint_every")}
    fingerprint = json.loads(json.dumps({"features": asdict(config.features), "backbone": config.model.backbone,
                                         "settings": kept, "audio_dir": str(Path(audio_dir).resolve())}))
    log = json.loads(log_path.read_text()) if log_path.is_file() and state_path.is_file() else None
    if log is not None and log.get("fingerprint") != fingerprint:
        raise InputError(f"{log_path}: pretraining with other settings or audio is already here; give another --out")
    device = resolve_device(config.train.device)
    torch.manual_seed(settings.seed)
    encoder = ContrastiveEncoder(config, projection_dim=settings.projection_dim).to(device)
    done, losses = 0, []
    if log is not None:
        encoder.load_state_dict(load_file(str(state_path)), strict=False)
        done, losses = int(log["steps_done"]), list(log["losses"])
    sampler = PairSampler(audio_dir, sample_rate_hz=config.features.sample_rate_hz, crop_s=config.sampling.crop_s,
                          max_gap_s=settings.max_gap_s, seed=settings.seed + done)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=settings.lr, weight_decay=1e-4)
    generator = torch.Generator(device=device).manual_seed(settings.seed + done)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=settings.steps, initial=done, desc="pretraining", unit="step")
    encoder.train()
    while done < settings.steps:
        first, second = (augment_waveforms(v.to(device), config.augment, generator=generator) for v in sampler.batch(settings.batch_size))
        loss = nt_xent(encoder(first), encoder(second), temperature=settings.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 5.0)
        optimizer.step()
        done += 1
        losses.append(round(float(loss.detach()), 5))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if done % settings.checkpoint_every == 0 or done == settings.steps:
            _save(encoder.state_dict(), state_path)
            _save(encoder.backbone.state_dict(), out)
            atomic_write_text(log_path, json.dumps({"fingerprint": fingerprint, "steps_done": done, "losses": losses,
                                                    "files": len(sampler.files), "unreadable": sampler.skipped}, indent=1))
    if bar is not None:
        bar.close()
    return out
