"""Spectrogram of one recording with labelled boxes drawn on it (for docs and eyeballing)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import soundfile as sf
from scipy.signal import spectrogram


def render_preview(*, audio_path: str | Path, boxes: Iterable[Mapping] = (), out_png: str | Path,
                   f_max_hz: float = 12000.0, t_range: tuple[float, float] | None = None) -> Path:
    """Save a spectrogram PNG of ``audio_path`` with boxes drawn on it.

    ``boxes``: mappings (or a DataFrame's ``to_dict("records")``) with ``t_min, f_min, t_max,
    f_max`` and optionally ``color`` (default green) and ``label`` (e.g. the species id).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    audio, sr = sf.read(str(audio_path), dtype="float32")
    f, t, s = spectrogram(audio, fs=sr, window="hann", nperseg=1024, noverlap=512)
    keep = f <= f_max_hz
    db = 10 * np.log10(s[keep] + 1e-14)
    fig, ax = plt.subplots(figsize=(16, 5))
    ax.pcolormesh(t, f[keep], db, shading="auto", cmap="magma", vmin=np.percentile(db, 20), vmax=db.max())
    for b in boxes:
        color = b.get("color", "lime")
        ax.add_patch(Rectangle((b["t_min"], b["f_min"]), b["t_max"] - b["t_min"], b["f_max"] - b["f_min"],
                               fill=False, edgecolor=color, linewidth=1.2))
        if "label" in b:
            ax.text(b["t_min"], b["f_max"], str(b["label"]), color=color, fontsize=7, va="bottom", clip_on=True)
    if t_range is not None:
        ax.set_xlim(*t_range)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(Path(audio_path).name)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return Path(out_png)
