"""Shared set-up for the benchmark scripts: the standard synthetic corpus and a results line."""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path

from dawnchorus.demo import ensure_corpus

BENCH_DATA = Path("bench_data")


def standard_corpus(n_train: int = 300, n_test: int = 200, seed: int = 1) -> Path:
    """The corpus of ``dawnchorus synth --n-train 300 --n-test 200 --seed 1`` (made once)."""
    return ensure_corpus(corpus_dir=BENCH_DATA / f"synth_{n_train}_{n_test}_seed{seed}", n_train=n_train, n_test=n_test, seed=seed)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def stamp() -> str:
    return f"{time.strftime('%Y-%m-%d')}, {machine()}, commit {commit()}"
