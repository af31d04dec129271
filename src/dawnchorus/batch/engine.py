"""The batch engine: one loop for every archive job (predict, embed, match), resumable.

Steps: list the archive into ``manifest.parquet``; for each file not yet finished, read it
in chunks (seek + read, each chunk carrying ``overlap_s`` more audio so no window is lost at
an edge), score every chunk with the job's ``ChunkScorer``, write the file's rows to
``parts/<digest>.parquet`` (temporary file + rename) and then record it in the journal;
unreadable files go to ``failed.csv`` and the job goes on. Finally the outputs are written
from the parts, one recording at a time, so memory depends on the chunk length, not on the
length of a file or the size of the archive.

Decoding runs ahead of the scorer: in a thread (``workers <= 1``) or in ``workers``
processes, with a bounded number of chunks in flight.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from ..data.audio import AudioInfo, load_audio, n_samples
from .. import stages
from ..errors import AudioError, InputError
from .journal import Journal, JournalEntry, atomic_write_text, check_or_start_job
from .manifest import Manifest, ManifestEntry, list_archive, read_manifest
from .scoring import ChunkScorer

try:
    from tqdm.auto import tqdm
except ImportError:  # progress bars are a nicety
    tqdm = None

MANIFEST_FILE = "manifest.parquet"
FAILED_FILE = "failed.csv"
PARTS_DIR = "parts"
DEFAULT_CHUNK_S = 120.0


@dataclass(frozen=True)
class RayOptions:
    """Where and how an archive job runs on Ray: the cluster (None: a private one on this
    machine), the number of scoring actors, and the CPU threads and GPUs each holds."""

    address: str | None = None
    scorers: int = 1
    threads_per_scorer: int = 1
    gpus_per_scorer: float = 0.0

    def __post_init__(self):
        if self.scorers < 1 or self.threads_per_scorer < 1 or self.gpus_per_scorer < 0:
            raise InputError(f"Ray options: scorers and threads per scorer must be at least 1 and GPUs per scorer 0 or "
                             f"more; got {self.scorers}, {self.threads_per_scorer}, {self.gpus_per_scorer}")


@dataclass(frozen=True)
class JobSummary:
    out_dir: Path
    files: int  # readable and unreadable audio files listed
    done_now: int
    done_before: int
    failed: int
    ignored: dict[str, int]
    audio_hours_now: float
    seconds: float
    outputs: list[Path] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage, this run (``stages.since``)

    def __str__(self) -> str:
        rate = self.audio_hours_now / (self.seconds / 3600) if self.seconds > 0 else 0.0
        text = (f"{self.files} audio file(s): {self.done_now} processed now ({self.audio_hours_now:.2f} h of audio, "
                f"{rate:.0f} audio hours per hour), {self.done_before} done before, {self.failed} failed")
        if self.ignored:
            text += "; ignored (not audio): " + ", ".join(f"{n} {ext}" for ext, n in self.ignored.items())
        if self.failed:
            text += f"\nfailed files are listed in {self.out_dir / FAILED_FILE}; fix or remove them and rerun with --retry-failed"
        if self.stages:
            text += f"\ntime per stage (decoding overlaps the model; summed over processes): {stages.describe(self.stages)}"
        return text


def plan_chunks(n_total: int, *, chunk: int, overlap: int) -> list[tuple[int, int, int]]:
    """``(offset, own_until, read_until)`` in samples: spans of ``chunk`` samples, each read
    ``overlap`` further (not past the end). A file shorter than one chunk is one chunk."""
    chunk = max(1, chunk)
    offsets = range(0, max(n_total, 1), chunk)
    return [(o, min(o + chunk, n_total), min(o + chunk + overlap, n_total)) for o in offsets]


def decode_chunk(task: tuple) -> np.ndarray:
    """One chunk at the scorer's rate."""
    path, rate, offset, read_until, channel, info = task
    return load_audio(path, sample_rate_hz=rate, t_start_s=offset / rate, duration_s=max(read_until - offset, 1) / rate,
                      channel=channel, info=info)


def decode_timed(task: tuple) -> tuple[np.ndarray, dict[str, float]]:
    """``decode_chunk`` and the stage seconds it took where it ran (a module-level function, so
    decoding processes can run it; the caller adds the seconds to its own totals)."""
    with stages.collect() as seconds:
        samples = decode_chunk(task)
    return samples, dict(seconds)


def part_name(relative_path: str) -> str:
    return f"{PARTS_DIR}/{hashlib.sha1(relative_path.encode()).hexdigest()[:20]}.parquet"


def write_part(path: Path, rows: pd.DataFrame) -> None:
    """A Parquet file replaced in one step (temporary file + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(tmp, index=False)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full or read-only disk: say where, and that finished files are safe
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write results ({exc.strerror or exc}); free space or fix permissions and run "
                         "the same command again: finished files are kept") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def run_job(*, command: str, audio_root: str | Path, out_dir: str | Path, scorer: ChunkScorer, settings: dict,
            make_outputs: Callable[[], Sequence] | None = None, channel: int | None = None, workers: int = 1,
            chunk_s: float = DEFAULT_CHUNK_S, retry_failed: bool = False, force: bool = False,
            progress: bool = False, ray: "RayOptions | None" = None) -> JobSummary:
    """Run (or resume) one archive job; returns its summary. ``settings`` and the scorer's
    fingerprint decide whether earlier results in ``out_dir`` can be kept. With ``ray`` the
    chunks are decoded and scored on a Ray cluster; everything else (manifest, journal,
    parts, outputs) is the same, so a job may switch engines between runs."""
    started, stages_before = time.perf_counter(), stages.snapshot()
    audio_root, out_dir = Path(audio_root), Path(out_dir)
    if not audio_root.is_dir():
        raise InputError(f"{audio_root}: audio folder not found")
    if not chunk_s > 0:
        raise InputError(f"--chunk-s must be a positive number of seconds, not {chunk_s}")
    if channel is not None and channel < 0:
        raise InputError(f"--channel counts from 0; {channel} is not a channel")
    fingerprint = {**settings, "channel": "mix" if channel is None else channel, **scorer.fingerprint()}
    out_dir.mkdir(parents=True, exist_ok=True)
    check_or_start_job(out_dir, command=command, audio_root=audio_root, fingerprint=fingerprint, force=force)
    for stale in out_dir.rglob(".*.tmp"):  # our temporary files, left by a job killed mid-write
        stale.unlink(missing_ok=True)
    journal = Journal(out_dir)
    previous = read_manifest(out_dir / MANIFEST_FILE)
    if previous is not None and retry_failed:
        previous = previous[previous["error"].fillna("") == ""]  # unreadable files are probed again
    manifest = list_archive(audio_root, previous=previous, skip=[out_dir])
    write_part(out_dir / MANIFEST_FILE, manifest.to_frame())
    if not manifest.entries:
        raise InputError(f"{audio_root}: no audio recordings (FLAC, WAV, MP3, OGG) found"
                         + (f"; ignored: {manifest.ignored}" if manifest.ignored else ""))
    todo, done_before = [], 0
    for entry in manifest.entries:
        old = journal.entries.get(entry.path)
        same_file = old is not None and (old.size_bytes, old.mtime_ns) == (entry.size_bytes, entry.mtime_ns)
        if same_file and old.status == "done" and (out_dir / old.part).is_file():
            done_before += 1
        elif same_file and old.status == "failed" and not retry_failed:
            continue
        elif not entry.readable:
            journal.record(JournalEntry(entry.path, "failed", entry.size_bytes, entry.mtime_ns, error=entry.error))
        else:
            todo.append(entry)
    done_now, hours = 0, 0.0
    try:
        headers = [(e, AudioInfo(path=e.absolute(audio_root), sample_rate_hz=e.sample_rate_hz,
                                 n_frames=int(round(e.duration_s * e.sample_rate_hz)), channels=e.channels)) for e in todo]
        if ray is None:
            scored = score_recordings(headers, scorer=scorer, channel=channel, workers=workers, chunk_s=chunk_s, progress=progress)
        else:
            from .ray_engine import ray_chunk_results

            tasks = chunk_tasks(headers, scorer=scorer, channel=channel, chunk_s=chunk_s)
            scored = assemble_files(headers, ray_chunk_results(headers, tasks, scorer=scorer, channel=channel, options=ray),
                                    scorer=scorer, progress=progress)
        for entry, rows, error, seconds in scored:
            if error is not None:
                journal.record(JournalEntry(entry.path, "failed", entry.size_bytes, entry.mtime_ns, error=error, seconds=seconds))
                continue
            part = part_name(entry.path)
            rows.insert(0, "path", entry.path)
            rows.insert(0, "recording_id", entry.recording_id)
            with stages.timed("writing"):
                write_part(out_dir / part, rows)
                journal.record(JournalEntry(entry.path, "done", entry.size_bytes, entry.mtime_ns, part=part, rows=len(rows),
                                            seconds=round(seconds, 3)))
            done_now += 1
            hours += entry.duration_s / 3600
    finally:
        journal.close()
    failed = _write_failed(out_dir, manifest, journal)
    with stages.timed("outputs"):
        outputs = write_outputs(out_dir=out_dir, manifest=manifest, journal=journal, writers=make_outputs() if make_outputs else [])
    return JobSummary(out_dir, len(manifest.entries), done_now, done_before, failed, manifest.ignored, hours,
                      time.perf_counter() - started, outputs, stages.since(stages_before))


def _write_failed(out_dir: Path, manifest: Manifest, journal: Journal) -> int:
    rows = []
    for entry in manifest.entries:
        old = journal.entries.get(entry.path)
        if old is not None and old.status == "failed":
            rows.append({"path": entry.path, "recording_id": entry.recording_id, "error": old.error})
    atomic_write_text(out_dir / FAILED_FILE, pd.DataFrame(rows, columns=["path", "recording_id", "error"]).to_csv(index=False))
    return len(rows)


def write_outputs(*, out_dir: Path, manifest: Manifest, journal: Journal, writers: Sequence) -> list[Path]:
    """Feed every finished recording's rows, in manifest order, to each output writer."""
    if not writers:
        return []
    for entry in manifest.readable:
        old = journal.entries.get(entry.path)
        if old is None or old.status != "done":
            continue
        rows = pd.read_parquet(out_dir / old.part)
        for writer in writers:
            writer.add(entry, rows)
    written: list[Path] = []
    for writer in writers:
        written.extend(writer.close())
    return written


def read_parts(out_dir: str | Path) -> pd.DataFrame:
    """Every finished recording's rows of a job, in manifest order."""
    out_dir = Path(out_dir)
    journal = Journal(out_dir)
    manifest = read_manifest(out_dir / MANIFEST_FILE)
    if manifest is None:
        raise InputError(f"{out_dir}: not an archive job folder ({MANIFEST_FILE} missing)")
    parts = [out_dir / journal.entries[p].part for p in manifest["path"]
             if p in journal.entries and journal.entries[p].status == "done"]
    if not parts:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


TRIM_EVERY_CHUNKS = 4


def _heap_trimmer() -> Callable[[], None]:
    """Hand the heap's freed pages back to the system (glibc's ``malloc_trim``).

    Chunk buffers of a few MB, freed by one thread and allocated by another, are not reused
    reliably by glibc: a 2-hour file read in 10 s chunks peaked at 5.3 GB instead of 1.1 GB.
    Trimming every few chunks keeps the peak flat at no measurable cost (benchmarks/RESULTS.md);
    other C libraries have no such call and need none.
    """
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


def _executor(workers: int) -> Executor:
    if workers <= 1:
        return ThreadPoolExecutor(max_workers=1)
    # spawn, not fork: the parent holds torch's thread pools, which a forked child must not inherit
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


def chunk_tasks(items: Sequence[tuple[Any, AudioInfo]], *, scorer: ChunkScorer, channel: int | None,
                chunk_s: float) -> list[tuple[int, int, int, tuple | None]]:
    """``(item index, chunk number, chunk count, decode task)`` for every chunk of every file, in
    order; the task is None for a file without the asked channel (one failing pseudo-chunk)."""
    rate = scorer.sample_rate_hz
    step = max(1, n_samples(scorer.step_s, rate))
    chunk = max(step, int(round(chunk_s * rate / step)) * step)
    overlap = n_samples(scorer.overlap_s, rate)
    tasks = []
    for index, (_, info) in enumerate(items):
        if channel is not None and channel >= info.channels:
            tasks.append((index, 0, 1, None))
            continue
        plan = plan_chunks(n_samples(info.duration_s, rate), chunk=chunk, overlap=overlap)
        for number, (offset, own_until, read_until) in enumerate(plan):
            tasks.append((index, number, len(plan), (str(info.path), rate, offset, read_until, channel, info, own_until)))
    return tasks


def score_task(scorer: ChunkScorer, task: tuple, samples: np.ndarray) -> pd.DataFrame:
    """The rows of one decoded chunk (``task`` from :func:`chunk_tasks`)."""
    info, offset, own_until = task[5], task[2], task[6]
    return scorer.score_chunk(samples, offset=offset, own_until=own_until, n_total=n_samples(info.duration_s, task[1]))


def assemble_files(items: Sequence[tuple[Any, AudioInfo]], chunk_results: Iterator[tuple], *, scorer: ChunkScorer,
                   progress: bool) -> Iterator[tuple[Any, pd.DataFrame | None, str | None, float]]:
    """Chunk results ``(index, number, count, rows or None, error or None)``, in task order, joined
    into one ``(key, rows, error, seconds)`` per file; any engine (threads, processes, Ray) feeds it."""
    bar = tqdm(total=len(items), desc="files", unit="file", disable=not progress) if tqdm is not None else None
    started, audio_s = time.perf_counter(), 0.0
    rows, error, file_started = [], None, time.perf_counter()
    for index, number, count, chunk_rows, chunk_error in chunk_results:
        key, info = items[index]
        if number == 0:
            rows, error, file_started = [], None, time.perf_counter()
        if error is None:
            if chunk_error is not None:
                error = chunk_error
            elif chunk_rows is not None:
                rows.append(chunk_rows)
        if number == count - 1:
            seconds = time.perf_counter() - file_started
            if error is None:
                finished = scorer.finish(pd.concat(rows, ignore_index=True) if rows else pd.DataFrame())
                yield key, finished.reset_index(drop=True), None, seconds
                audio_s += info.duration_s
            else:
                yield key, None, error, seconds
            if bar is not None:
                bar.update(1)
                elapsed = time.perf_counter() - started
                bar.set_postfix_str(f"{audio_s / 3600 / max(elapsed, 1e-9):.3f} audio h/s, "
                                    f"{audio_s / max(elapsed, 1e-9):.0f}x real time")
    if bar is not None:
        bar.close()


def missing_channel(info: AudioInfo, channel: int | None) -> str:
    return f"{info.path}: has {info.channels} channel(s); --channel {channel} does not exist (channels count from 0)"


def score_recordings(items: Sequence[tuple[Any, AudioInfo]], *, scorer: ChunkScorer, channel: int | None = None,
                     workers: int = 1, chunk_s: float = DEFAULT_CHUNK_S,
                     progress: bool = False) -> Iterator[tuple[Any, pd.DataFrame | None, str | None, float]]:
    """``(key, rows, error, seconds)`` for each ``(key, header)`` in order: the recording's rows
    (times absolute in the file) or why it could not be read. Decoding stays a few chunks ahead
    (a thread, or ``workers`` processes); memory depends on ``chunk_s``, not on the length of a file."""
    tasks = chunk_tasks(items, scorer=scorer, channel=channel, chunk_s=chunk_s)
    return assemble_files(items, _local_chunk_results(items, tasks, scorer=scorer, channel=channel, workers=workers),
                          scorer=scorer, progress=progress)


def _local_chunk_results(items, tasks, *, scorer: ChunkScorer, channel: int | None, workers: int) -> Iterator[tuple]:
    trim_heap, chunks_scored = _heap_trimmer(), 0
    grouping = all(hasattr(scorer, name) for name in ("score_chunks", "count_windows", "batch_windows"))
    group_windows = int(scorer.batch_windows) if grouping else 1
    ahead = max(2, 2 * workers)
    with _executor(workers) as pool:
        pending: deque = deque()
        queue = iter(tasks)

        def refill():
            while len(pending) < ahead:
                item = next(queue, None)
                if item is None:
                    return
                task = item[3]
                pending.append((item, pool.submit(decode_timed, task[:6]) if task is not None else None))

        group: list = []  # decoded chunks waiting to be scored together, in task order

        def flush() -> Iterator[tuple]:
            nonlocal chunks_scored
            for (index, number, count, task, _), rows, error in score_group(scorer, group):
                yield index, number, count, rows, error
            chunks_scored += len(group)
            if chunks_scored // TRIM_EVERY_CHUNKS != (chunks_scored - len(group)) // TRIM_EVERY_CHUNKS:
                trim_heap()
            group.clear()

        refill()
        failed_file, windows_grouped = None, 0  # chunks of a file that already failed are not scored
        while pending:
            (index, number, count, task), future = pending.popleft()
            if number == 0:
                failed_file = None
            if task is None:
                refill()
                yield from flush()
                yield index, number, count, None, missing_channel(items[index][1], channel)
                continue
            if failed_file == index:
                future.cancel()
                refill()
                yield index, number, count, None, None
                continue
            try:
                with stages.timed("waiting for audio"):
                    samples, seconds = future.result()
                stages.add(seconds)
            except AudioError as exc:
                refill()
                yield from flush()
                failed_file = index
                yield index, number, count, None, str(exc)
                continue
            windows = (scorer.count_windows(offset=task[2], own_until=task[6], n_total=n_samples(task[5].duration_s, task[1]))
                       if grouping else 1)
            if group and windows_grouped + windows > group_windows:  # full batches: the next chunk starts a group
                yield from flush()
                windows_grouped = 0
            group.append((index, number, count, task, samples))
            windows_grouped += windows
            # while a group fills, more of the queue is decoded ahead (bounded by the group's size)
            ahead = max(2, 2 * workers, len(group) + workers + 1)
            refill()
            if windows_grouped >= group_windows or not pending:
                yield from flush()
                windows_grouped = 0
        yield from flush()


def score_group(scorer: ChunkScorer, group: list) -> list[tuple]:
    """``(group item, rows, error)`` for each decoded chunk ``(..., task, samples)`` of ``group``: scored in one call when
    the scorer takes several chunks, else one by one; a chunk that cannot be scored gets its error."""
    if not group:
        return []
    if len(group) > 1 and hasattr(scorer, "score_chunks"):
        try:
            chunks = [(samples, task[2], task[6], n_samples(task[5].duration_s, task[1])) for *_, task, samples in group]
            return [(item, rows, None) for item, rows in zip(group, scorer.score_chunks(chunks))]
        except AudioError:
            pass  # one chunk is bad: score them one by one to find which
    results = []
    for item in group:
        try:
            results.append((item, score_task(scorer, item[3], item[4]), None))
        except AudioError as exc:
            results.append((item, None, str(exc)))
    return results
