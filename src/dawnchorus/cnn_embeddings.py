"""A trained CNN run as an embedder: the pooled backbone features of its first fold.

For users who may not use BirdNET's non-commercial licence, any run of ``dawnchorus train``
embeds windows for ``index`` and ``search``. The vector of a window is its backbone feature
map averaged over frequency, then both averaged and maximised over time (the pooling of
PANNs' embeddings): the mean keeps the window's texture, the max a short call inside it.
Folds are not averaged: each fold's network has its own feature space.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .embeddings import Embedder
from .errors import InputError
from .infer import load_run
from .runs import file_digest
from .stages import timed


def cnn_embedder(run_dir: str | Path, *, threads: int = 1, device: str = "cpu") -> Embedder:
    """The first finished fold of ``run_dir`` as an ``embeddings.Embedder`` (named by its weights' digest)."""
    from .models import resolve_device

    run = load_run(run_dir, device=resolve_device(device))
    weights = sorted(Path(run.run_dir).glob("fold*/model.safetensors"))
    model = run.models[0]
    if not hasattr(model, "backbone") or not hasattr(model.backbone, "forward_features"):
        raise InputError(f"{run_dir}: its model has no backbone features to embed with")
    dim = 2 * int(model.backbone.num_features)
    torch_device = next(model.parameters()).device

    @torch.no_grad()
    def embed(windows: np.ndarray) -> np.ndarray:
        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, int(threads)))
        try:
            batch = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(torch_device)
            with timed("spectrogram"):
                image = model.frontend(batch)
            with timed("network"):
                features = model.backbone.forward_features(image).float()  # (n, channels, freq, time)
            over_time = features.mean(dim=2)
            return torch.cat([over_time.mean(dim=2), over_time.amax(dim=2)], dim=1).cpu().numpy()
        finally:
            torch.set_num_threads(previous)

    infer = run.config.infer
    return Embedder(name=f"cnn-{file_digest(weights[0])[:16]}", embed=embed, dim=dim,
                    sample_rate_hz=run.config.features.sample_rate_hz, window_s=float(infer.window_s),
                    batch_size=int(infer.batch_size))
