"""Where a job's time goes: seconds spent in each stage (reading, resampling, spectrogram,
network, writing ...), summed per process.

Code marks a stage with ``with timed("resample"):``; that costs a microsecond, so it stays on.
Work done elsewhere (a decoding process, a decoding thread) is captured there with
``collect()`` and added here with ``add()`` when its result arrives, so the totals cover every
process of a job. Stages that run at the same time (decoding ahead of the model) overlap: their
sum can exceed the wall time, and ``waiting for audio`` says how long the model had nothing to do.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_totals: dict[str, float] = defaultdict(float)
_local = threading.local()  # the collector of this thread, when one is open

# stages in the order data flows through them, for reports
ORDER = ("read", "resample", "waiting for audio", "windows", "spectrogram", "network", "rows", "writing", "outputs")


@contextmanager
def timed(stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        _record(stage, time.perf_counter() - started)


def _record(stage: str, seconds: float) -> None:
    collector = getattr(_local, "collector", None)
    if collector is not None:
        collector[stage] += seconds
        return
    with _lock:
        _totals[stage] += seconds


@contextmanager
def collect() -> Iterator[dict[str, float]]:
    """Capture this thread's stage seconds into the yielded dict instead of the totals (to
    send them back from a worker with its result)."""
    outer = getattr(_local, "collector", None)
    _local.collector = captured = defaultdict(float)
    try:
        yield captured
    finally:
        _local.collector = outer


def add(seconds: dict[str, float]) -> None:
    for stage, value in seconds.items():
        _record(stage, value)


def snapshot() -> dict[str, float]:
    with _lock:
        return dict(_totals)


def since(before: dict[str, float]) -> dict[str, float]:
    """Stage seconds accumulated after ``before`` (a ``snapshot()``), in data-flow order."""
    now = snapshot()
    spent = {stage: now[stage] - before.get(stage, 0.0) for stage in now if now[stage] - before.get(stage, 0.0) > 0}
    ordered = {stage: spent.pop(stage) for stage in ORDER if stage in spent}
    return {**ordered, **dict(sorted(spent.items()))}


def describe(seconds: dict[str, float]) -> str:
    return ", ".join(f"{stage} {value:.1f} s" for stage, value in seconds.items())
