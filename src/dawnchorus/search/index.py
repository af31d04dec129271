"""An archive's window embeddings and an approximate-nearest-neighbour index over them.

``index_archive`` is an ``embed`` job (the archive engine: manifest, journal, one Parquet part
per recording, resumable) whose output is the index: ``ann.usearch`` (a USearch HNSW graph,
cosine distance, vectors stored as float16), ``ann_rows.parquet`` (key -> recording, path and
window times) and ``ann.json`` (the embedder, so ``search`` embeds queries the same way). Like
every job output it is rebuilt from the parts at the end of each run, so a resumed or extended
job always has an index of exactly its finished recordings.

Vectors are centred on the archive's mean window (of its first ``CENTRE_WINDOWS`` windows)
before indexing, and queries with the same centre. Pooled CNN features (after ReLUs) and
BirdNET embeddings share a large common component: raw cosine similarities of unrelated
windows are 0.99 and more, which float16 and the graph's approximations cannot rank. Centred,
they spread over [-1, 1].

USearch, because it is one small wheel on every platform, adds and searches on several
threads, quantises vectors to float16 (half the memory, no measurable loss on cosine
neighbours) and memory-maps a saved index (``view``), so a search opens an index larger than
memory in milliseconds; hnswlib ships as source only and FAISS as a 20 MB wheel.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write_text, atomic_write_with
from ..batch.engine import DEFAULT_CHUNK_S, JobSummary, RayOptions
from ..embeddings import Embedder
from ..errors import InputError, OutputError, unwritable

INDEX_FILE, ROWS_FILE, META_FILE = "ann.usearch", "ann_rows.parquet", "ann.json"
BIRDNET = "birdnet"
ROW_COLUMNS = ["recording_id", "path", "t_start_s", "t_end_s"]
CENTRE_WINDOWS = 20_000  # windows the centre is estimated from (80 MB of 1024-d vectors held meanwhile)
# graph construction effort: 64 builds 1.8x faster than USearch's default 128 for recall@100 of 0.993
# instead of 0.997 (100,000 clustered 256-d vectors, benchmarks/RESULTS.md "Embedding search")
EXPANSION_ADD = 64


def resolve_index_embedder(spec: str | Path, *, threads: int = 1) -> Embedder:
    """``birdnet`` (the optional extra, non-commercial licence) or a run directory of ``dawnchorus train``."""
    if str(spec) == BIRDNET:
        from ..embeddings import resolve_embedder

        return resolve_embedder(None, threads=threads)
    run_dir = Path(spec)
    if not (run_dir / "config.yaml").is_file():
        raise InputError(f"--embedder {spec}: neither 'birdnet' nor a run directory of 'dawnchorus train' (no config.yaml)")
    from ..cnn_embeddings import cnn_embedder

    return cnn_embedder(run_dir, threads=threads)


def embedder_spec(spec: str | Path) -> str:
    return BIRDNET if str(spec) == BIRDNET else str(Path(spec).resolve())


class AnnIndexWriter:
    """The output writer of an index job: every finished recording's vectors into one graph."""

    def __init__(self, *, out_dir: Path, spec: str, embedder: Embedder, hop_s: float, threads: int):
        from usearch.index import Index

        self.out_dir, self.threads = Path(out_dir), max(1, threads)
        self.meta = {"embedder": spec, "embedder_name": embedder.name, "dim": int(embedder.dim), "metric": "cos",
                     "window_s": float(embedder.window_s), "hop_s": float(hop_s), "sample_rate_hz": int(embedder.sample_rate_hz)}
        self.index = Index(ndim=int(embedder.dim), metric="cos", dtype="f16", expansion_add=EXPANSION_ADD)
        self.rows: list[pd.DataFrame] = []
        self.count = 0
        self.centre: np.ndarray | None = None
        self.waiting: list[np.ndarray] = []  # vectors seen before the centre is known

    def add(self, entry, rows: pd.DataFrame) -> None:
        if not len(rows):
            return
        vectors = np.stack(rows["vector"].to_numpy()).astype(np.float32)
        if vectors.shape[1] != self.meta["dim"]:
            raise InputError(f"{entry.path}: its embeddings have {vectors.shape[1]} dimensions, the embedder {self.meta['dim']}; "
                             "rerun the job with --force")
        self.rows.append(rows[ROW_COLUMNS].reset_index(drop=True))
        if self.centre is None:
            self.waiting.append(vectors)
            if sum(len(v) for v in self.waiting) >= CENTRE_WINDOWS:
                self._set_centre()
            return
        self._add(vectors)

    def _set_centre(self) -> None:
        self.centre = np.concatenate(self.waiting).mean(axis=0) if self.waiting else np.zeros(self.meta["dim"], np.float32)
        for vectors in self.waiting:
            self._add(vectors)
        self.waiting = []

    def _add(self, vectors: np.ndarray) -> None:
        keys = np.arange(self.count, self.count + len(vectors), dtype=np.uint64)
        self.index.add(keys, vectors - self.centre, threads=self.threads)
        self.count += len(vectors)

    def close(self) -> list[Path]:
        if self.centre is None:
            self._set_centre()
        rows = pd.concat(self.rows, ignore_index=True) if self.rows else pd.DataFrame(columns=ROW_COLUMNS)
        index_path = self.out_dir / INDEX_FILE
        tmp = index_path.with_name(f".{index_path.name}.{os.getpid()}.tmp")
        try:
            self.index.save(str(tmp))
            os.replace(tmp, index_path)
        except (OSError, RuntimeError) as exc:  # USearch reports a full disk as a RuntimeError
            tmp.unlink(missing_ok=True)
            raise OutputError(unwritable(index_path, exc)) from None
        atomic_write_with(self.out_dir / ROWS_FILE, lambda path: rows.to_parquet(path, index=False))
        atomic_write_text(self.out_dir / META_FILE, json.dumps({**self.meta, "windows": int(len(rows)),
                                                                 "recordings": int(rows["recording_id"].nunique()),
                                                                 "centre": [float(x) for x in self.centre]}))
        return [index_path, self.out_dir / ROWS_FILE, self.out_dir / META_FILE]


def index_archive(*, audio_root: str | Path, out_dir: str | Path, embedder: str | Path = BIRDNET, hop_s: float = 1.5,
                  threads: int = 1, channel: int | None = None, workers: int = 1, chunk_s: float = DEFAULT_CHUNK_S,
                  retry_failed: bool = False, force: bool = False, progress: bool = False,
                  ray: RayOptions | None = None) -> JobSummary:
    """Embed every window of an archive (resumable) and index the vectors for ``search``."""
    from ..batch.jobs import embed_archive

    spec, model = embedder_spec(embedder), resolve_index_embedder(embedder, threads=threads)
    out_dir = Path(out_dir)
    return embed_archive(audio_root=audio_root, out_dir=out_dir, embedder=model, hop_s=hop_s, threads=threads, channel=channel,
                         workers=workers, chunk_s=chunk_s, retry_failed=retry_failed, force=force, progress=progress, ray=ray,
                         outputs=lambda: [AnnIndexWriter(out_dir=out_dir, spec=spec, embedder=model, hop_s=hop_s, threads=threads)])


@dataclass
class AnnIndex:
    """An opened index: the graph (memory-mapped), its rows and how its vectors were made."""

    index_dir: Path
    graph: object
    rows: pd.DataFrame
    meta: dict
    audio_root: Path | None = None  # the archive the index was built on (its rows' paths are relative to it)

    def __len__(self) -> int:
        return len(self.rows)

    def nearest(self, vectors: np.ndarray, k: int, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Keys ``(m, k)`` and cosine similarities of the ``k`` nearest windows of each vector (-1: none)."""
        k = max(1, min(int(k), len(self)))
        centred = np.asarray(vectors, dtype=np.float32) - np.asarray(self.meta["centre"], dtype=np.float32)
        matches = self.graph.search(np.ascontiguousarray(centred), k, threads=max(1, threads))
        with np.errstate(invalid="ignore", over="ignore"):  # unused slots hold sentinel distances
            raw_keys = np.asarray(matches.keys).reshape(len(vectors), -1)
            distances = np.asarray(matches.distances, dtype=np.float64).reshape(len(vectors), -1)
        # one query vector gives a Matches of its valid hits, several a BatchMatches padded with sentinels
        counts = np.asarray(matches.counts).reshape(-1) if hasattr(matches, "counts") else np.array([len(matches)])
        valid = np.arange(raw_keys.shape[1])[None, :] < counts[:, None]
        keys = np.where(valid, raw_keys, 0).astype(np.int64)
        keys[~valid] = -1
        with np.errstate(invalid="ignore", over="ignore"):
            similarity = np.where(valid, 1.0 - distances, -np.inf)
        return keys, similarity


def open_index(index_dir: str | Path) -> AnnIndex:
    """The index of an ``index`` job folder, memory-mapped; a clear error when it is missing or incomplete."""
    from usearch.index import Index

    index_dir = Path(index_dir)
    missing = [name for name in (INDEX_FILE, ROWS_FILE, META_FILE) if not (index_dir / name).is_file()]
    if missing:
        raise InputError(f"{index_dir}: not an index ({', '.join(missing)} missing); build it with "
                         "'dawnchorus index --audio ARCHIVE --out INDEX'")
    try:
        meta = json.loads((index_dir / META_FILE).read_text())
        rows = pd.read_parquet(index_dir / ROWS_FILE)
        graph = Index.restore(str(index_dir / INDEX_FILE), view=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{index_dir}: the index files are damaged ({exc}); rebuild with 'dawnchorus index ... --force'") from None
    if graph is None or len(graph) != len(rows) or graph.ndim != meta.get("dim") or len(meta.get("centre", ())) != graph.ndim:
        raise InputError(f"{index_dir}: {INDEX_FILE} and {ROWS_FILE} disagree ({0 if graph is None else len(graph)} vectors, "
                         f"{len(rows)} rows); run the same 'dawnchorus index' command again to rebuild them")
    from ..batch.journal import read_job

    job = read_job(index_dir) or {}
    return AnnIndex(index_dir=index_dir, graph=graph, rows=rows, meta=meta,
                    audio_root=Path(job["audio_root"]) if job.get("audio_root") else None)


def box_vectors(index: AnnIndex, boxes: list[tuple[str, float, float]], *, audio_paths: dict[str, Path],
                threads: int = 1) -> list[np.ndarray]:
    """The index's vector (centred, as searched) of each ``(recording_id, t_min_s, t_max_s)`` box:
    the indexed window itself when the box is one, else the box embedded now with the index's
    embedder (a window centred on it)."""
    from ..data.audio import load_audio

    columns = ["recording_id", "t_start_s", "t_end_s"]
    # a join, not a dict over every indexed window: an archive's index has millions of rows
    wanted = pd.DataFrame(boxes, columns=columns).round({"t_start_s": 3, "t_end_s": 3})
    indexed_rows = index.rows[columns].round({"t_start_s": 3, "t_end_s": 3}).assign(key=np.arange(len(index.rows)))
    joined = wanted.merge(indexed_rows.drop_duplicates(columns), how="left", on=columns)["key"]
    centre = np.asarray(index.meta["centre"], dtype=np.float32)
    found = [None if pd.isna(key) else int(key) for key in joined]
    vectors: list[np.ndarray | None] = [None] * len(boxes)
    indexed = [i for i, key in enumerate(found) if key is not None]
    if indexed:
        stored = index.graph.get(np.array([found[i] for i in indexed], dtype=np.uint64), dtype=np.float32)
        for i, vector in zip(indexed, stored if isinstance(stored, tuple) else list(stored)):
            vectors[i] = np.asarray(vector, dtype=np.float32)
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing:
        embedder = resolve_index_embedder(index.meta["embedder"], threads=threads)
        window_s = float(embedder.window_s)
        windows = []
        for i in missing:
            recording_id, t_min, t_max = boxes[i]
            start = max(0.0, (t_min + t_max - window_s) / 2)
            windows.append(load_audio(audio_paths[recording_id], sample_rate_hz=embedder.sample_rate_hz, t_start_s=start,
                                      duration_s=window_s))
        for first in range(0, len(windows), embedder.batch_size):
            embedded = np.asarray(embedder.embed(np.stack(windows[first:first + embedder.batch_size])), dtype=np.float32)
            for i, vector in zip(missing[first:first + embedder.batch_size], embedded):
                vectors[i] = vector - centre
    return vectors
