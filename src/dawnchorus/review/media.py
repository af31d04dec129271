"""What the reviewer sees and hears: a spectrogram crop with the box drawn, and the clip band-passed to the box.

Both are made server-side from the recording (seeked, native sample rate), so the page needs
no audio or plotting code. Spectrograms take ~0.1 s to draw, so they are cached as PNG files;
the cache key includes the file's size and mtime, so a replaced recording is redrawn.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal as scipy_signal

from ..data.audio import AudioInfo, load_audio
from ..errors import InputError

CONTEXT_S = 1.0  # audio shown either side of the box, so the call can be told from the background
CONTEXT_CHOICES_S = (1.0, 3.0, 10.0, 30.0)  # the page's zoom levels: a fixed few, so cached images stay few
MAX_PAN = 20  # the view moves by one context width per step, this many either way
CLIP_CONTEXT_S = 0.25  # played either side of the box; a short lead-in makes the onset audible
_RENDER_VERSION = "1"  # bump when the drawing changes, so cached images are redrawn
_FADE_S = 0.01  # fade clip edges so playback does not start or stop with a click
_RENDER_LOCK = threading.Lock()  # matplotlib is not thread-safe, and the server renders on several threads


@dataclass(frozen=True)
class BoxView:
    """The part of one recording a candidate points at."""

    audio: AudioInfo
    t_min_s: float
    t_max_s: float
    f_min_hz: float
    f_max_hz: float


def _span(view: BoxView, context_s: float, pan: int = 0) -> tuple[float, float]:
    """Start and duration of the box plus context, kept inside the recording; ``pan`` moves the
    view by that many context widths (the box may leave it), stopping at the recording's ends."""
    if pan:
        width = min(view.audio.duration_s, view.t_max_s - view.t_min_s + 2 * context_s)
        start = min(max(0.0, view.t_min_s - context_s + pan * context_s), view.audio.duration_s - width)
        return max(0.0, start), width
    start = max(0.0, view.t_min_s - context_s)
    end = min(view.audio.duration_s, view.t_max_s + context_s)
    if end <= start:  # a box starting at the very end: still show the last moments
        start = max(0.0, view.audio.duration_s - 2 * context_s)
        end = view.audio.duration_s
    return start, end - start


def spectrogram_png(view: BoxView, *, cache_dir: str | Path | None = None, context_s: float = CONTEXT_S,
                    pan: int = 0) -> bytes:
    """PNG of the box's surroundings (``context_s`` either side, moved ``pan`` context widths),
    time on x and frequency on y, the box outlined."""
    if context_s not in CONTEXT_CHOICES_S:
        raise InputError(f"context {context_s} s is not one of the zoom levels {', '.join(f'{c:g}' for c in CONTEXT_CHOICES_S)}")
    if abs(pan) > MAX_PAN:
        raise InputError(f"pan {pan} is outside -{MAX_PAN}..{MAX_PAN} (steps of one context width)")
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"spec_{_cache_key(view, context_s, pan)}.png"
        if cache_file.is_file():
            return cache_file.read_bytes()
    with _RENDER_LOCK:
        png = _render_spectrogram(view, context_s, pan)
    if cache_file is not None:
        _write_atomically(cache_file, png)
    return png


def _cache_key(view: BoxView, context_s: float, pan: int = 0) -> str:
    stat = view.audio.path.stat()
    parts = (_RENDER_VERSION, str(view.audio.path.resolve()), stat.st_size, stat.st_mtime_ns,
             view.t_min_s, view.t_max_s, view.f_min_hz, view.f_max_hz) + ((context_s,) if context_s != CONTEXT_S else ())
    parts += (("pan", pan),) if pan else ()
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:20]


def _write_atomically(path: Path, data: bytes) -> None:
    # Two requests for the same image may race; each writes its own temporary file and the rename is atomic.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(temporary, path)


def _render_spectrogram(view: BoxView, context_s: float = CONTEXT_S, pan: int = 0) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # not pyplot: pyplot's global state is not safe across server threads
    from matplotlib.patches import Rectangle

    rate = view.audio.sample_rate_hz
    start, duration = _span(view, context_s, pan)
    samples = load_audio(view.audio.path, sample_rate_hz=rate, t_start_s=start, duration_s=duration)
    n_fft = int(2 ** np.ceil(np.log2(max(64, rate * 0.02))))  # ~20 ms windows resolve both chirps and trills
    n_fft = min(n_fft, samples.size)
    freqs, _, power = scipy_signal.spectrogram(samples, fs=rate, window="hann", nperseg=n_fft, noverlap=n_fft * 3 // 4,
                                               scaling="spectrum")
    decibels = 10 * np.log10(power + 1e-12)
    top_db = decibels.max() if decibels.size else 0.0
    nyquist = view.audio.nyquist_hz
    f_top = min(nyquist, max(view.f_max_hz * 1.5, view.f_max_hz + 1000.0))

    figure = Figure(figsize=(7.2, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.1, 0.15, 0.88, 0.8))
    axes.imshow(decibels, origin="lower", aspect="auto", cmap="magma", vmin=top_db - 80, vmax=top_db,
                extent=(start, start + duration, 0, freqs[-1] if freqs.size else nyquist), interpolation="nearest")
    axes.add_patch(Rectangle((view.t_min_s, view.f_min_hz), view.t_max_s - view.t_min_s, view.f_max_hz - view.f_min_hz,
                             fill=False, edgecolor="#3ee0ff", linewidth=1.6))
    axes.set_xlim(start, start + duration)
    axes.set_ylim(0, f_top)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("Hz")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def bandpassed_wav(view: BoxView) -> bytes:
    """16-bit WAV of the box's time span (plus a little context), filtered to its band and normalised."""
    rate = view.audio.sample_rate_hz
    start, duration = _span(view, CLIP_CONTEXT_S)
    samples = load_audio(view.audio.path, sample_rate_hz=rate, t_start_s=start, duration_s=duration).astype(np.float64)
    sos = _band_filter(view.f_min_hz, view.f_max_hz, rate)
    if sos is not None:
        samples = scipy_signal.sosfilt(sos, samples)
    fade = min(samples.size // 2, int(_FADE_S * rate))
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade)
        samples[:fade] *= ramp
        samples[-fade:] *= ramp[::-1]
    peak = np.max(np.abs(samples)) if samples.size else 0.0
    if peak > 0:
        samples *= 0.9 / peak  # faint calls are the ones that need listening to
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _band_filter(f_min_hz: float, f_max_hz: float, rate: int):
    """Butterworth second-order sections for the box's band, or None when the box spans the whole band."""
    nyquist = rate / 2.0
    low = f_min_hz if f_min_hz >= 20.0 else None  # below 20 Hz there is nothing audible to remove
    high = f_max_hz if f_max_hz < 0.98 * nyquist else None  # a cut-off at Nyquist is not a valid filter
    if low is not None and high is not None and low < high:
        return scipy_signal.butter(4, [low, high], btype="bandpass", fs=rate, output="sos")
    if low is not None and low < 0.98 * nyquist:
        return scipy_signal.butter(4, low, btype="highpass", fs=rate, output="sos")
    if high is not None:
        return scipy_signal.butter(4, high, btype="lowpass", fs=rate, output="sos")
    return None
