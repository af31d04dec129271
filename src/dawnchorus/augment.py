"""Training-time augmentation on batches, vectorised in torch so it runs on CPU or GPU.

Waveform: random gain, Gaussian or pink noise at a random SNR, circular time shift (frame
targets roll with it).
Real backgrounds: stretches of real soundscapes (``BackgroundBank``) mixed under crops.
Spectrogram: SpecAugment time/frequency masks. Mixup with the label algebra that partial
labels need: a mixed class is 1 if either source is 1, 0 only if both are known 0, and
unknown otherwise (a known 0 mixed with an unknown is still unknown).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import AugmentConfig
from .data.audio import load_audio, probe_audio, soundscape_files
from .errors import InputError

BACKGROUND_LABELS = ("unknown", "keep")


def _uniform(shape, low: float, high: float, generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def pink_noise(shape: tuple[int, int], *, generator, device) -> torch.Tensor:
    """1/f noise by shaping white noise in the frequency domain."""
    white = torch.randn(shape, generator=generator, device=device)
    spectrum = torch.fft.rfft(white)
    freqs = torch.arange(spectrum.shape[-1], device=device).clamp_min(1).float()
    pink = torch.fft.irfft(spectrum / freqs.sqrt(), n=shape[-1])
    return pink / pink.std(dim=-1, keepdim=True).clamp_min(1e-8)


def _roll(values: torch.Tensor, shift_fraction: torch.Tensor) -> torch.Tensor:
    """Roll each example's last axis by its own fraction of that axis, as one gather."""
    length = values.shape[-1]
    shifts = torch.round(shift_fraction * length).long().view(-1, *([1] * (values.dim() - 1)))
    index = (torch.arange(length, device=values.device) - shifts) % length
    return values.gather(-1, index.expand_as(values))


def augment_waveforms(waves: torch.Tensor, config: AugmentConfig, *, generator: torch.Generator,
                      frames: dict[str, torch.Tensor] | None = None):
    """Time shift, gain and noise. ``frames`` (per-example tensors with time last, such as
    frame targets) are rolled with their waveform; then ``(waves, frames)`` is returned."""
    batch, length = waves.shape
    device = waves.device
    if config.time_shift_fraction > 0:
        fraction = _uniform((batch,), -config.time_shift_fraction, config.time_shift_fraction, generator, device)
        waves = _roll(waves, fraction)
        if frames is not None:
            frames = {name: _roll(values, fraction) if values.shape[-1] else values for name, values in frames.items()}
    if config.gain_db > 0:
        gain_db = _uniform((batch, 1), -config.gain_db, config.gain_db, generator, device)
        waves = waves * torch.pow(10.0, gain_db / 20.0)
    if config.noise_prob > 0:
        use = (torch.rand((batch, 1), generator=generator, device=device) < config.noise_prob).float()
        snr_db = _uniform((batch, 1), config.noise_snr_db[0], config.noise_snr_db[1], generator, device)
        signal_rms = waves.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-6)
        white = torch.randn(waves.shape, generator=generator, device=device)
        pink = pink_noise(tuple(waves.shape), generator=generator, device=device)
        which = (torch.rand((batch, 1), generator=generator, device=device) < 0.5).float()
        noise = which * white + (1 - which) * pink
        waves = waves + use * noise * signal_rms / torch.pow(10.0, snr_db / 20.0)
    return waves if frames is None else (waves, frames)


class BackgroundBank:
    """Real soundscapes at the model's rate, held in memory as one buffer to cut crops from.

    Every audio file under ``config.background_dir`` contributes an equal share of at most
    ``background_max_s`` seconds in all (each file read from its start), so a folder of long
    recordings costs bounded memory and every site is represented."""

    def __init__(self, config: AugmentConfig, *, sample_rate_hz: int):
        folder = config.background_dir
        if not 0.0 < config.background_prob <= 1.0:
            raise InputError(f"augment.background_prob {config.background_prob!r} must lie in (0, 1] when background_dir is set")
        if config.background_labels not in BACKGROUND_LABELS:
            raise InputError(f"augment.background_labels {config.background_labels!r}: use one of {', '.join(BACKGROUND_LABELS)}")
        if not config.background_max_s > 0:
            raise InputError(f"augment.background_max_s {config.background_max_s!r} must be a positive number of seconds")
        files = soundscape_files(folder, setting="augment.background_dir")
        share = config.background_max_s / len(files)
        parts = []
        for path in files:
            duration = min(share, probe_audio(path).duration_s)
            wave = load_audio(path, sample_rate_hz=sample_rate_hz, duration_s=duration)
            if np.any(wave):
                parts.append((wave - wave.mean()) / max(float(wave.std()), 1e-8))
        if not parts:
            raise InputError(f"augment.background_dir {folder!r}: every recording is silent")
        self.files = files
        self.buffer = torch.from_numpy(np.concatenate(parts).astype(np.float32))

    def sample(self, batch: int, length: int, *, generator: torch.Generator, device) -> torch.Tensor:
        """``batch`` stretches of ``length`` samples, unit rms, from random places (wrapping round)."""
        starts = torch.randint(0, self.buffer.shape[0], (batch, 1), generator=generator, device=device)
        index = (starts + torch.arange(length, device=device)) % self.buffer.shape[0]
        out = self.buffer.to(device)[index]
        return out / out.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-6)


def mix_backgrounds(waves: torch.Tensor, targets: dict[str, torch.Tensor], bank: BackgroundBank, config: AugmentConfig, *,
                    generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Add a real background to a ``background_prob`` share of ``waves`` at a random SNR. With
    ``background_labels="unknown"`` the known 0 targets (clip and frame tensors in ``targets``)
    of those crops become NaN; a 1 stays a 1, since the call is still there."""
    batch, length = waves.shape
    device = waves.device
    use = torch.rand((batch,), generator=generator, device=device) < config.background_prob
    snr_db = _uniform((batch, 1), config.background_snr_db[0], config.background_snr_db[1], generator, device)
    signal_rms = waves.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-6)
    noise = bank.sample(batch, length, generator=generator, device=device)
    waves = waves + use[:, None].float() * noise * signal_rms / torch.pow(10.0, snr_db / 20.0)
    if config.background_labels == "unknown":
        targets = {name: torch.where(use.view(-1, *([1] * (t.dim() - 1))) & (t == 0), torch.full_like(t, float("nan")), t)
                   for name, t in targets.items()}
    return waves, targets


def mix_targets(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Label algebra of mixup for partial targets ({1, 0, NaN}, or soft pseudo scores).

    A 1 on either side wins; two known values give the larger; anything else is unknown
    (a known 0 mixed with an unknown sound is still unknown).
    """
    positive = (a == 1) | (b == 1)
    both_known = ~torch.isnan(a) & ~torch.isnan(b)
    unknown = torch.full_like(a, float("nan"))
    return torch.where(positive, torch.ones_like(a), torch.where(both_known, torch.maximum(a, b), unknown))


def mixup(waves: torch.Tensor, targets: torch.Tensor, config: AugmentConfig, *, generator: torch.Generator,
          extra: dict[str, torch.Tensor] | None = None):
    """Mix a random share of the batch with a shuffled copy of itself.

    ``extra`` holds more per-example tensors to mix with the same partners: further targets
    (frame targets, mixed with the label algebra) and loss weights (keys ending in
    ``weight``, mixed as the larger of the two). Returns ``(waves, targets)``, plus the mixed
    ``extra`` dict when one was given.
    """
    batch = waves.shape[0]
    if config.mixup_prob <= 0 or batch < 2:
        return (waves, targets) if extra is None else (waves, targets, extra)
    device = waves.device
    partner = torch.randperm(batch, generator=generator, device=device)
    use = torch.rand((batch,), generator=generator, device=device) < config.mixup_prob
    beta = torch.distributions.Beta(torch.tensor(config.mixup_alpha), torch.tensor(config.mixup_alpha))
    lam = beta.sample((batch,)).to(device)
    lam = torch.maximum(lam, 1 - lam)  # the original stays the dominant sound
    lam = torch.where(use, lam, torch.ones_like(lam))
    mixed_waves = lam[:, None] * waves + (1 - lam[:, None]) * waves[partner]

    def mixed(name: str, tensor: torch.Tensor) -> torch.Tensor:
        other = tensor[partner]
        combined = torch.maximum(tensor, other) if name.endswith("weight") else mix_targets(tensor, other)
        return torch.where(use.view(-1, *([1] * (tensor.dim() - 1))), combined, tensor)

    mixed_targets = mixed("target", targets)
    if extra is None:
        return mixed_waves, mixed_targets
    return mixed_waves, mixed_targets, {name: mixed(name, tensor) for name, tensor in extra.items()}


class SpecAugment(nn.Module):
    """Random time and frequency stripes set to the image mean (active in training only)."""

    def __init__(self, config: AugmentConfig):
        super().__init__()
        self.config = config

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return image
        batch, _, n_bins, n_frames = image.shape
        device = image.device
        keep = torch.ones((batch, 1, n_bins, n_frames), device=device, dtype=torch.bool)
        for _ in range(self.config.spec_time_masks):
            keep &= ~self._stripe(batch, n_frames, self.config.spec_time_mask_frames, device).view(batch, 1, 1, n_frames)
        for _ in range(self.config.spec_freq_masks):
            keep &= ~self._stripe(batch, n_bins, self.config.spec_freq_mask_bins, device).view(batch, 1, n_bins, 1)
        fill = image.mean(dim=(-2, -1), keepdim=True)
        return torch.where(keep, image, fill)

    @staticmethod
    def _stripe(batch: int, size: int, max_width: int, device) -> torch.Tensor:
        width = torch.randint(0, max_width + 1, (batch, 1), device=device)
        start = (torch.rand((batch, 1), device=device) * (size - width).clamp_min(1)).long()
        position = torch.arange(size, device=device).unsqueeze(0)
        return (position >= start) & (position < start + width)
