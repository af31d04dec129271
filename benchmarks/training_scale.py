"""Training beyond one process on this machine: the same folds trained one after another here,
as Ray tasks, and data-parallel under torchrun, wall time of each measured in one run.

    python benchmarks/training_scale.py            # cpu-small, 2 folds, on `synth --n-train 40 --seed 3`

- here: ``dawnchorus train`` (both folds in turn, torch on every core);
- ray: ``train --engine ray --ray-cpus-per-fold 1`` (each fold a task on one core, at once);
- torchrun: ``torchrun --nproc-per-node 2 -m dawnchorus.cli train`` (each fold split over two
  processes with one thread each).
Each is a fresh process, start-up included. The crops per epoch are kept small so the
benchmark finishes in minutes; the ratios are what it reports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BENCH_DATA, stamp  # noqa: E402

CLI = str(Path(sys.executable).with_name("dawnchorus"))
SETS = ["train.epochs=2", "train.folds=2", "sampling.crops_per_epoch=1024", "train.batch_size=16", "train.device=cpu"]


def main() -> None:
    corpus = BENCH_DATA / "synth_40_10_seed3"
    if not (corpus / "train_tp.csv").is_file():
        subprocess.run([CLI, "synth", "--out", str(corpus), "--n-train", "40", "--n-test", "10", "--seed", "3"], check=True)
    out = BENCH_DATA / "training_scale"
    shutil.rmtree(out, ignore_errors=True)
    sets = [arg for item in SETS for arg in ("--set", item)]
    base = ["train", "--data", str(corpus), "--preset", "cpu-small", *sets]
    ways = {
        "here": [CLI, *base, "--out", str(out / "here")],
        "ray": [CLI, *base, "--out", str(out / "ray"), "--engine", "ray", "--ray-cpus-per-fold", "1"],
        "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                     "dawnchorus.cli", *base, "--out", str(out / "torchrun")],
    }
    wall = {}
    for name, command in ways.items():
        env = {**os.environ, **({"OMP_NUM_THREADS": "1"} if name == "torchrun" else {})}
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        wall[name] = round(time.perf_counter() - started, 1)
    print(json.dumps({"wall_s": wall, "over_here": {k: round(v / wall["here"], 2) for k, v in wall.items()}}, indent=1))
    print(f"python benchmarks/training_scale.py; {stamp()}")


if __name__ == "__main__":
    main()
