"""The archive jobs: predict, embed and match, each a scorer handed to the one batch engine.

Each function builds its detector's scorer and output writers and calls ``engine.run_job``;
the job folder then holds ``job.json`` (settings and their fingerprint), ``manifest.parquet``,
``journal.jsonl``, ``parts/`` (one Parquet file of rows per recording, readable together
with ``engine.read_parts``), ``failed.csv`` and the chosen outputs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..atomic import atomic_write_text
from ..errors import InputError
from .engine import DEFAULT_CHUNK_S, JobSummary, RayOptions, run_job
from .scoring import WindowChunks

DEFAULT_FORMATS = ("submission", "summary", "raven")
BANDS_FILE = "species_bands.csv"


def _job_options(channel, workers, chunk_s, retry_failed, force, progress, ray=None) -> dict:
    return dict(channel=channel, workers=workers, chunk_s=chunk_s, retry_failed=retry_failed, force=force, progress=progress,
                ray=ray)


def predict_archive(*, run_dirs: Sequence[str | Path], audio_root: str | Path, out_dir: str | Path,
                    formats: Sequence[str] = DEFAULT_FORMATS, threshold: float = 0.5, window_s: float | None = None,
                    hop_s: float | None = None, batch_size: int | None = None, aggregate: str | None = None,
                    pseudo_round: int | None = None, device: str = "auto", embedder=None, threads: int = 1,
                    channel: int | None = None, workers: int = 1, chunk_s: float = DEFAULT_CHUNK_S,
                    retry_failed: bool = False, force: bool = False, progress: bool = False,
                    ray: RayOptions | None = None, runtime: str = "torch",
                    threshold_precision: float | None = None) -> JobSummary:
    """Score every recording of an archive with trained runs (CNN runs, or one embedding-head run);
    ``runtime="onnx"`` runs a CNN run's exported graph on ONNX Runtime (``threads`` CPU threads).

    Per-window scores land in ``parts/``; ``formats`` picks the outputs written from them
    (``batch.outputs.FORMATS``); detections are windows scoring at least ``threshold``, or with
    ``threshold_precision`` each species' threshold for that precision (``thresholds``, from
    reviewed detections; species without one keep ``threshold``).
    """
    from ..embed_runs import is_embedding_run
    from ..scores import check_aggregation
    from .outputs import make_writers

    if not run_dirs:
        raise InputError("give at least one run directory (--run)")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"--threshold must be a score between 0 and 1, not {threshold}")
    if any(is_embedding_run(r) for r in run_dirs):
        if len(run_dirs) > 1 or window_s or hop_s:
            raise InputError("an embedding-head run predicts alone and with its own windows; combine submissions with 'dawnchorus ensemble'")
        from ..embed_runs import HeadScorer

        if runtime != "torch":
            raise InputError("--runtime onnx is for CNN runs; an embedding-head run scores with its own embedder")
        scorer = HeadScorer(run_dir=run_dirs[0], embedder=embedder, pseudo_round=pseudo_round, threads=threads)
        species = scorer.species
        default_aggregate, top_k = _head_aggregation(run_dirs[0])
    else:
        from ..infer import RUNTIMES, CnnScorer, load_run
        from ..models import resolve_device

        # GPU actors on Ray move the driver's CPU copy onto their own GPU: the driver needs none
        torch_device = resolve_device("cpu" if ray is not None and ray.gpus_per_scorer > 0 else device)
        runs = [load_run(r, device=torch_device, pseudo_round=pseudo_round) for r in run_dirs]
        if runtime == "onnx":
            from ..onnx_models import OnnxScorer, onnx_for_runs

            scorer = OnnxScorer(model_path=onnx_for_runs(run_dirs, pseudo_round=pseudo_round), threads=threads,
                                window_s=window_s, hop_s=hop_s, batch_size=batch_size)
        elif runtime in RUNTIMES:
            scorer = CnnScorer(runs=runs, window_s=window_s, hop_s=hop_s, batch_size=batch_size, device=torch_device)
        else:
            raise InputError(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        infer = runs[0].config.infer
        if infer.frame_step_s is not None or infer.extra_window_s or infer.tta_shifts > 1:
            warnings.warn(f"{run_dirs[0]}: predicts on a frame grid (frame step, extra windows or TTA) in memory; an "
                          "archive job scores one row per window (the clip output); use --out FILE.csv for the grid",
                          stacklevel=2)
        default_aggregate, top_k = infer.aggregate, infer.top_k
        species = runs[0].species
    aggregate = aggregate or default_aggregate
    check_aggregation(aggregate, top_k)
    bands = _bands(run_dirs[0])
    settings = {"runs": [str(Path(r).resolve()) for r in run_dirs], "pseudo_round": pseudo_round}
    if threshold_precision is not None:
        threshold = _precision_thresholds(run_dirs[0], species, precision=threshold_precision, fallback=threshold)

    def outputs():
        return make_writers(formats=list(formats), out_dir=Path(out_dir), audio_root=Path(audio_root), species=species,
                            threshold=threshold, bands=bands, aggregate=aggregate, top_k=top_k)

    outputs()  # an unknown format fails now, not after days of scoring
    return run_job(command="predict", audio_root=audio_root, out_dir=out_dir, scorer=WindowChunks(scorer), settings=settings,
                   make_outputs=outputs, **_job_options(channel, workers, chunk_s, retry_failed, force, progress, ray))


def _precision_thresholds(run_dir, species, *, precision: float, fallback: float) -> dict[int, float]:
    from ..thresholds import precision_thresholds

    found, reasons = precision_thresholds(run_dir, precision=precision, species_ids=species.species_ids)
    if reasons:
        listed = "; ".join(f"{species_id}: {why}" for species_id, why in sorted(reasons.items())[:10])
        warnings.warn(f"no threshold for precision {precision:g} for {len(reasons)} species, which keep --threshold "
                      f"{fallback:g} ({listed}{'; ...' if len(reasons) > 10 else ''})", stacklevel=3)
    return {species_id: found.get(species_id, fallback) for species_id in species.species_ids}


def _head_aggregation(run_dir) -> tuple[str, int]:
    from ..config import load_any_config

    config = load_any_config(Path(run_dir) / "config.yaml")
    return config.aggregate, config.top_k


def _bands(run_dir) -> dict[int, tuple[float, float]] | None:
    from ..data.bands import read_bands_csv

    path = Path(run_dir) / BANDS_FILE
    return read_bands_csv(path) if path.is_file() else None


def write_raven_for_windows(*, windows: pd.DataFrame, audio_root: str | Path, out_dir: str | Path, species, threshold: float,
                            run_dir: str | Path | None = None) -> list[Path]:
    """Raven selection tables for an in-memory window table (``predict --out FILE.csv --raven DIR``):
    the same writer as archive jobs, the recordings found under ``audio_root`` by their ids."""
    from ..data.audio import find_audio_files
    from .manifest import describe_file
    from .outputs import RavenTables

    audio_root = Path(audio_root)
    paths = find_audio_files(audio_root, ids="path")
    writer = RavenTables(out_dir=out_dir, audio_root=audio_root, species=species, threshold=threshold,
                         bands=_bands(run_dir) if run_dir is not None else None)
    for recording_id, rows in windows.groupby("recording_id", sort=False):
        relative = paths[recording_id].relative_to(audio_root).as_posix()
        entry = describe_file(audio_root, relative, recording_id)
        writer.add(entry, rows.assign(path=relative))
    return writer.close()


def embed_archive(*, audio_root: str | Path, out_dir: str | Path, embedder=None, hop_s: float = 1.5, threads: int = 1,
                  channel: int | None = None, workers: int = 1, chunk_s: float = DEFAULT_CHUNK_S,
                  retry_failed: bool = False, force: bool = False, progress: bool = False,
                  ray: RayOptions | None = None, outputs=None) -> JobSummary:
    """One embedding per window for every recording of an archive (``parts/``: t_start_s, t_end_s, vector);
    ``outputs`` makes the job's output writers (``search.index`` passes its index)."""
    from ..embeddings import EmbedderScorer, resolve_embedder

    scorer = EmbedderScorer(resolve_embedder(embedder, threads=threads), hop_s=hop_s)
    return run_job(command="embed", audio_root=audio_root, out_dir=out_dir, scorer=WindowChunks(scorer), settings={},
                   make_outputs=outputs, **_job_options(channel, workers, chunk_s, retry_failed, force, progress, ray))


class CandidatesCsv:
    """``candidates.csv`` in the columns of ``dawnchorus match`` (plus ``path``), for the review page."""

    def __init__(self, *, out_path: Path):
        self.out_path, self.frames = Path(out_path), []

    def add(self, entry, rows: pd.DataFrame) -> None:
        if len(rows):
            self.frames.append(rows)

    def close(self) -> list[Path]:
        from ..templates import CANDIDATE_COLUMNS

        columns = list(CANDIDATE_COLUMNS) + ["path"]
        table = pd.concat(self.frames, ignore_index=True)[columns] if self.frames else pd.DataFrame(columns=columns)
        return [atomic_write_text(self.out_path, table.to_csv(index=False, float_format="%.4f"))]


def match_archive(*, templates, audio_root: str | Path, out_dir: str | Path, template_audio_dir: str | Path | None = None,
                  threshold: float | None = None, top_n: int | None = None, channel: int | None = None, workers: int = 1,
                  chunk_s: float = DEFAULT_CHUNK_S, retry_failed: bool = False, force: bool = False,
                  progress: bool = False, ray: RayOptions | None = None) -> JobSummary:
    """Template matching over an archive; candidates in ``OUT/candidates.csv`` (``dawnchorus review`` reads it)."""
    from ..templates import DEFAULT_THRESHOLD, TemplateScorer, read_templates, template_patches

    if isinstance(templates, (str, Path)):
        templates = read_templates(templates)
    if not templates:
        raise InputError("no templates given")
    source = Path(template_audio_dir) if template_audio_dir is not None else Path(audio_root)
    first = template_patches(templates, audio_dir=source)
    rate = max(p.sample_rate_hz for p in first)
    patches = first if all(p.sample_rate_hz == rate for p in first) else template_patches(templates, audio_dir=source,
                                                                                        sample_rate_hz=rate)
    scorer = TemplateScorer(patches=patches, threshold=DEFAULT_THRESHOLD if threshold is None else threshold, top_n=top_n)
    return run_job(command="match", audio_root=audio_root, out_dir=out_dir, scorer=scorer, settings={},
                   make_outputs=lambda: [CandidatesCsv(out_path=Path(out_dir) / "candidates.csv")],
                   **_job_options(channel, workers, chunk_s, retry_failed, force, progress, ray))
