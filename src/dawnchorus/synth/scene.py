"""Backgrounds of a soundscape and mixing of the placed calls into one recording.

The *ambient bed* of a recording is the sum of
  * coloured noise between pink and brown (1/f^a, a in [1, 2]) plus a white recorder hiss,
  * insect choruses: narrow noise bands (mostly 3.5-9.5 kHz) with fast amplitude pulsing,
    switched on for long stretches,
  * rain (some recordings): broadband noise and droplet crackle in bursts of a few seconds,
  * wind (some recordings): low-frequency rumble with slow gusts.

SNR of a call (``snr_db`` in ``truth/events.csv``) is defined as
``10*log10(P_call / P_bed)`` where both powers are measured by FFT over the call's own
samples (its box ``t_min..t_max``) and summed over the FFT bins inside the call's box band
``f_min..f_max``; ``P_bed`` uses the ambient bed only (other calls and distractors are not counted
as background). Every call and distractor is scaled to its drawn SNR this way.

Band-limited noise is made by shaping a complex Gaussian spectrum and one inverse real FFT.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft as sfft
from scipy import signal

from dawnchorus.synth.calls import render


def _shaped_noise(n: int, amp_spectrum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of length ``n`` whose rfft magnitude follows ``amp_spectrum``, rms 1."""
    m = amp_spectrum.shape[0]
    spec = np.empty(m, dtype=np.complex64)
    spec.real = rng.standard_normal(m, dtype=np.float32)
    spec.imag = rng.standard_normal(m, dtype=np.float32)
    spec *= amp_spectrum.astype(np.float32)
    spec[0] = 0
    x = sfft.irfft(spec, n)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float32), dtype=np.float64)))
    x *= np.float32(1.0 / max(rms, 1e-20))
    return x


def _smooth_gate(n: int, sr: int, on: list[tuple[float, float]], ramp_s: float) -> np.ndarray:
    gate = np.zeros(n, dtype=np.float32)
    for a, b in on:
        i0, i1 = int(max(a, 0) * sr), int(min(b * sr, n))
        if i1 <= i0:
            continue
        gate[i0:i1] = 1.0
        nr = min(int(ramp_s * sr), (i1 - i0) // 2)
        if nr > 1:
            ramp = np.sin(0.5 * np.pi * np.arange(nr, dtype=np.float32) / nr) ** 2
            gate[i0 : i0 + nr] = ramp
            gate[i1 - nr : i1] = ramp[::-1]
    return gate


def ambient_bed(n: int, sr: int, rng: np.random.Generator, cfg) -> tuple[np.ndarray, dict]:
    """The ambient bed (float32, rms about 1) and a short description of what is in it."""
    duration = n / sr
    freqs = sfft.rfftfreq(n, 1.0 / sr).astype(np.float32)
    alpha = rng.uniform(1.0, 2.0)
    shape = (np.maximum(freqs, 30.0) / 1000.0) ** (-alpha / 2.0)
    shape += 10.0 ** (rng.uniform(-30.0, -16.0) / 20.0)  # recorder hiss, relative to 1 kHz
    shape /= 1.0 + (freqs / (0.4 * sr)) ** 8
    bed = _shaped_noise(n, shape, rng)
    total_power = float(np.sum(shape.astype(np.float64) ** 2))
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    info = {"noise_alpha": round(alpha, 3), "insects": [], "rain_bursts": 0, "wind": False}

    for _ in range(int(rng.poisson(cfg.insects_per_minute * duration / 60.0))):
        fc = rng.uniform(3500.0, 9500.0) if rng.random() < 0.8 else rng.uniform(2500.0, 12000.0)
        bw = rng.uniform(60.0, 900.0)
        band = np.abs(freqs - fc) <= bw / 2
        if not band.any():
            continue
        frac = float(np.sum(shape[band].astype(np.float64) ** 2)) / total_power
        level = np.sqrt(frac) * 10.0 ** (rng.uniform(3.0, 22.0) / 20.0)
        x = _shaped_noise(n, band.astype(np.float32), rng)
        rate, depth = rng.uniform(15.0, 100.0), rng.uniform(0.3, 1.0)
        am = 1.0 - depth * (0.5 + 0.5 * np.cos(np.float32(2 * np.pi * rate) * t + np.float32(rng.uniform(0, 6.3))))
        if rng.random() < 0.5:
            on = [(0.0, duration)]
        else:
            on, start = [], rng.uniform(-0.3, 0.5) * duration
            while start < duration:
                length = rng.uniform(0.2, 0.8) * duration
                on.append((start, start + length))
                start += length + rng.uniform(0.1, 0.4) * duration
        x *= np.float32(level) * am * _smooth_gate(n, sr, on, 1.0)
        bed += x
        info["insects"].append(round(fc))

    if rng.random() < cfg.rain_prob:
        n_bursts = int(rng.integers(1, 4))
        info["rain_bursts"] = n_bursts
        for _ in range(n_bursts):
            length = min(rng.uniform(1.5, 6.0), 0.5 * duration)
            start = rng.uniform(0.0, duration - length)
            i0, m = int(start * sr), int(length * sr)
            f = sfft.rfftfreq(m, 1.0 / sr)
            hp = (f / 900.0) ** 2 / (1.0 + (f / 900.0) ** 2) / (1.0 + (f / 14000.0) ** 2)
            noise = _shaped_noise(m, hp, rng)
            drops = np.zeros(m, dtype=np.float32)
            k = rng.poisson(rng.uniform(150.0, 700.0) * length)
            drops[rng.integers(0, m, k)] = (rng.pareto(2.5, k) + 0.5).astype(np.float32)
            crackle = sfft.irfft(sfft.rfft(drops) * hp.astype(np.float32), m)
            crackle /= max(float(np.sqrt(np.mean(crackle**2))), 1e-12)
            env = _smooth_gate(m, sr, [(0.0, length)], min(0.4, length / 3))
            burst = (noise * rng.uniform(0.3, 1.0) + crackle) * env
            bed[i0 : i0 + m] += np.float32(10.0 ** (rng.uniform(-6.0, 10.0) / 20.0)) * burst

    if rng.random() < cfg.wind_prob:
        info["wind"] = True
        fc = rng.uniform(60.0, 300.0)
        x = _shaped_noise(n, 1.0 / (1.0 + (freqs / fc) ** 4), rng)
        gust = np.zeros(n, dtype=np.float32)
        for _ in range(4):
            gust += np.sin(np.float32(2 * np.pi * rng.uniform(0.03, 0.5)) * t + np.float32(rng.uniform(0, 6.3)))
        gust = np.clip(0.5 + 0.25 * gust, 0.05, None)
        x *= gust * np.float32(10.0 ** (rng.uniform(0.0, 12.0) / 20.0))
        bed += x
    return bed, info


def band_power(x: np.ndarray, sr: int, f_lo: float, f_hi: float) -> float:
    """Mean power of ``x`` within [f_lo, f_hi]: sum of |FFT|^2 over the band's bins / (len * nfft).

    The FFT is zero-padded to a fast length; by Parseval the sum over all bins is the signal energy.
    """
    n = x.shape[0]
    nfft = sfft.next_fast_len(n, real=True)
    spec = sfft.rfft(x.astype(np.float32, copy=False), nfft)
    i0 = max(int(np.floor(f_lo * nfft / sr)), 0)
    i1 = min(int(np.ceil(f_hi * nfft / sr)) + 1, spec.shape[0])
    band = spec[i0:i1]
    return 2.0 * float(np.sum(band.real.astype(np.float64) ** 2 + band.imag.astype(np.float64) ** 2)) / (n * nfft)


def room_response(sr: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """An impulse response of a reverberant place: the direct path, then exponentially decaying
    noise (-60 dB after ``rt60_s``), darker as it decays (foliage absorbs high frequencies)."""
    n = max(int(rt60_s * sr), 16)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    tail = rng.standard_normal(n).astype(np.float32) * np.exp(np.float32(-6.9 / rt60_s) * t)
    tail = signal.lfilter([0.35], [1.0, -0.65], tail).astype(np.float32)
    tail *= np.float32(10.0 ** (rng.uniform(-8.0, 0.0) / 20.0) / max(float(np.sqrt(np.sum(tail**2))), 1e-12))
    tail[0] += 1.0
    return tail


@lru_cache(maxsize=16)
def _decoded(path: str, sr: int) -> np.ndarray:
    """A background file at ``sr``, decoded once per process: many recordings draw on few files."""
    from dawnchorus.data.audio import load_audio

    wave = load_audio(path, sample_rate_hz=sr)
    wave.setflags(write=False)
    return wave


def real_background(n: int, sr: int, rng: np.random.Generator, *, files: tuple[str, ...], bed: np.ndarray,
                    level_db_range: tuple[float, float]) -> np.ndarray:
    """A stretch of a real soundscape (looped when shorter), at a level relative to ``bed``'s power."""
    wave = _decoded(files[int(rng.integers(len(files)))], sr)
    if wave.shape[0] < sr // 10 or not np.any(wave):
        return np.zeros(n, dtype=np.float32)
    start = int(rng.integers(wave.shape[0]))
    wave = np.resize(np.roll(wave, -start), n).astype(np.float32)
    wave -= wave.mean()
    ratio = np.sqrt(np.mean(bed.astype(np.float64) ** 2) / max(float(np.mean(wave.astype(np.float64) ** 2)), 1e-30))
    return wave * np.float32(ratio * 10.0 ** (rng.uniform(*level_db_range) / 20.0))


def mix_recording(bed: np.ndarray, sr: int, events: list, rng: np.random.Generator, *,
                  rt60_s: float | None = None) -> np.ndarray:
    """Add every event (calls and distractors) to a copy of ``bed`` at its SNR; returns int16 audio.

    Each event needs ``syllables``, ``onset`` (s), ``f_min``, ``f_max``, ``snr_db``. With
    ``rt60_s`` every event is heard through one room response; its SNR is that of the direct sound.
    """
    mix = bed.copy()
    n = mix.shape[0]
    response = None if rt60_s is None else room_response(sr, rt60_s, rng)
    for ev in events:
        wave = render(ev.syllables, sr, rng)
        i0 = int(round(ev.onset * sr))
        m = min(wave.shape[0], n - i0)
        if m <= 8:
            continue
        wave = wave[:m]
        p_bg = band_power(bed[i0 : i0 + m], sr, ev.f_min, ev.f_max)
        p_call = band_power(wave, sr, ev.f_min, ev.f_max)
        gain = np.sqrt(p_bg / max(p_call, 1e-30) * 10.0 ** (ev.snr_db / 10.0))
        if response is not None:
            wave = signal.fftconvolve(wave, response)[: n - i0].astype(np.float32)
            m = wave.shape[0]
        mix[i0 : i0 + m] += np.float32(gain) * wave
    level = 10.0 ** (rng.uniform(-40.0, -26.0) / 20.0)
    rms = float(np.sqrt(np.mean(np.square(mix, dtype=np.float32), dtype=np.float64)))
    gain = level / max(rms, 1e-20)
    peak = float(np.max(np.abs(mix))) * gain
    if peak > 0.95:
        gain *= 0.95 / peak
    return np.clip(np.round(mix * np.float32(gain * 32767.0)), -32768, 32767).astype(np.int16)
