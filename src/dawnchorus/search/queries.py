"""What ``search`` looks for: boxes of a label CSV or a Raven table, or a whole audio clip, each
turned into one or more vectors by the index's own embedder.

A box shorter than the embedder's window is embedded in one window centred on it (kept inside
the recording); a longer box, or a clip, gives one vector every half window across it, and
the search takes each archive window's best similarity to any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.annotations import read_boxes
from ..data.audio import find_recordings_by_id, is_audio_name, load_audio, probe_audio
from ..data.raven import read_raven
from ..data.species import SpeciesTable
from ..embeddings import Embedder
from ..errors import AudioError, InputError

RAVEN_SUFFIXES = (".txt", ".tsv")


@dataclass(frozen=True)
class Query:
    """One example call: where it is, what it is, and the name its candidates carry (``template_id``)."""

    species_id: int
    songtype_id: int
    path: Path
    t_min_s: float
    t_max_s: float
    f_min_hz: float
    f_max_hz: float
    recording_id: str | None  # in the archive: its own windows are not candidates
    name: str


def read_queries(query: str | Path, *, audio_root: str | Path | None, species_id: int | None = None, songtype_id: int = 1,
                 species: SpeciesTable | None = None) -> list[Query]:
    """Queries from a label CSV (TP boxes), a Raven selection table or an audio clip.

    Boxes name their recordings, found under ``audio_root`` (the archive, or wherever the example
    lives), or ``audio_root`` is the one recording a Raven table describes; ``species_id`` keeps
    only that species' boxes, and is required for a clip.
    """
    query = Path(query)
    if not query.is_file():
        raise InputError(f"--query {query}: file not found")
    if is_audio_name(query):
        if species_id is None:
            raise InputError(f"--query {query} is an audio clip: say which species it holds with --species ID")
        try:
            info = probe_audio(query)
        except AudioError as exc:
            raise InputError(f"--query {query}: {exc}") from None
        return [Query(species_id, songtype_id, query, 0.0, info.duration_s, 0.0, info.sample_rate_hz / 2, None,
                      f"clip:{query.name}")]
    if query.suffix.lower() in RAVEN_SUFFIXES:
        boxes = read_raven(query, species=species)
    elif query.suffix.lower() == ".csv":
        boxes = read_boxes(query, label=1)
    else:
        raise InputError(f"--query {query}: give a label CSV (recording_id,species_id,...), a Raven selection table "
                         "(.txt) or an audio clip (FLAC, WAV, MP3, OGG)")
    if species_id is not None:
        boxes = [b for b in boxes if b.species_id == species_id]
    if not boxes:
        raise InputError(f"--query {query}: no boxes" + (f" of species {species_id}" if species_id is not None else ""))
    if audio_root is None:
        raise InputError(f"--query {query} names recordings: give --query-audio DIR where they are")
    if Path(audio_root).is_file():  # the recording of a selection table, whatever its name
        files = {b.recording_id: Path(audio_root) for b in boxes}
        return [Query(b.species_id, b.songtype_id, files[b.recording_id], b.t_min_s, b.t_max_s, b.f_min_hz, b.f_max_hz,
                      None, f"{Path(audio_root).stem}@{b.t_min_s:.2f}s") for b in boxes]
    files = find_recordings_by_id(audio_root)
    missing = sorted({b.recording_id for b in boxes} - set(files))
    if missing:
        raise InputError(f"--query {query}: no audio under {audio_root} for recording(s) {', '.join(missing[:10])}"
                         + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    return [Query(b.species_id, b.songtype_id, files[b.recording_id], b.t_min_s, b.t_max_s, b.f_min_hz, b.f_max_hz,
                  b.recording_id, f"{b.recording_id}@{b.t_min_s:.2f}s") for b in boxes]


def query_vectors(queries: list[Query], *, embedder: Embedder) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors (m, dim), owner (m,))``: every query's vectors and the query each came from."""
    window_s, rate = float(embedder.window_s), int(embedder.sample_rate_hz)
    windows, owner = [], []
    for number, query in enumerate(queries):
        try:
            duration_s = probe_audio(query.path).duration_s
        except AudioError as exc:
            raise InputError(f"query {query.name}: {exc}") from None
        for start in _window_starts(query.t_min_s, query.t_max_s, window_s=window_s, duration_s=duration_s):
            windows.append(load_audio(query.path, sample_rate_hz=rate, t_start_s=start, duration_s=window_s))
            owner.append(number)
    vectors = np.concatenate([np.asarray(embedder.embed(np.stack(windows[i:i + embedder.batch_size])), dtype=np.float32)
                              for i in range(0, len(windows), embedder.batch_size)])
    return vectors, np.asarray(owner)


def _window_starts(t_min_s: float, t_max_s: float, *, window_s: float, duration_s: float) -> list[float]:
    latest = max(0.0, duration_s - window_s)
    if t_max_s - t_min_s <= window_s:
        return [min(max(0.0, (t_min_s + t_max_s - window_s) / 2), latest)]
    count = int(np.ceil((t_max_s - t_min_s - window_s) / (window_s / 2))) + 1
    return [min(t_min_s + i * window_s / 2, latest) for i in range(count)]
