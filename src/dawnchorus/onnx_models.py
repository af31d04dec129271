"""Trained CNN runs as ONNX graphs, and a window scorer that runs them with ONNX Runtime.

An export is two graphs. ``model.onnx`` maps the front end's images ``(n, channels, mels,
frames)`` to species probabilities ``(n, species)``: every fold of every run, sigmoid, song
types folded into species and the mean, exactly what ``infer.CnnScorer`` computes.
``model.frontend.onnx`` maps raw windows ``(n, samples)`` at the run's rate to those images.

Why two: on CPU, ONNX Runtime runs the network about 4x faster than torch, but its STFT
operator runs the front end about 3x slower than torch's FFT (benchmarks/RESULTS.md, "ONNX").
So ``predict --runtime onnx`` computes the front end in torch and the network in ONNX Runtime,
while the two files together still let any ONNX runtime, in any language, reproduce our scores
from audio alone. Both carry metadata: rate, window, hop, species columns, front-end settings
and the digests of the weights they were made from.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .atomic import atomic_write_bytes
from .config import FeatureConfig
from .errors import InputError
from .features import FrontEnd
from .infer import LoadedRun, load_run
from .runs import file_digest, resolve_round
from .stages import timed

ONNX_FILE = "model.onnx"
_INSTALL = "pip install onnxruntime onnx onnxscript (they come with dawnchorus; reinstall it if they are missing)"


class EnsembleGraph(nn.Module):
    """``CnnScorer.score`` after the front end: the mean over runs of the mean over folds of
    the clip probabilities of the front end's images, folded to species."""

    def __init__(self, runs: Sequence[LoadedRun]):
        super().__init__()
        self.runs = list(runs)
        self.models = nn.ModuleList([copy.deepcopy(m).eval() for run in self.runs for m in run.models])
        self.counts = [len(run.models) for run in self.runs]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        total, first = None, 0
        for run, count in zip(self.runs, self.counts):
            clip = None
            for model in self.models[first : first + count]:
                probs = torch.sigmoid(model.head(model.backbone.forward_features(images))["clip"].float())
                clip = probs if clip is None else clip + probs
            first += count
            folded = run.layout.fold(clip / count)
            total = folded if total is None else total + folded
        return total / len(self.runs)


class _FrontEndGraph(nn.Module):
    def __init__(self, frontend: FrontEnd):
        super().__init__()
        self.frontend = frontend

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.frontend.images(windows)  # no CPU batching branch in the graph: its batch size is free


def weights_digests(run_dirs: Sequence[Path]) -> dict[str, str]:
    """``run<i>/fold<k>`` -> digest of resolved run folders: relative, so a run folder that is moved
    or copied keeps its export."""
    return {f"run{i}/{p.parent.name}": file_digest(p) for i, run_dir in enumerate(run_dirs)
            for p in sorted(Path(run_dir).glob("fold*/model.safetensors"))}


def frontend_path(model_path: str | Path) -> Path:
    """Where the front-end graph of ``model_path`` lives: ``model.onnx`` -> ``model.frontend.onnx``."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}.frontend{model_path.suffix or '.onnx'}")


def _to_onnx(module: nn.Module, example: torch.Tensor, *, input_name: str, output_name: str, opset: int, metadata: dict,
             source) -> bytes:
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset, input_names=[input_name],
                                        output_names=[output_name], dynamic_shapes=({0: torch.export.Dim("windows")},),
                                        verbose=False)
    except Exception as exc:  # the exporter raises many types; the message says what it could not translate
        raise InputError(f"{source}: cannot export to ONNX ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None
    model = program.model_proto
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def export_onnx(*, run_dirs: Sequence[str | Path], out_path: str | Path, pseudo_round: int | None = None,
                opset: int = 18) -> Path:
    """Write the runs' network graph to ``out_path`` and their front end beside it
    (:func:`frontend_path`), each atomically; returns ``out_path``."""
    if not run_dirs:
        raise InputError("give at least one run directory (--run)")
    runs = [load_run(r, device=torch.device("cpu"), pseudo_round=pseudo_round) for r in run_dirs]
    first = runs[0]
    for run in runs[1:]:
        if run.species.species_ids != first.species.species_ids or run.config.features != first.config.features \
                or run.config.infer.window_s != first.config.infer.window_s:
            raise InputError(f"{run.run_dir}: its species, features or window differ from {first.run_dir}'s; one graph "
                             "holds runs that read the same windows")
    infer, features = first.config.infer, first.config.features
    frontend = FrontEnd(features).eval()
    windows = torch.zeros(2, int(round(infer.window_s * features.sample_rate_hz)))
    path = Path(out_path)
    metadata = {"sample_rate_hz": str(features.sample_rate_hz), "window_s": str(infer.window_s), "hop_s": str(infer.hop_s),
                "batch_size": str(infer.batch_size), "species_columns": json.dumps(first.species.columns),
                "features": json.dumps(dataclasses.asdict(features)), "weights": json.dumps(weights_digests([r.run_dir for r in runs])),
                "producer": "dawnchorus"}
    front = _to_onnx(_FrontEndGraph(frontend), windows, input_name="windows", output_name="images", opset=opset,
                     metadata={**metadata, "graph": "frontend"}, source=run_dirs[0])
    with torch.no_grad():
        images = frontend(windows)
    network = _to_onnx(EnsembleGraph(runs).eval(), images, input_name="images", output_name="scores", opset=opset,
                       metadata={**metadata, "graph": "network"}, source=run_dirs[0])
    atomic_write_bytes(frontend_path(path), front)
    return atomic_write_bytes(path, network)  # last: it is what marks the export complete


def read_onnx_metadata(path: str | Path, *, session=None) -> dict:
    """The export's metadata (from ``session`` when the caller already opened the file)."""
    session = session if session is not None else _session(Path(path), threads=1)
    raw = session.get_modelmeta().custom_metadata_map
    if raw.get("producer") != "dawnchorus":
        raise InputError(f"{path}: not an ONNX model written by 'dawnchorus export'")
    return {"sample_rate_hz": int(raw["sample_rate_hz"]), "window_s": float(raw["window_s"]), "hop_s": float(raw["hop_s"]),
            "batch_size": int(raw["batch_size"]), "species_columns": json.loads(raw["species_columns"]),
            "features": FeatureConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(raw["features"]).items()}),
            "weights": json.loads(raw["weights"]), "graph": raw.get("graph", "")}


def _session(path: Path, *, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError(f"--runtime onnx needs onnxruntime: {_INSTALL}") from None
    if not path.is_file():
        raise InputError(f"{path}: ONNX model not found; write one with 'dawnchorus export --run RUN --out {path}'")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = max(1, threads), 1
    # idle threads sleep instead of spinning: the torch front end runs between two calls on the same cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime reports bad files with its own exception types
        raise InputError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None


def onnx_for_runs(run_dirs: Sequence[str | Path], *, pseudo_round: int | None = None) -> Path:
    """``RUN/model.onnx`` for one run, exported now if missing or made from other weights."""
    if len(run_dirs) != 1:
        raise InputError("--runtime onnx predicts with one run (its RUN/model.onnx); ensembles of runs predict on the torch "
                         "runtime, or export them into one graph with 'dawnchorus export --run A --run B --out FILE.onnx'")
    run_dir = resolve_round(run_dirs[0], pseudo_round)
    path = run_dir / ONNX_FILE  # up to date when made from these weights: checked without building the models
    if not path.is_file() or read_onnx_metadata(path)["weights"] != weights_digests([run_dir]) \
            or not frontend_path(path).is_file():
        export_onnx(run_dirs=run_dirs, out_path=path, pseudo_round=pseudo_round)
    return path


class OnnxScorer:
    """An exported network as a window scorer (``batch.scoring.WindowScorer``) on ONNX Runtime's
    CPU provider, fed by the torch front end its metadata describes."""

    def __init__(self, *, model_path: str | Path, threads: int = 1, window_s: float | None = None, hop_s: float | None = None,
                 batch_size: int | None = None):
        self.model_path = Path(model_path)
        self.session = _session(self.model_path, threads=threads)
        meta = read_onnx_metadata(self.model_path, session=self.session)
        if meta["graph"] != "network":
            raise InputError(f"{self.model_path}: a front-end graph; give the network file (without .frontend)")
        self.frontend = FrontEnd(meta["features"]).eval()
        if window_s is not None and abs(window_s - meta["window_s"]) > 1e-9:
            raise InputError(f"{self.model_path}: exported for {meta['window_s']} s windows; --window-s {window_s} needs a "
                             "new export (or the torch runtime)")
        self.sample_rate_hz, self.window_s = meta["sample_rate_hz"], meta["window_s"]
        self.hop_s, self.batch_size = float(hop_s or meta["hop_s"]), int(batch_size or meta["batch_size"])
        self.columns, self.weights = meta["species_columns"], meta["weights"]

    def score(self, windows: np.ndarray) -> np.ndarray:
        with torch.no_grad(), timed("spectrogram"):  # on torch's threads, which are the process's to set (not ours)
            images = self.frontend(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))).numpy()
        with timed("network"):
            return self.session.run(None, {"images": images})[0].astype(np.float32)

    def fingerprint(self) -> dict:
        return {"detector": "cnn", "runtime": "onnx", "sample_rate_hz": self.sample_rate_hz, "weights": self.weights}
