"""Data-parallel training across processes, started by ``torchrun``.

``torchrun --nproc-per-node N -m dawnchorus.cli train ...`` starts N copies of one command.
Each process (a *rank*) holds a copy of the model, trains on its own slice of every batch and
averages gradients with the others (``DistributedDataParallel``), so N GPUs train one fold at
N times the crops per second with the same global batch. Rank 0 alone validates, writes the
run's files and predicts out of fold; the others wait for it at each checkpoint.

Backends: NCCL on GPUs (one GPU per rank, ``LOCAL_RANK``), gloo on CPUs (tested in the suite).
BatchNorm statistics are synchronised across GPUs (``SyncBatchNorm``); torch has no CPU
version, so on CPUs each rank normalises with its own slice's statistics and rank 0's running
averages are kept.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import torch

from .errors import InputError

T = TypeVar("T")
_TIMEOUT = datetime.timedelta(minutes=60)  # rank 0 validates and predicts out of fold while the others wait


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks_from_env(environ=os.environ) -> Ranks:
    """The ranks torchrun describes in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; one process without them."""
    values = {}
    for name, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        text = environ.get(name, default)
        try:
            values[name] = int(text)
        except ValueError:
            raise InputError(f"environment variable {name}={text!r} is not a whole number; torchrun sets it, "
                             "so unset it when not running under torchrun") from None
    ranks = Ranks(rank=values["RANK"], world=values["WORLD_SIZE"], local_rank=values["LOCAL_RANK"])
    if ranks.world < 1 or not 0 <= ranks.rank < ranks.world or ranks.local_rank < 0:
        raise InputError(f"RANK={ranks.rank}, LOCAL_RANK={ranks.local_rank} and WORLD_SIZE={ranks.world} do not "
                         "describe a process group; start data-parallel training with torchrun")
    return ranks


def start(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group; the device this rank trains on (its own GPU on CUDA)."""
    if not ranks.active:
        return device
    import torch.distributed as dist

    if device.type == "cuda":
        if torch.cuda.device_count() <= ranks.local_rank:
            raise InputError(f"rank {ranks.rank} needs GPU {ranks.local_rank}, but {torch.cuda.device_count()} are "
                             "visible; start no more processes per node than it has GPUs")
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=_TIMEOUT)
    return device


def stop(ranks: Ranks) -> None:
    if ranks.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def on_main(ranks: Ranks, work: Callable[[], T]) -> T | None:
    """Run ``work`` on rank 0 only; an InputError there is raised on every rank, so none waits
    for a partner that has stopped."""
    if not ranks.active:
        return work()
    import torch.distributed as dist

    result, message = None, [None]
    if ranks.is_main:
        try:
            result = work()
        except InputError as exc:
            message = [str(exc)]
    dist.broadcast_object_list(message, src=0)
    if message[0] is not None:
        raise InputError(message[0])
    return result


def barrier(ranks: Ranks) -> None:
    if ranks.active:
        import torch.distributed as dist

        dist.barrier()


def gather(ranks: Ranks, value: Any) -> list:
    """``value`` from every rank, in rank order."""
    if not ranks.active:
        return [value]
    import torch.distributed as dist

    values = [None] * ranks.world
    dist.all_gather_object(values, value)
    return values


def mean(ranks: Ranks, value: float) -> float:
    """The mean of ``value`` over the ranks."""
    return float(sum(gather(ranks, float(value))) / ranks.world)


def check_in_step(ranks: Ranks, model: torch.nn.Module) -> None:
    """Every rank must hold the same weights (the same gradients, the same optimiser steps); a
    rank that drifted (a different config, a different library version) is a fault to stop on."""
    if not ranks.active:
        return
    digest = float(sum(p.detach().double().sum() for p in model.parameters()))
    digests = gather(ranks, digest)
    if len(set(digests)) > 1:
        raise RuntimeError(f"data-parallel ranks hold different weights (digests {digests}); check that every "
                           "process runs the same dawnchorus, torch and config")


def batch_share(ranks: Ranks, batch_size: int) -> int:
    """The crops each rank trains on per step."""
    if batch_size % ranks.world:
        raise InputError(f"train.batch_size={batch_size} cannot be split evenly over {ranks.world} processes; "
                         f"choose a multiple of {ranks.world}")
    return batch_size // ranks.world


def batch_slice(ranks: Ranks, items: Sequence[T], *, batch_size: int) -> list[T]:
    """This rank's share of ``items`` taken ``batch_size`` at a time: a contiguous
    ``batch_size / world`` slice of each global batch, so the ranks together see exactly the
    batches one process would."""
    share = batch_share(ranks, batch_size)
    mine = []
    for start in range(0, len(items), batch_size):
        mine.extend(items[start + ranks.rank * share: start + (ranks.rank + 1) * share])
    return mine


def wrap(ranks: Ranks, model: torch.nn.Module) -> torch.nn.Module:
    """The module a training step calls: ``model`` itself, or its data-parallel wrapper (which
    shares ``model``'s parameters, so ``model`` is what is saved and validated)."""
    if not ranks.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # heads may compute an output the configured loss does not use (a frame branch without a frame loss)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)
