"""Training killed with SIGKILL at random moments (checkpoint writes included) and resumed each time:
every resume continues, the run ends usable, and no file it reads is ever half-written."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from dawnchorus.config import load_config, save_config
from dawnchorus.infer import predict

sys.path.insert(0, str(Path(__file__).parents[1]))  # the suite's shared helpers, when this folder runs alone
from test_train_infer import corpus, fast_config  # noqa: E402,F401  (corpus is a fixture)

KILLS = 10


def _readable_state(run) -> None:
    """Everything a resume reads parses (atomic writes: old or new, never half)."""
    if (run / "config.yaml").is_file():
        load_config(run / "config.yaml")
    for path in run.rglob("*.json"):
        json.loads(path.read_text())
    for path in run.rglob("*.csv"):
        pd.read_csv(path)


def test_training_survives_ten_random_kills(corpus, tmp_path):
    run = tmp_path / "run"
    config = fast_config("train.epochs=4", "sampling.crops_per_epoch=48", "train.checkpoint_every_steps=1")
    save_config(config, tmp_path / "config.yaml")
    command = [sys.executable, "-m", "dawnchorus.cli", "train", "--data", str(corpus), "--out", str(run),
               "--preset", str(tmp_path / "config.yaml")]
    rng, kills, started = random.Random(7), 0, time.monotonic()
    start_up_s = None  # measured on the first start: kills then land after it, in training and its writes
    while kills < KILLS:
        assert time.monotonic() - started < 600, f"still training after {kills} kills"
        resume = ["--resume"] if (run / "config.yaml").is_file() else []
        launched = time.monotonic()
        process = subprocess.Popen(command + resume, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if start_up_s is None:
            while not (run / "config.yaml").is_file() and process.poll() is None:
                time.sleep(0.05)
            start_up_s = time.monotonic() - launched
        try:
            process.wait(timeout=max(0.0, start_up_s + rng.uniform(0.0, 3.0) - (time.monotonic() - launched)))
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
            _readable_state(run)
            continue
        assert process.returncode == 0, process.stderr.read()
        break  # finished before the next kill
    final = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert (run / "fold0" / "model.safetensors").is_file() and not (run / "fold0" / "resume.pt").exists()
    assert not list(run.rglob(".*.tmp"))  # interrupted writes were cleaned up
    history = pd.read_csv(run / "fold0" / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]  # every epoch once, none lost or repeated
    windows = predict(run_dirs=[run], audio_dir=corpus / "test").windows
    assert len(windows) > 0 and windows.drop(columns=["recording_id"]).notna().all().all()
    assert kills >= 3  # the run was actually interrupted, not just started and finished
