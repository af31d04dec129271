"""Data-parallel training under torchrun (gloo on CPU, 2 processes) against one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from dawnchorus.distributed import Ranks, batch_slice, ranks_from_env
from dawnchorus.errors import InputError
from dawnchorus.train import train

from test_train_infer import FAST, corpus, fast_config  # noqa: F401  (corpus: a fixture)

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def test_each_rank_takes_its_share_of_every_batch():
    items = list(range(24))
    shares = [batch_slice(Ranks(rank=r, world=2), items, batch_size=8) for r in (0, 1)]
    assert shares[0][:4] == [0, 1, 2, 3] and shares[1][:4] == [4, 5, 6, 7]
    # batch by batch, the ranks together hold exactly the batch one process would train on
    for step in range(3):
        assert shares[0][4 * step:4 * step + 4] + shares[1][4 * step:4 * step + 4] == items[8 * step:8 * step + 8]
    assert batch_slice(Ranks(), items, batch_size=8) == items
    with pytest.raises(InputError, match="multiple of 3"):
        batch_slice(Ranks(rank=0, world=3), items, batch_size=8)


def test_ranks_come_from_torchruns_environment():
    assert ranks_from_env({}) == Ranks(rank=0, world=1, local_rank=0)
    assert ranks_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}).is_main is False
    with pytest.raises(InputError, match="WORLD_SIZE='two'"):
        ranks_from_env({"WORLD_SIZE": "two"})
    with pytest.raises(InputError, match="do not describe a process group"):
        ranks_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def torchrun_train(corpus: Path, out: Path, sets: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    args = [*TORCHRUN, "-m", "dawnchorus.cli", "train", "--data", str(corpus), "--out", str(out), "--preset", "cpu-small",
            *[arg for item in sets for arg in ("--set", item)]]
    return subprocess.run(args, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_two_processes_train_a_fold_as_one_process_does(corpus, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(data_dir=corpus, out_dir=tmp_path / "single", config=fast_config())
    finally:
        torch.set_num_threads(threads)
    result = torchrun_train(corpus, tmp_path / "ddp", FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained:") == 1  # rank 0 reports; the weights of both ranks were checked equal each epoch
    ddp = tmp_path / "ddp"
    for name in ("config.yaml", "history.csv", "oof.csv", "calibration.json", "fold0/model.safetensors", "fold0/oof_windows.parquet"):
        assert (ddp / name).is_file(), name
    assert not (ddp / "fold0" / "resume.pt").exists()
    a, b = load_file(str(single / "fold0" / "model.safetensors")), load_file(str(ddp / "fold0" / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    # the same global batches, split over two processes: the same losses up to the slices' own
    # BatchNorm statistics and augmentation draws
    losses_single, losses_ddp = pd.read_csv(single / "history.csv"), pd.read_csv(ddp / "history.csv")
    assert len(losses_single) == len(losses_ddp) == 2
    np.testing.assert_allclose(losses_ddp["train_loss"], losses_single["train_loss"], atol=0.1)
    np.testing.assert_allclose(losses_ddp["val_loss"], losses_single["val_loss"], atol=0.05)


def test_a_killed_data_parallel_run_resumes_to_the_same_weights(corpus, tmp_path):
    sets = FAST + ["augment.mixup_prob=0.5"]
    reference = torchrun_train(corpus, tmp_path / "ref", sets)
    assert reference.returncode == 0, reference.stderr[-3000:]
    crashed = torchrun_train(corpus, tmp_path / "crash", sets, env={"DAWNCHORUS_STOP_AFTER_STEPS": "4"})
    assert crashed.returncode != 0 and (tmp_path / "crash" / "fold0" / "resume.pt").is_file()
    args = [*TORCHRUN, "-m", "dawnchorus.cli", "train", "--data", str(corpus), "--out", str(tmp_path / "crash"), "--resume"]
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_file(str(tmp_path / "ref" / "fold0" / "model.safetensors"))
    b = load_file(str(tmp_path / "crash" / "fold0" / "model.safetensors"))
    for key in a:  # each rank's random state and place in the epoch were restored
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


def test_a_batch_the_processes_cannot_share_is_refused_by_every_rank(corpus, tmp_path):
    result = torchrun_train(corpus, tmp_path / "odd", FAST + ["train.batch_size=7"])
    assert result.returncode != 0
    assert "train.batch_size=7 cannot be split evenly over 2 processes" in result.stderr + result.stdout
    assert not (tmp_path / "odd" / "config.yaml").exists()  # refused before anything was written
