"""Training throughput (crops/s) of a preset: forward, masked loss, backward and step on
random crops of the preset's length, with the preset's augmentation, no data loading."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import stamp  # noqa: E402

from dawnchorus.augment import SpecAugment, augment_waveforms, mixup  # noqa: E402
from dawnchorus.config import load_preset  # noqa: E402
from dawnchorus.data.audio import n_samples  # noqa: E402
from dawnchorus.losses import masked_bce  # noqa: E402
from dawnchorus.models import build_model, resolve_device  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    config = load_preset(args.preset)
    device = resolve_device(args.device)
    model = build_model(features=config.features, model=config.model, n_classes=26).to(device).train()
    model.spec_augment = SpecAugment(config.augment)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = config.train.batch_size
    waves = 0.1 * torch.randn(batch, n_samples(config.sampling.crop_s, config.features.sample_rate_hz), device=device)
    targets = torch.full((batch, 26), float("nan"), device=device)
    targets[:, 0] = 1.0
    generator = torch.Generator(device=device).manual_seed(0)
    use_amp = config.train.amp and device.type == "cuda"
    for step in range(args.steps + 2):
        if step == 2:  # first steps warm up allocators and kernels
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        x = augment_waveforms(waves, config.augment, generator=generator)
        x, y = mixup(x, targets, config.augment, generator=generator)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(x)["clip"]
        loss = masked_bce(logits.float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    print(f"{args.preset} on {device}: {args.steps * batch / seconds:.1f} crops/s "
          f"({config.model.backbone}, {config.sampling.crop_s} s crops, batch {batch}) ({stamp()})")


if __name__ == "__main__":
    main()
