"""Training several folds and seeds at once: one after another on this machine, or each fold
as a Ray task on a cluster (``--engine ray``).

A seed sweep writes one run per seed (``OUT/seed{n}``, each a complete run that ``predict
--run`` reads, and that ensembles by repeating ``--run``). On Ray, every fold of every seed is
a task with its own CPUs (and GPUs): the driver prepares each run (config, folds, species)
exactly as ``train`` does, the tasks train the folds into the same folders, and the driver
writes the run-level files once the folds are done. A fold is the unit of resumption, as
locally: a task that dies is retried, and continues from the fold's last resume point.
Workers read the dataset and write the run on storage every node sees at the same path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .config import RunConfig, with_overrides
from .errors import InputError
from .train import finish_run, prepare_run, selected_folds, train, train_fold

TASK_RETRIES = 3  # a fold task lost with its node is started again, and resumes


@dataclass(frozen=True)
class RayTrainOptions:
    """The cluster to join (None: a private Ray on this machine) and what each fold task reserves."""

    address: str | None = None
    cpus_per_fold: int = 1
    gpus_per_fold: float = 0.0

    def __post_init__(self):
        if self.cpus_per_fold < 1 or self.gpus_per_fold < 0:
            raise InputError(f"Ray options: a fold needs at least 1 CPU and 0 or more GPUs; got {self.cpus_per_fold} "
                             f"CPUs and {self.gpus_per_fold} GPUs")


def seed_runs(*, out_dir: str | Path, config: RunConfig, seeds: Sequence[int] | None) -> list[tuple[Path, RunConfig]]:
    """The runs of a sweep: ``out_dir`` itself without seeds, else ``out_dir/seed{n}`` with ``train.seed=n``."""
    out_dir = Path(out_dir)
    if not seeds:
        return [(out_dir, config)]
    if len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds {','.join(map(str, seeds))}: a seed is repeated; each seed is one run")
    return [(out_dir / f"seed{seed}", with_overrides(config, [f"train.seed={seed}"])) for seed in seeds]


def train_sweep(*, data_dir: str | Path, runs: Sequence[tuple[Path, RunConfig]], resume: bool = False,
                ray: RayTrainOptions | None = None, progress: bool = False) -> list[Path]:
    """Train each ``(run_dir, config)``: here (``ray`` None) or with every fold a Ray task."""
    if len(runs) > 1:  # --resume continues the seeds begun and starts the others
        runs = [(run_dir, config, resume and (Path(run_dir) / "config.yaml").is_file()) for run_dir, config in runs]
    else:
        runs = [(run_dir, config, resume) for run_dir, config in runs]
    if ray is None:
        return [train(data_dir=data_dir, out_dir=run_dir, config=config, resume=run_resume, progress=progress)
                for run_dir, config, run_resume in runs]
    return _train_on_ray(data_dir=Path(data_dir).resolve(), runs=runs, options=ray, progress=progress)


def _train_on_ray(*, data_dir: Path, runs, options: RayTrainOptions, progress: bool) -> list[Path]:
    from .cluster import connect, import_ray

    prepared = []
    for run_dir, config, resume in runs:  # every run checked and written before any task starts
        if config.pseudo.rounds > 0:
            raise InputError("pseudo-label rounds are not run as Ray tasks; train with pseudo.rounds=0 on Ray, then "
                             "run 'dawnchorus pseudo --run RUN' on one machine")
        config, dataset, _, _ = prepare_run(data_dir=data_dir, out_dir=run_dir, config=config, resume=resume)
        prepared.append((Path(run_dir).resolve(), config, dataset))
    ray = import_ray()
    connect(address=options.address)
    task = ray.remote(_fold_task).options(num_cpus=options.cpus_per_fold, num_gpus=options.gpus_per_fold,
                                          max_retries=TASK_RETRIES, retry_exceptions=False)
    pending = {task.remote(data_dir=str(data_dir), run_dir=str(run_dir), fold=fold, threads=options.cpus_per_fold):
               (run_dir, fold) for run_dir, config, _ in prepared for fold in selected_folds(config)}
    failures = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        run_dir, fold = pending.pop(done[0])
        try:
            ray.get(done[0])
            if progress:
                print(f"{run_dir.name} fold {fold}: trained", flush=True)
        except ray.exceptions.RayError as exc:
            failures.append(f"{run_dir} fold {fold}: {_cause(exc)}")
    if failures:
        raise InputError("some folds did not finish (finished folds are kept; rerun with --resume):\n  " +
                         "\n  ".join(failures))
    for run_dir, config, dataset in prepared:
        finish_run(out_dir=run_dir, config=config, dataset=dataset)
    return [run_dir for run_dir, _, _ in prepared]


def _fold_task(*, data_dir: str, run_dir: str, fold: int, threads: int) -> None:
    """One fold, on a Ray worker: the run as the driver prepared it, read back from its folder."""
    import torch

    from .config import load_config

    torch.set_num_threads(max(1, threads))
    saved = load_config(Path(run_dir) / "config.yaml")
    config, dataset, layout, folds = prepare_run(data_dir=data_dir, out_dir=run_dir, config=saved, resume=True, write=False)
    train_fold(config=config, dataset=dataset, layout=layout, folds=folds, fold=fold, out_dir=Path(run_dir))


def _cause(exc: BaseException) -> str:
    """What went wrong in a task, without Ray's traceback around it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, InputError):
        return str(cause)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return f"{type(exc).__name__}: {exc}"

