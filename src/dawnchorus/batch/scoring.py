"""The one interface every detector offers the batch engine, and the adapter for window scorers.

A ``WindowScorer`` maps a batch of fixed-length windows to one row of numbers each: species
probabilities (a CNN run, a head on embeddings) or an embedding vector. A ``ChunkScorer`` is
what the engine drives: it receives a file piece by piece (``samples`` from sample
``offset``, at its own rate) and returns rows for everything that *starts* in its own span
``[offset, own_until)``; the engine gives each chunk ``overlap_s`` of audio beyond that span,
so nothing is cut at a chunk edge. ``WindowChunks`` turns a window scorer into a chunk
scorer; template matching is a chunk scorer of its own. A chunk scorer may also offer
``score_chunks`` (several chunks, of any files, in one call), ``count_windows`` and
``batch_windows`` (how many windows a call should hold): the engine then groups short chunks
so the model sees full batches.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from ..data.audio import n_samples, window_starts_between
from ..stages import timed

VECTOR_COLUMN = "vector"


class WindowScorer(Protocol):
    sample_rate_hz: int
    window_s: float
    hop_s: float
    batch_size: int
    columns: Sequence[str] | None  # names of the output columns; None: one vector column (embeddings)

    def score(self, windows: np.ndarray) -> np.ndarray:
        """``(n, window samples)`` float32 -> ``(n, k)`` float32."""

    def fingerprint(self) -> dict:
        """Everything that changes the output (model files' digests, settings), for resume checks."""


class ChunkScorer(Protocol):
    sample_rate_hz: int
    overlap_s: float
    step_s: float  # chunk lengths are made a multiple of this

    def score_chunk(self, samples: np.ndarray, *, offset: int, own_until: int, n_total: int) -> pd.DataFrame: ...

    def finish(self, rows: pd.DataFrame) -> pd.DataFrame: ...

    def fingerprint(self) -> dict: ...


class WindowChunks:
    """A window scorer driven chunk by chunk: the file's windows are those of the whole file
    (``window_starts``: every hop, the last one ending at the end), each scored in the chunk
    that holds its start, so chunked and whole-file reading give the same windows."""

    def __init__(self, scorer: WindowScorer):
        self.scorer = scorer
        self.sample_rate_hz = scorer.sample_rate_hz
        self.window = n_samples(scorer.window_s, scorer.sample_rate_hz)
        self.hop = n_samples(scorer.hop_s, scorer.sample_rate_hz)
        self.overlap_s = self.window / self.sample_rate_hz
        self.step_s = self.hop / self.sample_rate_hz

    def fingerprint(self) -> dict:
        return {"window_s": self.scorer.window_s, "hop_s": self.scorer.hop_s, **self.scorer.fingerprint()}

    def to(self, device) -> "WindowChunks":
        """Move the window scorer to ``device`` when it runs on one (a CNN run); others stay as they are."""
        if hasattr(self.scorer, "to"):
            self.scorer.to(device)
        return self

    @property
    def batch_windows(self) -> int:
        """Windows per call of the model: the engine hands over chunks (of several files) until they add up to this."""
        return self.scorer.batch_size

    def count_windows(self, *, offset: int, own_until: int, n_total: int) -> int:
        """How many windows start in ``[offset, own_until)`` of a file of ``n_total`` samples."""
        return int(self._starts(offset, own_until, n_total).size)

    def _starts(self, offset: int, own_until: int, n_total: int) -> np.ndarray:
        return window_starts_between(max(n_total, self.window), window=self.window, hop=self.hop, first=offset, stop=own_until)

    def score_chunk(self, samples: np.ndarray, *, offset: int, own_until: int, n_total: int) -> pd.DataFrame:
        return self.score_chunks([(samples, offset, own_until, n_total)])[0]

    def score_chunks(self, chunks: Sequence[tuple[np.ndarray, int, int, int]]) -> list[pd.DataFrame]:
        """``score_chunk`` for each ``(samples, offset, own_until, n_total)``, their windows scored
        together in batches of the model's size, so short files fill batches too."""
        plans, pieces = [], []
        with timed("windows"):
            for samples, offset, own_until, n_total in chunks:
                starts = self._starts(offset, own_until, n_total)
                plans.append((starts, n_total))
                if starts.size == 0:
                    continue
                need = int(starts[-1] - offset + self.window)
                if samples.shape[0] < need:  # only a file shorter than one window, or a header that over-promised
                    samples = np.pad(samples, (0, need - samples.shape[0]))
                pieces.append(sliding_window_view(samples, self.window)[starts - offset])  # a gather, no loop per window
            windows = np.concatenate(pieces) if pieces else np.zeros((0, self.window), np.float32)
        outputs = [np.asarray(self.scorer.score(windows[first : first + self.scorer.batch_size]), dtype=np.float32)
                   for first in range(0, len(windows), self.scorer.batch_size)]
        width = len(self.scorer.columns) if self.scorer.columns is not None else 0
        values = np.concatenate(outputs) if outputs else np.zeros((0, width), np.float32)
        frames, first = [], 0
        with timed("rows"):
            for starts, n_total in plans:
                frames.append(self._frame(starts, values[first : first + starts.size], n_total))
                first += starts.size
        return frames

    def _frame(self, starts: np.ndarray, values: np.ndarray, n_total: int) -> pd.DataFrame:
        rate = self.sample_rate_hz
        # a file shorter than one window is scored zero-padded, but its window ends where the file does
        ends = np.minimum(starts + self.window, n_total) if n_total > 0 else starts + self.window
        frame = pd.DataFrame({"t_start_s": starts / rate, "t_end_s": ends / rate})
        if self.scorer.columns is None:
            frame[VECTOR_COLUMN] = list(values) if len(values) else pd.Series([], dtype=object)
            return frame
        return pd.concat([frame, pd.DataFrame(values, columns=list(self.scorer.columns))], axis=1)

    def finish(self, rows: pd.DataFrame) -> pd.DataFrame:
        return rows


def as_chunk_scorer(scorer) -> ChunkScorer:
    return scorer if hasattr(scorer, "score_chunk") else WindowChunks(scorer)
