"""The archive engine on Ray Data, for archives that outgrow one machine.

Only where chunks are decoded and scored changes: the driver lists the archive, plans the
same chunk tasks (:func:`engine.chunk_tasks`), keeps the journal, writes the parts and the
outputs exactly as the local engine does, so a job can be started on a laptop, resumed on a
cluster and finished on the laptop again. Ray Data runs the two stages in between:

- decoding and resampling (``map``, one CPU per task, as many as the cluster has free), and
- scoring (``map_batches`` over a pool of actors, each holding one copy of the detector, on
  CPUs or, with ``gpus_per_scorer``, on GPUs).

Results come back to the driver in task order (``preserve_order``), so the chunks of a file
arrive together and a file is recorded as done only once all of its chunks are scored.
"""

from __future__ import annotations

import io
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from ..data.audio import AudioInfo, n_samples
from ..cluster import connect, import_ray
from ..errors import AudioError
from .engine import RayOptions, decode_chunk, missing_channel, score_group
from .scoring import ChunkScorer

SCORE_BATCH_CHUNKS = 8  # chunks per actor call at least: fewer round trips
MAX_BATCH_CHUNKS = 64  # and at most: short files fill the model's batches (as the local engine groups them)
def _task_row(order: int, index: int, number: int, count: int, task: tuple | None) -> dict:
    row = {"order": order, "index": index, "number": number, "count": count, "has_task": task is not None}
    if task is not None:
        path, rate, offset, read_until, channel, info, own_until = task
        row.update(path=path, rate=rate, offset=offset, read_until=read_until, channel=-1 if channel is None else channel,
                   own_until=own_until, file_rate=info.sample_rate_hz, n_frames=info.n_frames, channels=info.channels)
    return row


def _task_of(row: dict) -> tuple:
    info = AudioInfo(path=row["path"], sample_rate_hz=int(row["file_rate"]), n_frames=int(row["n_frames"]),
                     channels=int(row["channels"]))
    channel = None if int(row["channel"]) < 0 else int(row["channel"])
    return (row["path"], int(row["rate"]), int(row["offset"]), int(row["read_until"]), channel, info, int(row["own_until"]))


def _decode(row: dict) -> dict:
    out = {**row, "samples": np.zeros(0, np.float32), "error": ""}  # the task's fields travel on to the scorer
    if row["has_task"]:
        try:
            out["samples"] = decode_chunk(_task_of(row)[:6])
        except AudioError as exc:
            out["error"] = str(exc)
    return out


def _chunks_per_call(scorer: ChunkScorer, tasks: list[tuple]) -> int:
    """Chunks per actor call: enough that the typical call fills the model's batch (``batch_windows``)."""
    if not all(hasattr(scorer, name) for name in ("score_chunks", "count_windows", "batch_windows")):
        return SCORE_BATCH_CHUNKS
    windows = [scorer.count_windows(offset=t[2], own_until=t[6], n_total=n_samples(t[5].duration_s, t[1]))
               for _, _, _, t in tasks[:1000] if t is not None]
    typical = max(1.0, float(np.median(windows))) if windows else 1.0
    return int(min(MAX_BATCH_CHUNKS, max(SCORE_BATCH_CHUNKS, round(scorer.batch_windows / typical))))


def _decode_bytes(rows: list[dict]) -> int:
    """Float32 samples of the longest chunk at the file's rate and the scorer's, twice over for the resampler."""
    longest = max(((r["read_until"] - r["offset"]) * max(1.0, r["file_rate"] / r["rate"]) for r in rows if r["has_task"]),
                  default=1)
    return int(4 * 4 * longest) + (64 << 20)


def _to_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


class _Scorer:
    """One actor of the scoring pool: a copy of the job's detector, fed one chunk at a time."""

    def __init__(self, scorer: ChunkScorer, threads: int, gpus: float = 0.0):
        import torch

        torch.set_num_threads(max(1, threads))
        if gpus > 0 and hasattr(scorer, "to"):  # Ray gave this actor its GPU (CUDA_VISIBLE_DEVICES): "cuda" is it
            scorer = scorer.to(torch.device("cuda"))
        self.scorer = scorer

    def __call__(self, batch: dict) -> dict:
        count = len(batch["order"])
        rows, errors = [b""] * count, [""] * count
        group = []  # the decoded chunks of this call, scored together as the local engine groups them
        for i in range(count):
            row = {key: values[i] for key, values in batch.items()}
            if row["error"] or not row["has_task"]:
                errors[i] = str(row["error"])
            else:
                group.append((i, None, None, _task_of(row), np.asarray(row["samples"], dtype=np.float32)))
        for (i, *_), scored, error in score_group(self.scorer, group):
            if error is None:
                rows[i] = _to_bytes(scored)  # Parquet, as the parts are: no pickle between processes
            else:
                errors[i] = error
        return {"order": batch["order"], "rows": np.array(rows, dtype=object), "error": np.array(errors, dtype=object)}


def ray_chunk_results(items: Sequence[tuple[Any, AudioInfo]], tasks: list[tuple], *, scorer: ChunkScorer,
                      channel: int | None, options: RayOptions) -> Iterator[tuple]:
    """The chunk results of ``tasks`` (see ``engine.assemble_files``), computed on Ray."""
    ray = import_ray()
    connect(address=options.address)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")  # Ray's notes to its own developers
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # a file's chunks arrive together, files in manifest order
    context.enable_progress_bars = False
    if not tasks:
        return
    rows = [_task_row(order, *task) for order, task in enumerate(tasks)]
    dataset = (ray.data.from_items(rows, override_num_blocks=min(len(rows), 1000))
               # the memory a decode needs (the file's samples at both rates) tells Ray where it fits, and, being
               # asked only here, keeps Ray from fusing decoding into the scoring actors: files are decoded on
               # every free CPU while the actors score
               .map(_decode, num_cpus=1, memory=_decode_bytes(rows))
               .map_batches(_Scorer, fn_constructor_kwargs={"scorer": scorer, "threads": options.threads_per_scorer,
                                                         "gpus": options.gpus_per_scorer},
                            batch_size=_chunks_per_call(scorer, tasks), compute=ray.data.ActorPoolStrategy(size=options.scorers),
                            num_cpus=options.threads_per_scorer, num_gpus=options.gpus_per_scorer))
    for result in dataset.iter_rows():
        index, number, count, task = tasks[int(result["order"])]
        if task is None:
            yield index, number, count, None, missing_channel(items[index][1], channel)
        elif result["error"]:
            yield index, number, count, None, str(result["error"])
        else:
            yield index, number, count, pd.read_parquet(io.BytesIO(result["rows"])), None
