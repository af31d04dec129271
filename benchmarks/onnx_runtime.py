"""ONNX Runtime against torch for ``cpu-small`` on this machine, and both against the floor.

    python benchmarks/onnx_runtime.py      # 250 one-minute files of `dawnchorus synth --seed 9`

Measured in one run: the floor (decoding and resampling every file to the model's rate, nothing
else), the scorer alone on the same windows (front end + network), end-to-end
``predict --out sub.csv`` with ``--runtime torch`` and ``--runtime onnx`` (fresh processes,
start-up included), and ``predict --out JOB --runtime onnx`` with ``--workers 1`` and ``2``,
with the time per stage the job reports. The model is randomly initialised; speed does not depend on the weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from archive_engine import ROOT, untrained_run  # noqa: E402
from common import BENCH_DATA, stamp  # noqa: E402

from dawnchorus.data import find_audio_files, load_audio  # noqa: E402
from dawnchorus.infer import CnnScorer, load_run  # noqa: E402
from dawnchorus.onnx_models import OnnxScorer, onnx_for_runs  # noqa: E402

CLI = str(Path(sys.executable).with_name("dawnchorus"))
THREADS = 2


def main() -> None:
    run = untrained_run(ROOT / "run")
    corpus = BENCH_DATA / "synth_2_250_seed9"
    if not (corpus / "test").is_dir():
        subprocess.run([CLI, "synth", "--out", str(corpus), "--n-train", "2", "--n-test", "250", "--seed", "9"], check=True)
    files = list(find_audio_files(corpus / "test").values())
    loaded = load_run(run, device=torch.device("cpu"))
    rate, infer = loaded.config.features.sample_rate_hz, loaded.config.infer
    audio_s = 0.0
    started = time.perf_counter()
    for path in files:
        audio_s += load_audio(path, sample_rate_hz=rate).shape[0] / rate
    floor_s = time.perf_counter() - started

    torch.set_num_threads(THREADS)
    window, hop = int(infer.window_s * rate), int(infer.hop_s * rate)
    samples = load_audio(files[0], sample_rate_hz=rate)
    windows = np.stack([samples[s : s + window] for s in range(0, samples.size - window + 1, hop)] * 4)
    scorers = {"torch": CnnScorer(runs=[loaded], device=torch.device("cpu")),
               "onnx": OnnxScorer(model_path=onnx_for_runs([run]), threads=THREADS)}
    model_only = {}
    for name, scorer in scorers.items():
        scorer.score(windows[:8])  # warm-up
        started = time.perf_counter()
        for first in range(0, len(windows), infer.batch_size):
            scorer.score(windows[first : first + infer.batch_size])
        model_only[name] = len(windows) / (time.perf_counter() - started)

    end_to_end, submissions = {}, {}
    for name in scorers:
        out = ROOT / f"onnx_bench_{name}.csv"
        started = time.perf_counter()
        subprocess.run([CLI, "predict", "--run", str(run), "--audio", str(corpus / "test"), "--out", str(out), "--device", "cpu",
                        "--runtime", name, "--threads", str(THREADS)], check=True, capture_output=True)
        end_to_end[name] = time.perf_counter() - started
        submissions[name] = pd.read_csv(out).set_index("recording_id").sort_index()
    difference = float(np.abs(submissions["torch"].to_numpy() - submissions["onnx"].to_numpy()).max())
    stages_by_workers = {}
    for workers in (1, 2):  # a job folder: decoding in a thread, or in two processes; where the time goes
        job = ROOT / f"onnx_bench_job_w{workers}"
        started = time.perf_counter()
        done = subprocess.run([CLI, "predict", "--run", str(run), "--audio", str(corpus / "test"), "--out", str(job), "--device",
                               "cpu", "--runtime", "onnx", "--threads", str(THREADS), "--workers", str(workers), "--force"],
                              check=True, capture_output=True, text=True)
        line = next(x for x in done.stdout.splitlines() if x.startswith("time per stage"))
        stages_by_workers[workers] = {"wall_s": round(time.perf_counter() - started, 1), "stages": line.split(": ", 1)[1]}
    result = {"files": len(files), "audio_s": round(audio_s), "floor_s": round(floor_s, 1),
              "floor_x_real_time": round(audio_s / floor_s),
              "windows_per_s": {k: round(v, 1) for k, v in model_only.items()},
              "predict_s": {k: round(v, 1) for k, v in end_to_end.items()},
              "predict_x_real_time": {k: round(audio_s / v) for k, v in end_to_end.items()},
              "predict_over_floor": {k: round(v / floor_s, 2) for k, v in end_to_end.items()},
              "max_score_difference": difference, "job_folder_by_workers": stages_by_workers}
    print(json.dumps(result, indent=1))
    print(f"python benchmarks/onnx_runtime.py; {stamp()}")


if __name__ == "__main__":
    main()
