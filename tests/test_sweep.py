"""Seed sweeps and folds as Ray tasks (a local Ray with 2 CPUs): the same runs as training here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from dawnchorus.cli import app
from dawnchorus.config import load_config
from dawnchorus.errors import InputError
from dawnchorus.sweep import RayTrainOptions, seed_runs, train_sweep

from test_train_infer import FAST, corpus, fast_config  # noqa: F401  (corpus: a fixture)

ONE_EPOCH = ["train.epochs=1", "train.average_best=1"]


def weights(run_dir: Path, fold: int) -> dict:
    return load_file(str(run_dir / f"fold{fold}" / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-4, atol=1e-5, err_msg=key)


def test_a_seed_sweep_writes_one_run_per_seed_and_resumes_the_unfinished(corpus, tmp_path):
    config = fast_config(*ONE_EPOCH)
    runs = seed_runs(out_dir=tmp_path / "sweep", config=config, seeds=[3, 4])
    assert [path.name for path, _ in runs] == ["seed3", "seed4"]
    first = train_sweep(data_dir=corpus, runs=runs[:1])
    assert load_config(first[0] / "config.yaml").train.seed == 3
    stamp = (first[0] / "fold0" / "model.safetensors").stat().st_mtime_ns
    both = train_sweep(data_dir=corpus, runs=runs, resume=True)  # seed 3 is kept, seed 4 starts
    assert (both[0] / "fold0" / "model.safetensors").stat().st_mtime_ns == stamp
    assert load_config(both[1] / "config.yaml").train.seed == 4
    a, b = weights(both[0], 0), weights(both[1], 0)
    assert any(not np.allclose(a[k].numpy(), b[k].numpy()) for k in a)  # another seed, another model
    with pytest.raises(InputError, match="repeated"):
        seed_runs(out_dir=tmp_path / "x", config=config, seeds=[1, 1])


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is the optional extra dawnchorus[ray] (installed with [dev])")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_folds_as_ray_tasks_train_the_models_training_here_does(corpus, tmp_path, local_ray):
    config = fast_config(*ONE_EPOCH, "train.train_folds=null")  # both folds, each a task
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each task has: the thread count changes float rounding, which training amplifies
    try:
        here = train_sweep(data_dir=corpus, runs=seed_runs(out_dir=tmp_path / "here", config=config, seeds=None))[0]
    finally:
        torch.set_num_threads(threads)
    on_ray = train_sweep(data_dir=corpus, runs=seed_runs(out_dir=tmp_path / "ray", config=config, seeds=None),
                         ray=RayTrainOptions(cpus_per_fold=1))[0]
    for fold in (0, 1):
        assert_same_weights(weights(here, fold), weights(on_ray, fold))
    oof_here, oof_ray = pd.read_csv(here / "oof.csv"), pd.read_csv(on_ray / "oof.csv")
    pd.testing.assert_frame_equal(oof_here, oof_ray, rtol=1e-4, atol=1e-5)
    assert (on_ray / "history.csv").is_file() and (on_ray / "calibration.json").is_file()


def test_cli_sweeps_seeds_on_ray_and_refuses_what_it_cannot_run(corpus, tmp_path, local_ray):
    runner = CliRunner()
    sets = [arg for item in FAST + ONE_EPOCH for arg in ("--set", item)]
    base = ["train", "--data", str(corpus), "--preset", "cpu-small", *sets]
    result = runner.invoke(app, base + ["--out", str(tmp_path / "sweep"), "--seeds", "5,6", "--engine", "ray"])
    assert result.exit_code == 0, result.output
    for seed in (5, 6):
        assert f"trained: {tmp_path / 'sweep' / f'seed{seed}'}" in result.output
        assert (tmp_path / "sweep" / f"seed{seed}" / "fold0" / "model.safetensors").is_file()
    refusals = {
        ("--seeds", "a,b"): "whole numbers",
        ("--ray-cpus-per-fold", "2"): "need --engine ray",
        ("--engine", "spark"): "local or ray",
        ("--engine", "ray", "--set", "pseudo.rounds=1"): "pseudo-label rounds are not run as Ray tasks",
    }
    for extra, message in refusals.items():
        result = runner.invoke(app, base + ["--out", str(tmp_path / "refused"), *extra])
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
