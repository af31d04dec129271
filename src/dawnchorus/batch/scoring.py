"""The one interface every detector offers the batch engine, and the adapter for window scorers.

A ``WindowScorer`` maps a batch of fixed-length windows to one row of numbers each: species
probabilities (a CNN run, a head on embeddings) or an embedding vector. A ``ChunkScorer`` is
what the engine drives: it receives a file piece by piece (``samples`` from sample
``offset``, at its own rate) and returns rows for everything that *starts* in its own span
``[offset, own_until)``; the engine gives each chunk ``overlap_s`` of audio beyond that span,
so nothing is cut at a chunk edge. ``WindowChunks`` turns a window scorer into a chunk
scorer; template matching is a chunk scorer of its own.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import pandas as pd

from ..data.audio import n_samples, window_starts_between

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

    def score_chunk(self, samples: np.ndarray, *, offset: int, own_until: int, n_total: int) -> pd.DataFrame:
        starts = window_starts_between(max(n_total, self.window), window=self.window, hop=self.hop, first=offset,
                                       stop=own_until)
        if starts.size == 0:
            return self._frame(starts, np.zeros((0, len(self.scorer.columns or ()))), n_total)
        need = int(starts[-1] - offset + self.window)
        if samples.shape[0] < need:  # only a file shorter than one window, or a header that over-promised
            samples = np.pad(samples, (0, need - samples.shape[0]))
        local = starts - offset
        outputs = []
        for first in range(0, local.size, self.scorer.batch_size):
            batch = np.stack([samples[s : s + self.window] for s in local[first : first + self.scorer.batch_size]])
            outputs.append(np.asarray(self.scorer.score(batch), dtype=np.float32))
        return self._frame(starts, np.concatenate(outputs), n_total)

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
