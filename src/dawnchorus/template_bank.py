"""A bank of template patches as an embedder: per window, how well each labelled example call matches.

The host paper found its training data by template matching; here the same matching is a
feature extractor. Every TP box of the training labels (and, optionally, every FP box: "what
the detector confused with this species") becomes a patch of the flattened log spectrogram
(``templates``: 512-sample Hann window, 50 % overlap, each row's median over time removed).
A window's vector holds, per patch, the best normalized cross-correlation of that patch at any
time offset inside the window, on the patch's own frequency rows. A head (``embed_heads``)
then learns from these similarities which patches speak for which species.

Why it generalises from a dozen boxes: the features are the user's own calls, so nothing has
to be learnt from scratch; a CNN trained on 16 boxes per species learns the corpus it saw.

Windows are flattened on their own (the median over the window's frames), so a window scores
the same in ``predict``, in an archive job's chunks and in training. Patches wider than half
a window are cut to their middle half-window, so every call of a patch's length lies wholly
inside one of the windows (the presets hop half a window).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError, ValidationError
from .templates import HOP_SAMPLES, WINDOW_SAMPLES, Template, TemplatePatch, template_patches

BANK_FILE = "templates.safetensors"
_LOG_FLOOR = 1e-10


@dataclass(frozen=True)
class TemplateBank:
    """Patches (rows x frames of the flattened log spectrogram) and where each came from."""

    patches: tuple[np.ndarray, ...]
    row_starts: tuple[int, ...]
    templates: tuple[Template, ...]
    sample_rate_hz: int
    frame_pool: int = 1  # spectrogram frames averaged into one: the matching's cost falls with its square

    def __len__(self) -> int:
        return len(self.patches)

    @property
    def digest(self) -> str:
        h = hashlib.sha256(f"{self.sample_rate_hz}/{self.frame_pool}".encode())
        for patch, row in zip(self.patches, self.row_starts):
            h.update(np.int64(row).tobytes())
            h.update(np.ascontiguousarray(patch, dtype=np.float32).tobytes())
        return h.hexdigest()[:16]


def build_bank(templates: Sequence[Template], *, audio_dir: str | Path, sample_rate_hz: int, window_s: float,
               frame_pool: int = 1) -> TemplateBank:
    """Cut every template's patch from its recording under ``audio_dir`` at ``sample_rate_hz``.

    Boxes reaching above the Nyquist frequency of that rate are cut at it; a box lying wholly
    above it is refused, naming where it was defined.
    """
    nyquist_hz = sample_rate_hz / 2
    hz_per_row = sample_rate_hz / WINDOW_SAMPLES
    problems, kept = [], []
    for t in templates:
        if t.f_min_hz >= nyquist_hz - hz_per_row:
            problems.append(f"{t.where}: the box ({t.f_min_hz:g}-{t.f_max_hz:g} Hz) lies above {nyquist_hz:g} Hz, the Nyquist "
                            f"frequency of the bank's rate; raise template_sample_rate_hz (--set template_sample_rate_hz=...) or drop the box")
            continue
        kept.append(t if t.f_max_hz <= nyquist_hz else replace(t, f_max_hz=float(nyquist_hz)))
    if problems:
        raise ValidationError("template bank", problems)
    max_frames = max(2 * frame_pool, int(window_s * sample_rate_hz / HOP_SAMPLES) // 2)
    cut = [_middle(p, max_frames) for p in template_patches(kept, audio_dir=audio_dir, sample_rate_hz=sample_rate_hz)]
    return TemplateBank(patches=tuple(pool_frames(p.patch.astype(np.float32), frame_pool) for p in cut),
                        row_starts=tuple(p.row_start for p in cut), templates=tuple(p.template for p in cut),
                        sample_rate_hz=int(sample_rate_hz), frame_pool=int(frame_pool))


def pool_frames(spectrogram: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each ``factor`` consecutive frames (last axis); a ragged tail is dropped, at least one frame kept."""
    if factor <= 1:
        return spectrogram
    n = max(1, spectrogram.shape[-1] // factor) * factor
    trimmed = spectrogram[..., :n] if spectrogram.shape[-1] >= factor else spectrogram
    if trimmed.shape[-1] < factor:
        return trimmed.mean(axis=-1, keepdims=True)
    return trimmed.reshape(*trimmed.shape[:-1], -1, factor).mean(axis=-1)


def _middle(patch: TemplatePatch, max_frames: int) -> TemplatePatch:
    width = patch.patch.shape[1]
    if width <= max_frames:
        return patch
    first = (width - max_frames) // 2
    return replace(patch, patch=patch.patch[:, first : first + max_frames])


def save_bank(bank: TemplateBank, path: str | Path) -> Path:
    from safetensors.numpy import save

    from .atomic import atomic_write_bytes

    tensors = {f"patch{i}": np.ascontiguousarray(p, dtype=np.float32) for i, p in enumerate(bank.patches)}
    rows = [{"row_start": r, "recording_id": t.recording_id, "species_id": t.species_id, "songtype_id": t.songtype_id,
             "t_min_s": t.t_min_s, "t_max_s": t.t_max_s, "f_min_hz": t.f_min_hz, "f_max_hz": t.f_max_hz,
             "template_id": t.template_id, "source": t.source} for r, t in zip(bank.row_starts, bank.templates)]
    metadata = {"sample_rate_hz": str(bank.sample_rate_hz), "frame_pool": str(bank.frame_pool), "templates": json.dumps(rows)}
    return atomic_write_bytes(Path(path), save(tensors, metadata=metadata))


def load_bank(path: str | Path) -> TemplateBank:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: template bank not found; train the run again (dawnchorus train --preset templates-linear)")
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            rows = json.loads(metadata["templates"])
            patches = tuple(f.get_tensor(f"patch{i}") for i in range(len(rows)))
            rate, frame_pool = int(metadata["sample_rate_hz"]), int(metadata["frame_pool"])
    except (KeyError, ValueError, OSError, SafetensorError) as exc:
        raise InputError(f"{path}: not a dawnchorus template bank ({exc}); train the run again") from None
    templates = tuple(Template(recording_id=r["recording_id"], species_id=int(r["species_id"]), songtype_id=int(r["songtype_id"]),
                               t_min_s=float(r["t_min_s"]), t_max_s=float(r["t_max_s"]), f_min_hz=float(r["f_min_hz"]),
                               f_max_hz=float(r["f_max_hz"]), template_id=r["template_id"], source=r["source"]) for r in rows)
    return TemplateBank(patches=patches, row_starts=tuple(int(r["row_start"]) for r in rows), templates=templates,
                        sample_rate_hz=rate, frame_pool=frame_pool)


def window_spectrograms(windows, *, torch, frame_pool: int = 1):
    """Flattened log spectrograms ``(n, rows, frames)`` of windows ``(n, samples)``, as ``templates.log_spectrogram``."""
    if windows.shape[1] < WINDOW_SAMPLES:
        windows = torch.nn.functional.pad(windows, (0, WINDOW_SAMPLES - windows.shape[1]))
    frames = windows.unfold(1, WINDOW_SAMPLES, HOP_SAMPLES)
    hann = torch.hann_window(WINDOW_SAMPLES, periodic=True, dtype=windows.dtype)
    spectrum = torch.log(torch.fft.rfft(frames * hann, dim=-1).abs() + _LOG_FLOOR).transpose(1, 2)
    flattened = spectrum - spectrum.median(dim=2, keepdim=True).values
    if frame_pool > 1 and flattened.shape[2] >= frame_pool:
        flattened = torch.nn.functional.avg_pool1d(flattened, frame_pool)
    return flattened


def centred_kernels(bank: TemplateBank, *, torch) -> list[tuple[int, "torch.Tensor", float]]:
    """Each patch as ``(row_start, kernel with its mean removed, kernel norm)``, prepared once per bank."""
    prepared = []
    for patch, row in zip(bank.patches, bank.row_starts):
        kernel = torch.from_numpy(np.ascontiguousarray(patch, dtype=np.float32))
        kernel = kernel - kernel.mean()
        prepared.append((row, kernel, float(torch.sqrt((kernel**2).sum()))))
    return prepared


def best_matches(spectrograms, kernels, *, torch) -> np.ndarray:
    """``(n, patches)``: each kernel's best NCC over the time offsets of each window (0 where it cannot fit)."""
    n, _, n_frames = spectrograms.shape
    out = torch.zeros((n, len(kernels)), dtype=torch.float32)
    for j, (row, kernel, norm) in enumerate(kernels):
        rows, width = kernel.shape
        if width > n_frames:
            continue
        band = spectrograms[:, row : row + rows, :]
        numerator = torch.nn.functional.conv1d(band, kernel[None]).squeeze(1)  # centred kernel: window means cancel
        sums = torch.nn.functional.pad(band.sum(dim=1).cumsum(dim=1), (1, 0))
        squares = torch.nn.functional.pad((band**2).sum(dim=1).cumsum(dim=1), (1, 0))
        window_sum, window_squares = sums[:, width:] - sums[:, :-width], squares[:, width:] - squares[:, :-width]
        deviation = torch.sqrt(torch.clamp(window_squares - window_sum**2 / (rows * width), min=0.0)) * norm
        flat = deviation <= 1e-6 * max(norm, 1.0)  # a window with no variation matches nothing
        scores = torch.where(flat, torch.zeros_like(numerator), numerator / torch.where(flat, torch.ones_like(deviation), deviation))
        out[:, j] = scores.clamp(-1.0, 1.0).max(dim=1).values
    return out.numpy()


def bank_embedder(bank: TemplateBank, *, window_s: float, batch_size: int = 64, threads: int = 1):
    """The bank as an ``embeddings.Embedder`` (its name carries the bank's digest, so caches never mix banks)."""
    import torch

    from .embeddings import Embedder

    if len(bank) == 0:
        raise InputError("the template bank is empty: the training labels need at least one TP box")
    kernels = centred_kernels(bank, torch=torch)

    def embed(windows: np.ndarray) -> np.ndarray:
        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, int(threads)))
        try:
            with torch.no_grad():
                samples = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
                return best_matches(window_spectrograms(samples, torch=torch, frame_pool=bank.frame_pool), kernels, torch=torch)
        finally:
            torch.set_num_threads(previous)

    return Embedder(name=f"templates-{bank.digest}", embed=embed, dim=len(bank), sample_rate_hz=bank.sample_rate_hz,
                    window_s=float(window_s), batch_size=batch_size)
