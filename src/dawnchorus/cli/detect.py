"""Commands that train and run detectors: CNN runs, embedding heads, pseudo-label rounds, prediction, window lengths."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import InputError
from ._app import ENGINE_OPTION, RAY_ADDRESS_OPTION, ArchiveJobOptions, app, archive_job_options, friendly_errors, report_job
from .scores import postprocess_and_report


@app.command()
@friendly_errors
def train(
    data: Path = typer.Option(..., "--data", help="Dataset directory in the Kaggle layout."),
    out: Path = typer.Option(..., "--out", help="Run directory for checkpoints, config, history and OOF predictions."),
    preset: str = typer.Option("templates-linear", "--preset", help="Preset name (templates-linear, cpu-small, gpu, embed-linear, embed-mlp) or a YAML config file (a run's config.yaml repeats it)."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config field: section.key=value (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    pseudo_rounds: Optional[int] = typer.Option(None, "--pseudo-rounds", help="Pseudo-label rounds after training (default: the config's pseudo.rounds)."),
    pseudo_audio: Optional[Path] = typer.Option(None, "--pseudo-audio", help="More recordings for the teacher to label, e.g. the test split."),
    embedding_cache: Optional[Path] = typer.Option(None, "--embedding-cache", help="Embedding presets: cache directory (default: RUN/embedding_cache)."),
    threads: int = typer.Option(1, "--threads", help="Head presets: CPU threads for template matching, BirdNET and the MLP."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="CNN presets: one run per seed, in OUT/seed{n} (e.g. 0,1,2); ensemble them with predict --run OUT/seed0 --run OUT/seed1 ..."),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    ray_cpus: int = typer.Option(1, "--ray-cpus-per-fold", help="--engine ray: CPUs (torch threads) each fold task reserves."),
    ray_gpus: float = typer.Option(0.0, "--ray-gpus-per-fold", help="--engine ray: GPUs each fold task reserves (e.g. 1)."),
):
    """Train the detector from TP/FP boxes (k-fold, masked loss), then any pseudo-label rounds.

    Presets templates-linear (the boxes' own calls, template matched; no extra needed) and
    embed-linear / embed-mlp (BirdNET embeddings, optional extra dawnchorus[birdnet]) train heads
    instead of a CNN; their --set keys have no section (--set c=0.05).

    Beyond one process: --engine ray trains every fold (of every seed) as a Ray task, and
    'torchrun --nproc-per-node N -m dawnchorus.cli train ...' trains each fold data-parallel
    over N processes (one per GPU); see docs/cluster.md.
    """
    from ..config import HeadConfig, load_any_config, with_overrides
    from ..distributed import ranks_from_env
    from ..pseudo import train_pseudo_rounds
    from ..sweep import RayTrainOptions, seed_runs, train_sweep

    saved = out / "config.yaml"
    config = load_any_config(saved if resume and saved.is_file() else preset)  # a run resumes with its own config
    if engine not in ("local", "ray"):
        raise InputError(f"--engine must be local or ray, not {engine!r}")
    if engine == "local" and (ray_address is not None or ray_cpus != 1 or ray_gpus):
        raise InputError("--ray-address, --ray-cpus-per-fold and --ray-gpus-per-fold need --engine ray")
    if isinstance(config, HeadConfig):
        if seeds or engine != "local":
            raise InputError("--seeds and --engine ray are for CNN presets; head presets train in seconds on one machine")
        _train_embedding_head(config, data=data, out=out, overrides=overrides, resume=resume, pseudo_rounds=pseudo_rounds,
                              pseudo_audio=pseudo_audio, cache=embedding_cache, threads=threads)
        return
    extra = [f"pseudo.rounds={pseudo_rounds}"] if pseudo_rounds is not None else []
    extra += [f"pseudo.audio_dir={pseudo_audio}"] if pseudo_audio is not None else []
    config = with_overrides(config, list(overrides) + extra)
    ranks = ranks_from_env()
    if ranks.active and config.pseudo.rounds > 0:
        raise InputError("pseudo-label rounds are not run under torchrun; train with pseudo.rounds=0, then run "
                         "'dawnchorus pseudo --run RUN' in one process")
    ray = RayTrainOptions(address=ray_address, cpus_per_fold=ray_cpus, gpus_per_fold=ray_gpus) if engine == "ray" else None
    runs = seed_runs(out_dir=out, config=config, seeds=_parse_seeds(seeds))
    for run_dir in train_sweep(data_dir=data, runs=runs, resume=resume, ray=ray, progress=ranks.is_main):
        if not ranks.is_main:
            continue
        typer.echo(f"trained: {run_dir}")
        if config.pseudo.rounds > 0:
            for round_dir in train_pseudo_rounds(run_dir=run_dir, data_dir=data, rounds=config.pseudo.rounds, progress=True):
                typer.echo(f"pseudo-label round: {round_dir}")


def _parse_seeds(text: Optional[str]) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--seeds {text!r}: give whole numbers separated by commas, e.g. 0,1,2") from None
    if not seeds:
        raise InputError("--seeds: give at least one seed, e.g. 0,1,2")
    return seeds


def _train_embedding_head(config, *, data: Path, out: Path, overrides: List[str], resume: bool, pseudo_rounds: Optional[int],
                          pseudo_audio: Optional[Path], cache: Optional[Path], threads: int) -> None:
    from ..config import with_head_overrides
    from ..embed_runs import train_embedding_head

    extra = [f"pseudo_rounds={pseudo_rounds}"] if pseudo_rounds is not None else []
    extra += [f"pseudo_audio_dir={pseudo_audio.resolve()}"] if pseudo_audio is not None else []
    config = with_head_overrides(config, list(overrides) + extra)
    run_dir = train_embedding_head(data_dir=data, out_dir=out, cache_dir=cache or out / "embedding_cache", config=config,
                                   threads=threads, resume=resume, progress=sys.stderr.isatty())
    typer.echo((run_dir / "history.csv").read_text().rstrip())
    typer.echo(f"trained: {run_dir}")


@app.command()
@friendly_errors
def pseudo(
    run: Path = typer.Option(..., "--run", help="Trained run directory (the first teacher)."),
    data: Path = typer.Option(..., "--data", help="The dataset directory the run was trained on."),
    rounds: int = typer.Option(1, "--rounds", help="Make sure rounds 1..N exist (finished ones are kept, an unfinished one resumes)."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="More recordings for the teacher to label, e.g. the test split."),
):
    """Pseudo-label rounds: the teacher labels every recording framewise, a student trains on it."""
    from ..pseudo import train_pseudo_rounds

    for round_dir in train_pseudo_rounds(run_dir=run, data_dir=data, rounds=rounds, audio_dir=audio, progress=True):
        typer.echo(f"pseudo-label round: {round_dir}")


@app.command()
@friendly_errors
@archive_job_options()
def predict(
    run: List[Path] = typer.Option(..., "--run", help="Run directory from 'dawnchorus train' (repeat to ensemble runs)."),
    audio: Path = typer.Option(..., "--audio", help="Directory (tree) of recordings (FLAC, WAV, MP3, OGG; symbolic links followed)."),
    out: Path = typer.Option(..., "--out", help="A job folder for an archive (resumable; outputs by --format), or a submission CSV (*.csv: recording_id,s0..sN, in memory, as for Kaggle)."),
    detections: Optional[Path] = typer.Option(None, "--detections", help="Also write per-window detections (Parquet)."),
    raven_dir: Optional[Path] = typer.Option(None, "--raven", help="Also write Raven selection tables per recording."),
    raven_threshold: float = typer.Option(0.5, "--raven-threshold", help="Score a window needs to appear in the Raven tables."),
    min_score: float = typer.Option(0.0, "--min-score", help="Drop detections below this score."),
    window_s: Optional[float] = typer.Option(None, "--window-s", help="Window length (default: the run's infer.window_s)."),
    hop_s: Optional[float] = typer.Option(None, "--hop-s", help="Window hop (default: the run's infer.hop_s)."),
    aggregate: Optional[str] = typer.Option(None, "--aggregate", help="max or topk_mean (default: the run's)."),
    frame_step_s: Optional[float] = typer.Option(None, "--frame-step-s", help="Framewise scores on this time grid (default: the run's infer.frame_step_s)."),
    extra_window_s: List[float] = typer.Option([], "--extra-window-s", help="Multi-scale: another window length, averaged on the frame grid (repeatable)."),
    tta_shifts: Optional[int] = typer.Option(None, "--tta-shifts", help="Test-time augmentation: passes with windows shifted by hop/N."),
    class_windows: bool = typer.Option(False, "--class-windows", help="Each species with its own window length, from 'dawnchorus scales' (RUN/class_windows.csv)."),
    smooth: int = typer.Option(1, "--smooth", help="Moving mean over this many consecutive windows (or frame steps) before aggregating."),
    pseudo_round: Optional[int] = typer.Option(None, "--round", help="Pseudo-label round to predict with (default: the last finished; 0 = the first model)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    prior: Optional[Path] = typer.Option(None, "--prior", help="CSV species_id,prevalence (or the built-in rfcx-host-paper): rescale the scores to these test prevalences (implies --postprocess)."),
    postprocess: Optional[bool] = typer.Option(None, "--postprocess/--no-postprocess", help="Rescale the scores to the test prevalences (--prior, else estimated: recordings where the first model's k best windows pass the run's threshold), taking the raw scores as calibrated at 0.5."),
    embedding_cache: Optional[Path] = typer.Option(None, "--embedding-cache", help="Embedding-head runs: cache directory (default: RUN/embedding_cache)."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for template matching, BirdNET and the ONNX runtime."),
    runtime: str = typer.Option("torch", "--runtime", help="CNN runs: torch, or onnx (the run's exported graph on ONNX Runtime; exported to RUN/model.onnx when missing)."),
    formats: List[str] = typer.Option([], "--format", help="Job folder outputs (repeatable or comma-separated): submission, summary, raven, raven-combined, audacity, birdnet (default: submission,summary,raven)."),
    threshold: float = typer.Option(0.5, "--threshold", help="Job folder: score a window needs to be a detection in the Raven, Audacity and BirdNET outputs."),
    threshold_precision: Optional[float] = typer.Option(None, "--threshold-precision", help="Job folder: each species' threshold for this precision (e.g. 0.9), from 'dawnchorus review calibrate' (RUN/thresholds.json); species without one keep --threshold."),
    job: ArchiveJobOptions = None,
):
    """Predict species presence for every recording (sliding windows, folds averaged).

    With --out DIR (not *.csv) the recordings are an archive: any folder tree, any length,
    processed in chunks, resumable, unreadable files listed in DIR/failed.csv.
    """
    from ..embed_runs import is_embedding_run
    from ..infer import detections_table, persistence_evidence
    from ..runs import resolve_round
    from ..submission import write_submission

    if out.suffix.lower() != ".csv":
        in_memory_only = {"--detections": detections, "--raven": raven_dir, "--frame-step-s": frame_step_s,
                          "--extra-window-s": extra_window_s, "--tta-shifts": tta_shifts, "--class-windows": class_windows,
                          "--smooth": smooth > 1, "--prior": prior, "--postprocess": postprocess}
        given = [name for name, value in in_memory_only.items() if value]
        if given:
            raise InputError(f"{', '.join(given)}: only for a submission CSV (--out FILE.csv); a job folder keeps every "
                             "window in DIR/parts and writes Raven tables with --format raven; post-process "
                             "DIR/submission.csv with 'dawnchorus postprocess'")
        from ..batch.jobs import predict_archive

        summary = predict_archive(run_dirs=run, audio_root=audio, out_dir=out, formats=split_formats(formats), threshold=threshold,
                                  threshold_precision=threshold_precision,
                                  window_s=window_s, hop_s=hop_s, aggregate=aggregate, pseudo_round=pseudo_round, device=device,
                                  threads=threads, runtime=runtime, **job.engine_kwargs())
        report_job(summary)
        return
    job_only = [*(["--format"] if formats else []), *job.given, *(["--threshold-precision"] if threshold_precision else [])]
    if job_only:
        raise InputError(f"{', '.join(job_only)}: only for job folders; give --out DIR instead of a .csv")
    if prior is not None and postprocess is False:
        raise InputError("--prior only has an effect with post-processing; drop --no-postprocess or --prior")
    if prior is not None:
        from ..data import read_prior_csv

        read_prior_csv(prior)  # a broken prior file should fail before a long prediction, not after
    if any(is_embedding_run(r) for r in run):
        cnn_only = {"--window-s": window_s, "--hop-s": hop_s, "--frame-step-s": frame_step_s, "--extra-window-s": extra_window_s,
                    "--tta-shifts": tta_shifts, "--class-windows": class_windows}
        given = [name for name, value in cnn_only.items() if value]
        if len(run) > 1 or given:
            raise InputError("an embedding-head run predicts alone and without CNN window options "
                             f"({', '.join(given) or 'several --run'}); combine submissions with 'dawnchorus ensemble'")
        if runtime != "torch":
            raise InputError("--runtime onnx is for CNN runs; an embedding-head run scores with its own embedder")
        from ..embed_runs import predict_embeddings

        result = predict_embeddings(run_dir=run[0], audio_dir=audio, cache_dir=embedding_cache or run[0] / "embedding_cache",
                                    threads=threads, pseudo_round=pseudo_round, aggregate=aggregate, progress=sys.stderr.isatty())
    else:
        from ..infer import predict as predict_run
        from ..multiscale import read_class_windows

        result = predict_run(run_dirs=run, audio_dir=audio, window_s=window_s, hop_s=hop_s, aggregate=aggregate,
                             frame_step_s=frame_step_s, extra_window_s=extra_window_s or None, tta_shifts=tta_shifts,
                             pseudo_round=pseudo_round, device=device, progress=sys.stderr.isatty(),
                             class_window_s=read_class_windows(run[0]) if class_windows else None, runtime=runtime,
                             threads=threads)
    submission, unsmoothed_windows = result.submission, result.windows
    if smooth > 1:
        from ..postprocess import smooth_windows
        from ..scores import aggregate_windows

        method, top_k = _run_aggregation(run[0], pseudo_round)
        method = aggregate or method
        smoothed = smooth_windows(result.windows, length=smooth, method="mean")
        submission = aggregate_windows(smoothed, species_columns=result.species.columns, method=method, top_k=top_k)
        result = dataclasses.replace(result, windows=smoothed)
    if postprocess or prior is not None:
        # Reference 0.5, not the run's mean out-of-fold score: it measured better on every model tried
        # (benchmarks/RESULTS.md); 'dawnchorus postprocess --run RUN' uses the out-of-fold reference.
        from ..priors import estimated_prior_options, threshold_from_run

        options = {"cc_threshold": threshold_from_run(run[0])}
        if prior is None:
            own_settings = not (window_s or hop_s or frame_step_s or extra_window_s or tta_shifts or class_windows)
            round_zero = all(resolve_round(r, pseudo_round) == Path(r) for r in run)
            known_windows = unsmoothed_windows if own_settings and round_zero else None
            if is_embedding_run(run[0]):
                from ..embed_runs import head_persistence_evidence

                evidence = head_persistence_evidence(run_dir=run[0], audio_dir=audio, windows=known_windows, threads=threads,
                                                     cache_dir=embedding_cache or run[0] / "embedding_cache",
                                                     progress=sys.stderr.isatty())
            else:
                evidence = persistence_evidence(run_dirs=run, audio_dir=audio, device=device, progress=sys.stderr.isatty(),
                                                windows=known_windows)
            if evidence is not None:
                _, k, threshold = evidence
                options = estimated_prior_options(run[0], evidence)
                adjusted = " (adjusted for the rule's out-of-fold rates)" if options["estimate"] == "acc" else ""
                typer.echo(f"estimating the test prevalence: recordings where a species' {k} best windows of the first "
                           f"model (round 0) all score over {threshold:.3f}{adjusted}")
        submission = postprocess_and_report(scores=submission, source="predictions", out=out, prior_path=prior, run_dir=None,
                                            **options)
    write_submission(out, submission)
    typer.echo(f"wrote {out} ({len(submission)} recordings)")
    if detections is not None or raven_dir is not None:
        species = result.species
        table = detections_table(result.windows, species=species, min_score=min_score)
        if detections is not None:
            detections.parent.mkdir(parents=True, exist_ok=True)
            table.to_parquet(detections, index=False)
            typer.echo(f"wrote {detections} ({len(table)} detections)")
        if raven_dir is not None:
            from ..batch.jobs import write_raven_for_windows

            written = write_raven_for_windows(windows=result.windows, audio_root=audio, out_dir=raven_dir, species=species,
                                              threshold=raven_threshold, run_dir=run[0])
            typer.echo(f"wrote {len(written)} Raven table(s) to {raven_dir}")


def split_formats(formats: List[str]) -> list[str]:
    from ..batch.jobs import DEFAULT_FORMATS

    chosen = [f.strip() for item in formats for f in item.split(",") if f.strip()]
    return chosen or list(DEFAULT_FORMATS)


def _run_aggregation(run_dir: Path, pseudo_round: Optional[int]) -> tuple[str, int]:
    """How a run turns window scores into recording scores (either kind of run)."""
    from ..config import HeadConfig, load_any_config
    from ..runs import resolve_round

    config = load_any_config(run_dir / "config.yaml")
    if isinstance(config, HeadConfig):
        return config.aggregate, config.top_k
    infer_config = load_any_config(resolve_round(run_dir, pseudo_round) / "config.yaml").infer
    return infer_config.aggregate, infer_config.top_k


@app.command()
@friendly_errors
def scales(
    run: Path = typer.Option(..., "--run", help="Trained CNN run directory (with folds that held recordings out)."),
    data: Path = typer.Option(..., "--data", help="The dataset directory the run was trained on."),
    window_s: List[float] = typer.Option(..., "--window-s", help="A candidate window length besides the run's own (repeatable)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
):
    """Choose each species' window length from held-out TP/FP boxes; 'predict --class-windows' uses it."""
    from ..multiscale import CLASS_WINDOWS_FILE, choose_class_windows

    table = choose_class_windows(run_dir=run, data_dir=data, windows_s=window_s, device=device, progress=sys.stderr.isatty())
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"wrote {run / CLASS_WINDOWS_FILE}")


@app.command()
@friendly_errors
def export(
    run: List[Path] = typer.Option(..., "--run", help="Training run directory (repeat for an ensemble of runs in one graph)."),
    out: Path = typer.Option(..., "--out", help="ONNX file to write."),
    pseudo_round: Optional[int] = typer.Option(None, "--round", help="Pseudo-label round (default: the last finished)."),
):
    """Export CNN runs (every fold) as ONNX: the network, and beside it the spectrogram front end."""
    from ..onnx_models import export_onnx, frontend_path, read_onnx_metadata

    path = export_onnx(run_dirs=run, out_path=out, pseudo_round=pseudo_round)
    meta = read_onnx_metadata(path)
    samples = int(round(meta["window_s"] * meta["sample_rate_hz"]))
    typer.echo(f"wrote {frontend_path(path)}: 'windows' (n, {samples}) float32 at {meta['sample_rate_hz']} Hz -> 'images'\n"
               f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): 'images' -> 'scores' (n, {len(meta['species_columns'])}) "
               f"for {', '.join(meta['species_columns'][:4])}{' ...' if len(meta['species_columns']) > 4 else ''}")


@app.command()
@friendly_errors
@archive_job_options()
def embed(
    audio: Path = typer.Option(..., "--audio", help="Directory (tree) of recordings (FLAC, WAV, MP3, OGG; symbolic links followed)."),
    out: Path = typer.Option(..., "--out", help="Job folder: one Parquet part of window embeddings per recording (also an --embedding-cache)."),
    hop_s: float = typer.Option(1.5, "--hop-s", help="Hop between the 3 s BirdNET windows, in seconds (the embed presets use 1.5)."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for the BirdNET model."),
    job: ArchiveJobOptions = None,
):
    """Precompute BirdNET embeddings for every recording of an archive (resumable: finished files are kept)."""
    from ..batch.jobs import embed_archive

    report_job(embed_archive(audio_root=audio, out_dir=out, hop_s=hop_s, threads=threads, **job.engine_kwargs()))
