"""On-disk cache of decoded, resampled recordings, so training epochs don't re-decode FLAC.

Each recording becomes one ``.npy`` file of 16-bit samples at the target rate (the precision
of the 16-bit FLAC it came from, at half the disk of float32), opened as a memmap so crops
cost a page read. Entries are keyed by the source's absolute path and the target rate;
a JSON sidecar remembers the source's size and mtime, and an entry whose source changed is
stale: it is detected on access and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .audio import load_audio, n_samples, probe_audio
from ..errors import AudioError

_FORMAT = "int16-v1"
_SCALE = 32767.0


class AudioCache:
    """Decoded-audio cache rooted at ``root`` for one target ``sample_rate_hz``."""

    def __init__(self, root: str | Path, *, sample_rate_hz: int):
        self.root = Path(root)
        self.sample_rate_hz = int(sample_rate_hz)
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        # Open memmaps by source, with the (size, mtime) they were opened at: a training epoch
        # reads thousands of crops from a few hundred recordings, and re-checking the sidecar
        # JSON on every crop costs more than the crop.
        self._open: dict[Path, tuple[tuple, Path, np.ndarray]] = {}

    def _entry(self, source: Path) -> tuple[Path, Path]:
        digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:20]
        stem = self.root / f"{digest}_{self.sample_rate_hz}"
        return stem.with_suffix(".npy"), stem.with_suffix(".json")

    @staticmethod
    def _fingerprint(source: Path) -> dict:
        stat = source.stat()
        return {"path": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def is_fresh(self, source: str | Path) -> bool:
        source = Path(source)
        data_path, meta_path = self._entry(source)
        if not (data_path.is_file() and meta_path.is_file() and source.is_file()):
            return False
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return (meta.get("source") == self._fingerprint(source) and meta.get("sample_rate_hz") == self.sample_rate_hz
                and meta.get("format") == _FORMAT)

    def get(self, source: str | Path) -> np.ndarray:
        """The whole recording at the cache's rate, as a read-only int16 memmap (full scale 32767)."""
        source = Path(source)
        try:
            stat = source.stat()
        except OSError:
            raise AudioError(f"{source}: audio file not found") from None
        opened = self._open.get(source)
        if opened is not None and opened[0] == self._stamp(stat, opened[1]):
            self.hits += 1
            return opened[2]
        data_path, meta_path = self._entry(source)
        if self.is_fresh(source):
            self.hits += 1
            return self._remember(source, stat, meta_path, np.load(data_path, mmap_mode="r", allow_pickle=False))
        self.misses += 1
        signal = load_audio(source, sample_rate_hz=self.sample_rate_hz)
        pcm = np.clip(np.round(signal * _SCALE), -32768, 32767).astype(np.int16)
        self._atomic_write(data_path, lambda handle: np.save(handle, pcm))
        meta = {"source": self._fingerprint(source), "sample_rate_hz": self.sample_rate_hz, "format": _FORMAT}
        self._atomic_write(meta_path, lambda handle: handle.write(json.dumps(meta).encode()))
        return self._remember(source, stat, meta_path, np.load(data_path, mmap_mode="r", allow_pickle=False))

    @staticmethod
    def _stamp(stat, meta_path: Path) -> tuple:
        """What must not change for an open entry to stay valid: the source and the sidecar."""
        try:
            return stat.st_size, stat.st_mtime_ns, meta_path.stat().st_mtime_ns
        except OSError:
            return ()

    def _remember(self, source: Path, stat, meta_path: Path, data: np.ndarray) -> np.ndarray:
        if len(self._open) >= 4096:
            self._open.clear()
        self._open[source] = (self._stamp(stat, meta_path), meta_path, data)
        return data

    def load(self, source: str | Path, *, t_start_s: float = 0.0, duration_s: float | None = None) -> np.ndarray:
        """Like :func:`load_audio`, served from the cache (zero-padded past the end)."""
        full = self.get(source)
        start = n_samples(t_start_s, self.sample_rate_hz)
        if t_start_s < 0 or start >= full.shape[0]:
            raise AudioError(f"{source}: crop start {t_start_s:.3f} s is outside the recording")
        if duration_s is None:
            return full[start:].astype(np.float32) / _SCALE
        length = n_samples(duration_s, self.sample_rate_hz)
        out = np.zeros(length, dtype=np.float32)
        piece = full[start : start + length]
        out[: piece.shape[0]] = piece / _SCALE
        return out

    def warm(self, sources: list[Path]) -> int:
        """Decode every stale or missing source; returns how many were (re)built."""
        built = 0
        for source in sources:
            if not self.is_fresh(source):
                probe_audio(source)
                self.get(source)
                built += 1
        return built

    def prune(self) -> int:
        """Delete entries whose source vanished or changed; returns how many were removed."""
        removed = 0
        for meta_path in self.root.glob(f"*_{self.sample_rate_hz}.json"):
            try:
                source = Path(json.loads(meta_path.read_text())["source"]["path"])
            except (OSError, json.JSONDecodeError, KeyError, TypeError):
                source = None
            if source is None or not self.is_fresh(source):
                meta_path.with_suffix(".npy").unlink(missing_ok=True)
                meta_path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _atomic_write(self, target: Path, write) -> None:
        # A crash mid-write must never leave a truncated entry that looks valid.
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
