"""Ray's overhead on one machine: the same archive job with ``--engine local`` and ``--engine ray``.

    python benchmarks/ray_engine.py --files 10000   # tiny generated WAVs; untrained cpu-small

Both runs are fresh CLI processes (start-up, listing and outputs included) on the same files;
the outputs are checked to be equal. Audio is generated into ``bench_data/load`` (ignored by git).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from archive_engine import untrained_run  # noqa: E402
from common import BENCH_DATA, stamp  # noqa: E402
from service_load import CLI, tiny_archive  # noqa: E402


def timed_job(run: Path, archive: Path, out: Path, *extra: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([CLI, "predict", "--run", str(run), "--audio", str(archive), "--out", str(out), "--format", "submission",
                    "--device", "cpu", *extra], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10000)
    args = parser.parse_args()
    archive = tiny_archive(BENCH_DATA / "load" / f"tiny_{args.files}", files=args.files)
    run = untrained_run(BENCH_DATA / "load" / "run")
    jobs = BENCH_DATA / "load" / "ray_vs_local"
    local_s = timed_job(run, archive, jobs / "local")
    ray_s = timed_job(run, archive, jobs / "ray", "--engine", "ray")
    local, on_ray = (pd.read_csv(jobs / name / "submission.csv").set_index("recording_id").sort_index() for name in ("local", "ray"))
    # batches hold other windows on each engine: equal up to float rounding (the CSV keeps 6 decimals)
    difference = float(np.abs(local.to_numpy() - on_ray.loc[local.index].to_numpy()).max())
    print(json.dumps({"files": args.files, "local_s": round(local_s, 1), "ray_s": round(ray_s, 1),
                      "ray_over_local": round(ray_s / local_s, 3), "max_score_difference": difference}, indent=1))
    print(f"python benchmarks/ray_engine.py --files {args.files}; {stamp()}")


if __name__ == "__main__":
    main()
