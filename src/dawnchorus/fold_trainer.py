"""One fold of a run: crops sampled from the boxes, the masked loss, validation on the held-out
recordings' boxes, the best epochs' weights averaged into ``model.safetensors``, and
``resume.pt`` every few steps, so an interrupted fold continues to identical weights
(per-rank random state under torchrun)."""

from __future__ import annotations

import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch.utils.data import DataLoader

from . import distributed
from .atomic import atomic_write_bytes, atomic_write_text, atomic_write_with
from .augment import BackgroundBank, SpecAugment, augment_waveforms, mix_backgrounds, mixup
from .config import RunConfig
from .data.annotations import Box
from .data.cache import AudioCache
from .data.crops import ClassIndex, CropDataset, CropSampler, SoftLabels
from .data.dataset import RfcxDataset
from .distributed import Ranks
from .errors import InputError
from .infer import LoadedRun, predict_windows
from .scores import aggregate_windows
from .losses import loss_from_config, masked_bce
from .metrics import masked_auc
from .models import ClassLayout, build_model, resolve_device

try:
    from tqdm.auto import tqdm
except ImportError:
    tqdm = None

_STOP_AFTER_STEPS = "DAWNCHORUS_STOP_AFTER_STEPS"  # tests simulate a crash (kill -9) with this


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write_with(path, lambda tmp: frame.to_csv(tmp, index=False))


def _save_weights(model, path: Path) -> None:
    atomic_write_bytes(path, safetensors_bytes({k: v.contiguous() for k, v in model.state_dict().items()}))


def _read_resume(path: Path, *, device: torch.device) -> dict:
    """A fold's resume point, read with ``weights_only=True``: tensors, numbers, strings and
    containers only, so a doctored file cannot run code; anything else is refused."""
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError or EOFError by cause
        raise InputError(f"{path}: not a resume point this program wrote, or damaged ({type(exc).__name__}); it was not "
                         "run. Delete it to restart this fold from its last finished epoch") from None
    expected = {"model", "optimizer", "scheduler", "generator", "torch_rng", "state"}
    if not isinstance(saved, dict) or not expected <= set(saved):
        raise InputError(f"{path}: not a dawnchorus resume point (needs {', '.join(sorted(expected))}); delete it to restart this fold")
    saved["state"]["scores"] = {int(k): v for k, v in saved["state"].get("scores", {}).items()}
    return saved


def _private_generator() -> torch.Generator:
    """DataLoaders draw a seed from the global RNG unless given their own generator; that
    extra draw on every (re)created loader would make a resumed run diverge from an
    uninterrupted one."""
    return torch.Generator().manual_seed(0)


def _cosine_with_warmup(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class FoldTrainer:
    """One fold: sample crops, train with masked loss, validate on held-out boxes, keep the best."""

    def __init__(self, *, config: RunConfig, dataset: RfcxDataset, layout: ClassLayout, fold: int, held_out: set[str],
                 fold_dir: Path, progress: bool, soft_labels: SoftLabels | None = None,
                 soft_audio_paths: dict[str, Path] | None = None, init_weights: Path | None = None,
                 ranks: Ranks = Ranks()):
        self.config, self.dataset, self.layout, self.fold = config, dataset, layout, fold
        self.fold_dir, self.progress, self.init_weights, self.ranks = fold_dir, progress, init_weights, ranks
        self.device = distributed.start(ranks, resolve_device(config.train.device))
        train_boxes = [b for b in dataset.boxes if b.recording_id not in held_out]
        self.val_boxes: list[Box] = [b for b in dataset.boxes if b.recording_id in held_out]
        self.held_out = sorted(held_out)
        durations = {r: i.duration_s for r, i in dataset.train.items()}
        classes = ClassIndex(layout.classes)
        sampling = config.sampling
        self.label_frames = round(sampling.crop_s * sampling.label_frames_per_s) if config.loss.frame_weight > 0 else 0
        if soft_labels is not None:  # never learn from the teacher's view of held-out recordings
            soft_labels = SoftLabels({r: v for r, v in soft_labels.scores.items() if r not in held_out},
                                     step_s=soft_labels.step_s)
        self.sampler = CropSampler(boxes=train_boxes, durations_s=durations, classes=classes, crop_s=sampling.crop_s,
                                   min_inside=sampling.min_box_inside, tp_fraction=sampling.tp_fraction,
                                   label_mode=config.loss.label_mode, label_frames=self.label_frames,
                                   soft_labels=soft_labels, pseudo_prob=config.pseudo.prob,
                                   pseudo_weight=config.pseudo.weight)
        # Validation always scores known labels only, whatever the training label mode.
        self.val_sampler = CropSampler(boxes=dataset.boxes, durations_s=durations, classes=classes, crop_s=sampling.crop_s,
                                       min_inside=sampling.min_box_inside, tp_fraction=0.5) if self.val_boxes else None
        cache_dir = Path(config.train.cache_dir) if config.train.cache_dir else fold_dir.parent / "audio_cache"
        self.cache = AudioCache(cache_dir, sample_rate_hz=config.features.sample_rate_hz)
        self.paths = {r: i.path for r, i in dataset.train.items()}
        self.sample_paths = {**(soft_audio_paths or {}), **self.paths}
        self.loss_fn = loss_from_config(config.loss)
        self.steps_per_epoch = max(1, math.ceil(sampling.crops_per_epoch / config.train.batch_size))
        self.backgrounds = (BackgroundBank(config.augment, sample_rate_hz=config.features.sample_rate_hz)
                            if config.augment.background_dir is not None else None)

    def _build(self):
        torch.manual_seed(self.config.train.seed * 1000 + self.fold)
        model = build_model(features=self.config.features, model=self.config.model, n_classes=len(self.layout)).to(self.device)
        if self.init_weights is not None:
            if not self.init_weights.is_file():
                raise InputError(f"{self.init_weights}: the teacher has no weights for fold {self.fold}")
            model.load_state_dict(load_file(str(self.init_weights)))
        model.spec_augment = SpecAugment(self.config.augment)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.config.train.lr, weight_decay=self.config.train.weight_decay)
        total = self.config.train.epochs * self.steps_per_epoch
        warmup = int(self.config.train.warmup_epochs * self.steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine_with_warmup(total, warmup))
        # each rank augments its own slice of the batch with its own draws
        seed = self.config.train.seed * 7919 + self.fold + 1_000_003 * self.ranks.rank
        generator = torch.Generator(device=self.device).manual_seed(seed)
        self.step_model = distributed.wrap(self.ranks, model)
        return model, optimizer, scheduler, generator

    def run(self) -> None:
        if (self.fold_dir / "model.safetensors").is_file():
            return  # finished earlier
        self.fold_dir.mkdir(parents=True, exist_ok=True)
        distributed.barrier(self.ranks)  # every rank has seen whether the fold was finished before anyone writes
        if self.ranks.is_main:
            for leftover in self.fold_dir.glob(".*.tmp"):  # a write a kill interrupted: never read, so just remove it
                leftover.unlink(missing_ok=True)
        model, optimizer, scheduler, generator = self._build()
        state = {"epoch": 0, "step": 0, "history": [], "scores": {}}
        resume_path = self.fold_dir / "resume.pt"
        if resume_path.is_file():
            saved = _read_resume(resume_path, device=self.device)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            generator_state, torch_rng = saved["generator"], saved["torch_rng"]
            per_rank = saved.get("ranks", [])
            if self.ranks.active and len(per_rank) == self.ranks.world:
                generator_state, torch_rng = per_rank[self.ranks.rank]["generator"], per_rank[self.ranks.rank]["torch_rng"]
            generator.set_state(generator_state.cpu() if self.device.type == "cpu" else generator_state)
            torch.set_rng_state(torch_rng.cpu())
            state = saved["state"]
        for epoch in range(state["epoch"], self.config.train.epochs):
            train_loss, crops_per_s = self._epoch(epoch, state, model, optimizer, scheduler, generator, resume_path)
            distributed.check_in_step(self.ranks, model)
            if not self.ranks.is_main:  # rank 0 validates and writes; the others meet it at the next checkpoint
                state.update(epoch=epoch + 1, step=0)
                self._save_resume(resume_path, model, optimizer, scheduler, generator, state)
                continue
            row = {"fold": self.fold, "epoch": epoch, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0],
                   "crops_per_s": crops_per_s, **self._validate(model)}
            state["history"].append(row)
            write_csv(pd.DataFrame(state["history"]), self.fold_dir / "history.csv")
            atomic_write_text(self.fold_dir / "history.json", json.dumps(state["history"], indent=1))
            _save_weights(model, self.fold_dir / f"epoch_{epoch:03d}.safetensors")
            state["scores"][epoch] = row.get("val_auc", float(epoch))  # no validation: later epochs rank higher
            dropped = self._keep_best(state)
            state.update(epoch=epoch + 1, step=0)
            self._save_resume(resume_path, model, optimizer, scheduler, generator, state)
            for path in dropped:  # only once the resume point no longer names them
                path.unlink(missing_ok=True)
            if self.progress:
                shown = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float))
                print(f"fold {self.fold} epoch {epoch + 1}/{self.config.train.epochs}: {shown}", flush=True)
        if self.ranks.is_main:
            self._finish(model, state)
        distributed.barrier(self.ranks)

    def _epoch(self, epoch, state, model, optimizer, scheduler, generator, resume_path):
        config = self.config
        specs = self.sampler.sample(self.steps_per_epoch * config.train.batch_size,
                                    seed=config.train.seed * 1_000_003 + self.fold * 10_007 + epoch)
        start_step = state["step"]
        share = distributed.batch_share(self.ranks, config.train.batch_size)
        mine = distributed.batch_slice(self.ranks, specs, batch_size=config.train.batch_size)
        dataset = CropDataset(mine[start_step * share:], paths=self.sample_paths, cache=self.cache, crop_s=config.sampling.crop_s)
        loader = DataLoader(dataset, batch_size=share, shuffle=False, num_workers=config.train.num_workers,
                            generator=_private_generator())
        bar = tqdm(loader, total=len(loader), desc=f"fold {self.fold} epoch {epoch + 1}", leave=False) if self.progress and tqdm else loader
        model.train()
        use_amp = config.train.amp and self.device.type == "cuda"
        losses, seen, started = [], 0, time.perf_counter()
        stop_after = int(os.environ.get(_STOP_AFTER_STEPS, "0"))
        for batch in bar:
            batch = {k: v.to(self.device) for k, v in batch.items()}
            waves, frames = augment_waveforms(batch.pop("wave"), config.augment, generator=generator,
                                              frames={k: batch.pop(k) for k in ("frame", "frame_weight")})
            batch.update(frames)
            if self.backgrounds is not None:
                waves, mixed = mix_backgrounds(waves, {k: batch[k] for k in ("clip", "frame") if k in batch}, self.backgrounds,
                                               config.augment, generator=generator)
                batch.update(mixed)
            waves, targets, batch = mixup(waves, batch.pop("clip"), config.augment, generator=generator, extra=batch)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                outputs = self.step_model(waves)
            loss = self.batch_loss(outputs, targets, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            seen += waves.shape[0] * self.ranks.world
            state["step"] += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if state["step"] % config.train.checkpoint_every_steps == 0:
                self._save_resume(resume_path, model, optimizer, scheduler, generator, state)
            if stop_after and epoch * self.steps_per_epoch + state["step"] >= stop_after:
                self._save_resume(resume_path, model, optimizer, scheduler, generator, state)
                os._exit(137)
        mean_loss = distributed.mean(self.ranks, np.mean(losses) if losses else float("nan"))
        return mean_loss, seen / max(1e-9, time.perf_counter() - started)

    def batch_loss(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Clip loss (on each branch of a multi-branch head) plus, for heads with a frame output,
        the loss on labelled frames."""
        weights = self.config.loss
        branches = outputs["branches"] if "branches" in outputs else outputs["clip"][None]
        clip_loss = sum(self.loss_fn(branch.float(), targets, weight=batch["weight"]) for branch in branches) / len(branches)
        loss = weights.clip_weight * clip_loss
        if self.label_frames and weights.frame_weight > 0:
            if "frame" not in outputs:
                raise InputError(f"loss.frame_weight > 0 needs a head with a frame output (frame, sed, clip_frame), not '{self.config.model.head}'")
            frame_logits = F.interpolate(outputs["frame"].float(), size=self.label_frames, mode="linear", align_corners=False)
            loss = loss + weights.frame_weight * self.loss_fn(frame_logits, batch["frame"], weight=batch["frame_weight"])
        return loss

    @torch.no_grad()
    def _validate(self, model) -> dict:
        if self.val_sampler is None:
            return {}
        specs = self.val_sampler.centred(self.val_boxes)
        loader = DataLoader(CropDataset(specs, paths=self.paths, cache=self.cache, crop_s=self.config.sampling.crop_s),
                            batch_size=self.config.infer.batch_size, shuffle=False, generator=_private_generator())
        model.eval()
        logits, targets = [], []
        for batch in loader:
            logits.append(model(batch["wave"].to(self.device))["clip"].float().cpu())
            targets.append(batch["clip"])
        logits, targets = torch.cat(logits), torch.cat(targets)
        auc, macro = masked_auc(y_true=targets.numpy(), y_score=torch.sigmoid(logits).numpy())
        return {"val_loss": float(masked_bce(logits, targets)), "val_auc": auc, "val_macro_auc": macro}

    def _keep_best(self, state) -> list[Path]:
        """Set the best epochs in ``state``; the checkpoints of the others, to delete."""
        best = sorted(state["scores"], key=lambda e: state["scores"][e], reverse=True)[: self.config.train.average_best]
        state["best"] = best
        return [self.fold_dir / f"epoch_{epoch:03d}.safetensors" for epoch in state["scores"] if epoch not in best]

    def _save_resume(self, path, model, optimizer, scheduler, generator, state) -> None:
        """Rank 0 writes the resume point; data-parallel ranks share the weights and add their random state."""
        rng = {"generator": generator.get_state().cpu(), "torch_rng": torch.get_rng_state()}
        per_rank = distributed.gather(self.ranks, rng)
        if not self.ranks.is_main:
            return
        # plain numbers only, so that the file loads with weights_only=True (no code runs on reading it)
        payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                   **rng, "ranks": per_rank if self.ranks.active else [], "state": json.loads(json.dumps(state, default=float))}
        buffer = io.BytesIO()  # serialised in memory: torch.save hides a full disk in an unreadable RuntimeError
        torch.save(payload, buffer)
        atomic_write_bytes(path, buffer.getvalue())  # a kill leaves the previous resume point intact

    def _finish(self, model, state) -> None:
        """Average the best epochs' weights (checkpoint averaging), save, and predict out-of-fold."""
        files = [self.fold_dir / f"epoch_{e:03d}.safetensors" for e in state["best"]]
        tensors = [load_file(str(f)) for f in files]
        averaged = {k: (sum(t[k].float() for t in tensors) / len(tensors)).to(tensors[0][k].dtype) for k in tensors[0]}
        if self.ranks.active:  # a model without synchronised BatchNorm: rank 0 finishes alone
            model = build_model(features=self.config.features, model=self.config.model, n_classes=len(self.layout)).to(self.device)
            model.spec_augment = SpecAugment(self.config.augment)
        model.load_state_dict(averaged)
        if len(tensors) > 1:
            self._recalibrate_batchnorm(model)
        if self.held_out:
            self._predict_out_of_fold(model)
        _save_weights(model, self.fold_dir / "model.safetensors")  # last: it marks the fold finished
        (self.fold_dir / "resume.pt").unlink(missing_ok=True)

    @torch.no_grad()
    def _recalibrate_batchnorm(self, model) -> None:
        """Averaged weights need fresh BatchNorm statistics; one pass over training crops gives them."""
        augment, model.spec_augment = model.spec_augment, None
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None  # cumulative average over the pass
        specs = self.sampler.sample(min(512, self.config.sampling.crops_per_epoch), seed=12345)
        loader = DataLoader(CropDataset(specs, paths=self.sample_paths, cache=self.cache, crop_s=self.config.sampling.crop_s),
                            batch_size=self.config.train.batch_size, generator=_private_generator())
        for batch in loader:
            model(batch["wave"].to(self.device))
        model.eval()
        model.spec_augment = augment

    def _predict_out_of_fold(self, model) -> None:
        model.eval()
        run = LoadedRun(self.fold_dir.parent, self.config, self.layout, self.dataset.species, [model])
        infer = self.config.infer
        windows = predict_windows(run=run, audio_paths={r: self.paths[r] for r in self.held_out}, window_s=infer.window_s,
                                  hop_s=infer.hop_s, batch_size=infer.batch_size, device=self.device,
                                  frame_step_s=infer.frame_step_s, extra_window_s=infer.extra_window_s,
                                  tta_shifts=infer.tta_shifts)
        atomic_write_with(self.fold_dir / "oof_windows.parquet", lambda tmp: windows.to_parquet(tmp, index=False))
        oof = aggregate_windows(windows, species_columns=self.dataset.species.columns, method=infer.aggregate, top_k=infer.top_k)
        oof.insert(1, "fold", self.fold)
        write_csv(oof, self.fold_dir / "oof.csv")
