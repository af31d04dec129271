"""Human-readable outputs: a spectrogram with predicted detections, and a Markdown report."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .data.audio import load_audio
from .data.species import SpeciesTable


def plot_detections(*, audio_path: str | Path, windows: pd.DataFrame, species: SpeciesTable, out_png: str | Path,
                    truth_species: Sequence[int] = (), top_n: int = 5, sample_rate_hz: int = 32000) -> Path:
    """Spectrogram of one recording above a heat map of window scores for its top species."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import spectrogram

    wave = load_audio(audio_path, sample_rate_hz=sample_rate_hz)
    freqs, times, power = spectrogram(wave, fs=sample_rate_hz, nperseg=1024, noverlap=512)
    peak = windows[species.columns].max()
    shown = list(dict.fromkeys([f"s{s}" for s in truth_species] + list(peak.sort_values(ascending=False).index[:top_n])))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top.pcolormesh(times, freqs, 10 * np.log10(power + 1e-12), shading="auto", cmap="magma")
    top.set_ylim(0, min(16000, sample_rate_hz / 2))
    top.set_ylabel("frequency (Hz)")
    top.set_title(Path(audio_path).name)
    duration = wave.shape[0] / sample_rate_hz
    grid = np.zeros((len(shown), 600))
    edges = np.linspace(0, duration, grid.shape[1] + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    for row, column in enumerate(shown):
        for start, end, score in windows[["t_start_s", "t_end_s", column]].itertuples(index=False):
            inside = (centres >= start) & (centres < end)
            grid[row, inside] = np.maximum(grid[row, inside], score)
    image = bottom.imshow(grid, aspect="auto", extent=(0, duration, len(shown) - 0.5, -0.5), vmin=0, vmax=1, cmap="viridis")
    names = {c: n for c, n in zip(species.columns, species.names)}
    truth_columns = {f"s{s}" for s in truth_species}
    bottom.set_yticks(range(len(shown)))
    bottom.set_yticklabels([f"{'* ' if c in truth_columns else ''}{c} {names[c]}" for c in shown], fontsize=8)
    bottom.set_xlabel("time (s)")
    bottom.set_title("window scores (* = truly present)" if truth_columns else "window scores", fontsize=9)
    fig.colorbar(image, ax=bottom, fraction=0.02, pad=0.01)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png
