"""The spectrogram front end: waveform batches to log-mel images, on whatever device they are.

``LogMel`` matches ``librosa.power_to_db(librosa.feature.melspectrogram(...))`` (Slaney mel
filters, centred STFT with zero padding, per-example ``top_db`` clipping); the parity test
in ``tests/test_features.py`` states the tolerance. ``FrontEnd`` stacks optional extra
channels on top: a frequency-coordinate channel (the CoordConv trick of the 2nd, 6th and
11th places: convolutions are translation-invariant, bird calls are not invariant in pitch),
PCEN, and a delta (time-derivative) channel.
"""

from __future__ import annotations

import librosa
import torch
import torch.nn.functional as F
from torch import nn

from .config import FeatureConfig

EXTRA_CHANNELS = ("freq", "pcen", "delta")
CPU_CHUNK_WINDOWS = 8


class LogMel(nn.Module):
    """Batched log-mel spectrogram: (batch, samples) -> (batch, n_mels, frames) in dB."""

    def __init__(self, config: FeatureConfig, *, amin: float = 1e-10):
        super().__init__()
        self.config = config
        self.amin = amin
        win_length = config.win_length or config.n_fft
        window = torch.from_numpy(librosa.filters.get_window(config.window, win_length, fftbins=True)).float()
        if win_length < config.n_fft:  # centre the window in the FFT frame, as librosa does
            left = (config.n_fft - win_length) // 2
            window = F.pad(window, (left, config.n_fft - win_length - left))
        mel = librosa.filters.mel(sr=config.sample_rate_hz, n_fft=config.n_fft, n_mels=config.n_mels,
                                  fmin=config.f_min_hz, fmax=config.f_max_hz)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)

    def power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave.float(), n_fft=self.config.n_fft, hop_length=self.config.hop_length,
                          window=self.window, center=True, pad_mode="constant", return_complex=True)
        if self.config.power == 2.0:  # re² + im²: a quarter of the time of abs() then squaring, equal to float rounding
            parts = torch.view_as_real(spec)
            magnitude = parts[..., 0].square() + parts[..., 1].square()
        else:
            magnitude = spec.abs()
            if self.config.power != 1.0:
                magnitude = magnitude.pow(self.config.power)
        return torch.matmul(self.mel_basis, magnitude)

    def to_db(self, power_mel: torch.Tensor) -> torch.Tensor:
        db = 10.0 * torch.log10(power_mel.clamp_min(self.amin))
        if self.config.top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - self.config.top_db)
        return db

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.to_db(self.power_mel(wave))


def pcen(power_mel: torch.Tensor, *, frames_per_second: float, time_constant_s: float = 0.4, gain: float = 0.98,
         bias: float = 2.0, power: float = 0.5, eps: float = 1e-6) -> torch.Tensor:
    """Per-channel energy normalisation (Wang et al. 2017), which suppresses steady
    background like insect choruses and rain while keeping transient calls.

    The first-order IIR smoother is applied as a causal convolution with its truncated
    impulse response, which keeps it vectorised on any device.
    """
    smoothing = 1.0 - float(torch.exp(torch.tensor(-1.0 / (time_constant_s * frames_per_second))))
    length = max(2, int(5.0 / smoothing))
    taps = smoothing * (1.0 - smoothing) ** torch.arange(length, dtype=power_mel.dtype, device=power_mel.device)
    batch, n_mels, frames = power_mel.shape
    flat = power_mel.reshape(batch * n_mels, 1, frames)
    padded = torch.cat([flat[..., :1].expand(-1, -1, length - 1), flat], dim=-1)  # steady-state start
    smooth = F.conv1d(padded, taps.flip(0).view(1, 1, -1)).reshape(batch, n_mels, frames)
    return (power_mel / (eps + smooth).pow(gain) + bias).pow(power) - bias**power


def delta(features: torch.Tensor, *, width: int = 9) -> torch.Tensor:
    """Local slope along time (the regression formula behind ``librosa.feature.delta``)."""
    half = width // 2
    weights = torch.arange(-half, half + 1, dtype=features.dtype, device=features.device)
    weights = weights / (weights**2).sum()
    batch, n_mels, frames = features.shape
    flat = F.pad(features.reshape(batch * n_mels, 1, frames), (half, half), mode="replicate")
    return F.conv1d(flat, weights.view(1, 1, -1)).reshape(batch, n_mels, frames)


class FrontEnd(nn.Module):
    """Waveforms (batch, samples) -> model input (batch, channels, n_mels, frames)."""

    def __init__(self, config: FeatureConfig):
        super().__init__()
        unknown = [c for c in config.extra_channels if c not in EXTRA_CHANNELS]
        if unknown:
            raise ValueError(f"unknown extra channel(s) {unknown}; choose from {list(EXTRA_CHANNELS)}")
        self.config = config
        self.logmel = LogMel(config)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.device.type == "cpu" and wave.shape[0] > CPU_CHUNK_WINDOWS:
            # every step is per window; in pieces the spectra stay in the CPU's cache: 2.5x the windows
            # per second of one batch of 64 (benchmarks/RESULTS.md, "ONNX and the front end")
            return torch.cat([self.images(part) for part in wave.split(CPU_CHUNK_WINDOWS)])
        return self.images(wave)

    def images(self, wave: torch.Tensor) -> torch.Tensor:
        """``forward`` in one piece, whatever the batch (what an exported graph computes)."""
        power_mel = self.logmel.power_mel(wave)
        log_mel = self.logmel.to_db(power_mel)
        channels = [self._normalize(log_mel)]
        for name in self.config.extra_channels:
            if name == "freq":
                ramp = torch.linspace(-1.0, 1.0, log_mel.shape[1], device=wave.device, dtype=log_mel.dtype)
                channels.append(ramp.view(1, -1, 1).expand_as(log_mel))
            elif name == "pcen":
                channels.append(self._normalize(pcen(power_mel, frames_per_second=self.config.frames_per_second)))
            elif name == "delta":
                channels.append(self._normalize(delta(log_mel)))
        return torch.stack(channels, dim=1)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.normalize == "none":
            return x
        mean = x.mean(dim=(-2, -1), keepdim=True)
        std = x.std(dim=(-2, -1), keepdim=True)
        return (x - mean) / (std + 1e-5)
