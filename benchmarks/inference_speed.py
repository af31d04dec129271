"""Inference speed on this machine: recordings/s and real-time factor, split by stage.

Stages are timed separately on the same recordings: decode (FLAC -> float32 at the native
rate), resample (to the preset's rate), spectrogram (front end on all windows) and model
(backbone + head on the front end's output), plus the end-to-end ``predict`` path. The model
is randomly initialised: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import stamp, standard_corpus  # noqa: E402

from dawnchorus.config import load_preset  # noqa: E402
from dawnchorus.data import find_audio_files, resample  # noqa: E402
from dawnchorus.data.audio import n_samples  # noqa: E402
from dawnchorus.infer import _windows  # noqa: E402
from dawnchorus.models import build_model, resolve_device  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--recordings", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    config = load_preset(args.preset)
    device = resolve_device(args.device)
    paths = list(find_audio_files(standard_corpus() / "test").values())[: args.recordings]
    model = build_model(features=config.features, model=config.model, n_classes=24).to(device).eval()
    rate = config.features.sample_rate_hz
    window, hop = n_samples(config.infer.window_s, rate), n_samples(config.infer.hop_s, rate)
    times = dict(decode=0.0, resample=0.0, spectrogram=0.0, model=0.0)
    audio_s = 0.0
    with torch.no_grad():
        for path in paths:
            started = time.perf_counter()
            raw, native = sf.read(str(path), dtype="float32")
            times["decode"] += time.perf_counter() - started
            audio_s += raw.shape[0] / native
            started = time.perf_counter()
            wave = resample(raw, from_hz=native, to_hz=rate)
            times["resample"] += time.perf_counter() - started
            _, windows = _windows(wave, window=window, hop=hop)
            for first in range(0, len(windows), config.infer.batch_size):
                batch = torch.from_numpy(windows[first : first + config.infer.batch_size]).to(device)
                started = time.perf_counter()
                image = model.frontend(batch)
                _sync(device)
                times["spectrogram"] += time.perf_counter() - started
                started = time.perf_counter()
                model.head(model.backbone.forward_features(image))
                _sync(device)
                times["model"] += time.perf_counter() - started
    total = sum(times.values())
    split = ", ".join(f"{k} {v / total:.0%}" for k, v in times.items())
    print(f"{args.preset} on {device}: {len(paths) / total:.2f} recordings/s, real-time factor {total / audio_s:.4f} "
          f"({audio_s / total:.0f}x real time); window {config.infer.window_s} s hop {config.infer.hop_s} s; split: {split} "
          f"({stamp()})")


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    np.random.seed(0)
    main()
