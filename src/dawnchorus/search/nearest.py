"""Nearest windows to a set of example calls, merged into one candidate per call.

Windows overlap (the hop is shorter than the window), so one call in the archive shows up as
several neighbouring hits: the best of them is the candidate, scored by its similarity, and
the hits overlapping it are dropped (non-maximum suppression, as detectors merge boxes). Candidates are written in the columns
of ``dawnchorus match`` (plus ``path``), so the review page serves them unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..embeddings import Embedder
from ..errors import InputError
from ..templates import CANDIDATE_COLUMNS
from .index import AnnIndex
from .queries import Query, query_vectors

OUTPUT_COLUMNS = [*CANDIDATE_COLUMNS, "path"]
_FIRST_K_PER_CANDIDATE = 8  # hits fetched per candidate wanted; doubled until enough calls are found


def search_index(*, index: AnnIndex, queries: list[Query], embedder: Embedder, top: int = 100,
                 threads: int = 1) -> pd.DataFrame:
    """The ``top`` candidates of each species among ``queries``, best first."""
    if embedder.name != index.meta.get("embedder_name"):
        raise InputError(f"{index.index_dir}: was built with embedder {index.meta.get('embedder_name')}, the query would be "
                         f"embedded with {embedder.name}; rebuild the index ('dawnchorus index ... --force') or search "
                         "with the embedder it was built with")
    if top < 1:
        raise InputError(f"--top must be at least 1, not {top}")
    if not queries:
        raise InputError("no queries to search for")
    vectors, owner = query_vectors(queries, embedder=embedder)
    return search_vectors(index=index, queries=queries, vectors=vectors, owner=owner, top=top, threads=threads)


def search_vectors(*, index: AnnIndex, queries: list[Query], vectors: np.ndarray, owner: np.ndarray, top: int = 100,
                   threads: int = 1) -> pd.DataFrame:
    """``search_index`` for query vectors already embedded (``owner``: the query of each vector)."""
    tables = []
    for key in dict.fromkeys((q.species_id, q.songtype_id) for q in queries):
        members = [i for i, q in enumerate(queries) if (q.species_id, q.songtype_id) == key]
        mask = np.isin(owner, members)
        tables.append(_candidates_of(index, [queries[i] for i in members], vectors[mask],
                                     np.searchsorted(members, owner[mask]), top=top, threads=threads))
    return pd.concat(tables, ignore_index=True)[OUTPUT_COLUMNS]


def _candidates_of(index: AnnIndex, queries: list[Query], vectors: np.ndarray, owner: np.ndarray, *, top: int,
                   threads: int) -> pd.DataFrame:
    k = top * _FIRST_K_PER_CANDIDATE
    while True:
        keys, similarity = index.nearest(vectors, k, threads=threads)
        candidates = _merge(index, queries, keys, similarity, owner)
        if len(candidates) >= top or k >= len(index):
            break
        k *= 2
    first = queries[0]
    candidates = candidates.head(top).assign(
        species_id=first.species_id, songtype_id=first.songtype_id,
        f_min=min(q.f_min_hz for q in queries), f_max=max(q.f_max_hz for q in queries))
    return candidates


def _merge(index: AnnIndex, queries: list[Query], keys: np.ndarray, similarity: np.ndarray,
           owner: np.ndarray) -> pd.DataFrame:
    valid = keys >= 0
    hits = pd.DataFrame({"key": keys[valid], "score": similarity[valid], "query": np.broadcast_to(owner[:, None], keys.shape)[valid]})
    hits = hits.sort_values("score", ascending=False).drop_duplicates("key")  # a window's best similarity to any query vector
    hits = hits.join(index.rows, on="key")
    hits = hits[~_inside_a_query(hits, queries, index)]
    # non-maximum suppression: the best window of a call is its candidate; hits overlapping a
    # candidate are the same call, seen from a neighbouring window
    chosen: dict[tuple, list[dict]] = {}
    for hit in hits.itertuples(index=False):  # best first
        calls = chosen.setdefault((hit.recording_id, hit.path), [])
        if any(hit.t_start_s < c["t_max"] and hit.t_end_s > c["t_min"] for c in calls):
            continue
        calls.append({"recording_id": hit.recording_id, "path": hit.path, "t_min": float(hit.t_start_s),
                      "t_max": float(hit.t_end_s), "score": float(hit.score),
                      "template_id": f"search:{queries[int(hit.query)].name}"})
    columns = ["recording_id", "path", "t_min", "t_max", "score", "template_id"]
    merged = pd.DataFrame([c for calls in chosen.values() for c in calls], columns=columns)
    return merged.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def _inside_a_query(hits: pd.DataFrame, queries: list[Query], index: AnnIndex) -> np.ndarray:
    """Windows overlapping an example call of the archive itself (the same recording id, or the
    same file): already known, not candidates."""
    inside = np.zeros(len(hits), dtype=bool)
    for query in queries:
        same = hits["recording_id"] == query.recording_id if query.recording_id is not None else None
        if index.audio_root is not None:
            relative = _relative_to(query.path, index.audio_root)
            if relative is not None:
                same = (hits["path"] == relative) if same is None else same | (hits["path"] == relative)
        if same is None:
            continue
        inside |= (same & (hits["t_start_s"] < query.t_max_s) & (hits["t_end_s"] > query.t_min_s)).to_numpy()
    return inside


def _relative_to(path, root) -> str | None:
    """``path`` as the archive's manifest writes it (relative, POSIX, links not followed), if it lies in ``root``."""
    from pathlib import Path

    for candidate in (Path(path).absolute(), Path(path).resolve()):
        for base in (Path(root).absolute(), Path(root).resolve()):
            try:
                return candidate.relative_to(base).as_posix()
            except ValueError:
                continue
    return None
