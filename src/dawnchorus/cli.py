"""The ``dawnchorus`` command: a thin layer over the library API.

Each command parses its options, calls one library function and prints the result. Errors
the user can fix (``DawnchorusError``) are printed as one clear message with exit code 2.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from .errors import DawnchorusError, InputError

app = typer.Typer(help="Find which bird and frog species call in soundscape recordings.", no_args_is_help=True, add_completion=False)
raven_app = typer.Typer(help="Convert between Raven Pro selection tables and RFCx label CSVs.", no_args_is_help=True)
cache_app = typer.Typer(help="Manage the decoded-audio cache.", no_args_is_help=True)
app.add_typer(raven_app, name="raven")
app.add_typer(cache_app, name="cache")


def friendly_errors(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = command(*args, **kwargs)
            for warning in caught:
                typer.secho(f"warning: {warning.message}", fg=typer.colors.YELLOW, err=True)
            return result
        except DawnchorusError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None

    return wrapper


@app.command()
@friendly_errors
def synth(
    out: Path = typer.Option(..., "--out", help="Directory to write the corpus into."),
    n_train: int = typer.Option(300, "--n-train", help="Number of training recordings."),
    n_test: int = typer.Option(200, "--n-test", help="Number of test recordings."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same corpus."),
    duration_s: float = typer.Option(60.0, "--duration-s", help="Length of every recording in seconds."),
    workers: int = typer.Option(0, "--workers", help="Parallel processes (0 = all cores)."),
    species_csv: Optional[Path] = typer.Option(None, "--species", help="Species table (default: the 24 RFCx species)."),
):
    """Generate a synthetic soundscape corpus in the Kaggle layout, with ground truth."""
    from .synth import SynthConfig, generate_corpus

    config = SynthConfig(n_train=n_train, n_test=n_test, seed=seed, duration_s=duration_s, workers=workers,
                         species_csv=str(species_csv) if species_csv else None)
    summary = generate_corpus(out_dir=out, config=config, progress=sys.stderr.isatty())
    typer.echo(f"wrote corpus to {out}")
    typer.echo(str(summary))


@app.command()
@friendly_errors
def validate(
    data: Path = typer.Option(..., "--data", help="Dataset directory in the Kaggle layout."),
    species_csv: Optional[Path] = typer.Option(None, "--species", help="Species table (default: species.csv or sample_submission columns)."),
    drop_bad_rows: bool = typer.Option(False, "--drop-bad-rows", help="Drop bad label rows with a warning instead of failing."),
):
    """Check a dataset directory and report every problem found, with file and line."""
    from .data import load_dataset

    dataset = load_dataset(data, species_csv=species_csv, drop_bad_rows=drop_bad_rows)
    typer.echo(json.dumps(dataset.summary(), indent=2))


@app.command()
@friendly_errors
def evaluate(
    truth: Path = typer.Option(..., "--truth", help="CSV recording_id,s0..sN with 0/1 presence."),
    pred: Path = typer.Option(..., "--pred", help="Submission CSV recording_id,s0..sN with scores in [0, 1]."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON here."),
    threshold: float = typer.Option(0.5, "--threshold", help="Score threshold for precision/recall/FPR."),
):
    """Score a submission: LWLRAP, mAP, per-species AP and threshold statistics."""
    from .metrics import evaluate as evaluate_submission

    report = evaluate_submission(truth_path=truth, pred_path=pred, threshold=threshold)
    typer.echo(report.format_table())
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_dict(), indent=2))
        typer.echo(f"wrote {json_out}")


@app.command()
@friendly_errors
def baseline(
    data: Path = typer.Option(..., "--data", help="Dataset directory in the Kaggle layout (needs test/)."),
    out: Path = typer.Option(..., "--out", help="Submission CSV to write."),
    prior: Optional[Path] = typer.Option(None, "--prior", help="CSV species_id,prevalence to use instead of the training-label frequency."),
):
    """Write the constant-prior baseline submission for the test recordings."""
    from .baselines import constant_prior_submission
    from .data import load_dataset, read_prior_csv
    from .submission import write_submission

    dataset = load_dataset(data)
    prior_table = read_prior_csv(prior, species=dataset.species) if prior else None
    write_submission(out, constant_prior_submission(dataset=dataset, prior=prior_table))
    typer.echo(f"wrote {out}")


@app.command()
@friendly_errors
def train(
    data: Path = typer.Option(..., "--data", help="Dataset directory in the Kaggle layout."),
    out: Path = typer.Option(..., "--out", help="Run directory for checkpoints, config, history and OOF predictions."),
    preset: str = typer.Option("cpu-small", "--preset", help="Preset name (cpu-small, gpu, embed-linear, embed-mlp) or a YAML config file (a run's config.yaml repeats it)."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config field: section.key=value (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    pseudo_rounds: Optional[int] = typer.Option(None, "--pseudo-rounds", help="Pseudo-label rounds after training (default: the config's pseudo.rounds)."),
    pseudo_audio: Optional[Path] = typer.Option(None, "--pseudo-audio", help="More recordings for the teacher to label, e.g. the test split."),
    embedding_cache: Optional[Path] = typer.Option(None, "--embedding-cache", help="Embedding presets: cache directory (default: RUN/embedding_cache)."),
    threads: int = typer.Option(1, "--threads", help="Embedding presets: CPU threads for BirdNET and the MLP."),
):
    """Train the detector from TP/FP boxes (k-fold, masked loss), then any pseudo-label rounds.

    Presets embed-linear / embed-mlp train heads on BirdNET embeddings instead of a CNN
    (optional extra dawnchorus[birdnet]); their --set keys have no section (--set c=0.05).
    """
    from .config import HeadConfig, load_any_config, with_overrides
    from .pseudo import train_pseudo_rounds
    from .train import train as train_run

    config = load_any_config(preset)
    if isinstance(config, HeadConfig):
        _train_embedding_head(config, data=data, out=out, overrides=overrides, resume=resume, pseudo_rounds=pseudo_rounds,
                              pseudo_audio=pseudo_audio, cache=embedding_cache, threads=threads)
        return
    extra = [f"pseudo.rounds={pseudo_rounds}"] if pseudo_rounds is not None else []
    extra += [f"pseudo.audio_dir={pseudo_audio}"] if pseudo_audio is not None else []
    config = with_overrides(config, list(overrides) + extra)
    run_dir = train_run(data_dir=data, out_dir=out, config=config, resume=resume, progress=True)
    typer.echo(f"trained: {run_dir}")
    if config.pseudo.rounds > 0:
        for round_dir in train_pseudo_rounds(run_dir=run_dir, data_dir=data, rounds=config.pseudo.rounds, progress=True):
            typer.echo(f"pseudo-label round: {round_dir}")


def _train_embedding_head(config, *, data: Path, out: Path, overrides: List[str], resume: bool, pseudo_rounds: Optional[int],
                          pseudo_audio: Optional[Path], cache: Optional[Path], threads: int) -> None:
    from .config import with_head_overrides
    from .embed_runs import train_embedding_head

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
    from .pseudo import train_pseudo_rounds

    for round_dir in train_pseudo_rounds(run_dir=run, data_dir=data, rounds=rounds, audio_dir=audio, progress=True):
        typer.echo(f"pseudo-label round: {round_dir}")


@app.command()
@friendly_errors
def predict(
    run: List[Path] = typer.Option(..., "--run", help="Run directory from 'dawnchorus train' (repeat to ensemble runs)."),
    audio: Path = typer.Option(..., "--audio", help="Directory (tree) of FLAC/WAV recordings."),
    out: Path = typer.Option(..., "--out", help="Submission CSV: recording_id,s0..sN, in the order files are found."),
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
    postprocess: Optional[bool] = typer.Option(None, "--postprocess/--no-postprocess", help="Rescale the scores to the test prevalences (--prior, else estimated), taking the raw scores as calibrated at 0.5."),
    embedding_cache: Optional[Path] = typer.Option(None, "--embedding-cache", help="Embedding-head runs: cache directory (default: RUN/embedding_cache)."),
    threads: int = typer.Option(1, "--threads", help="Embedding-head runs: CPU threads for BirdNET."),
):
    """Predict species presence for every recording (sliding windows, folds averaged)."""
    from .embed_runs import is_embedding_run
    from .infer import detections_table, write_raven_detections
    from .submission import write_submission

    if prior is not None and postprocess is False:
        raise InputError("--prior only has an effect with post-processing; drop --no-postprocess or --prior")
    if prior is not None:
        from .data import read_prior_csv

        read_prior_csv(prior)  # a broken prior file should fail before a long prediction, not after
    if any(is_embedding_run(r) for r in run):
        cnn_only = {"--window-s": window_s, "--hop-s": hop_s, "--frame-step-s": frame_step_s, "--extra-window-s": extra_window_s,
                    "--tta-shifts": tta_shifts, "--class-windows": class_windows}
        given = [name for name, value in cnn_only.items() if value]
        if len(run) > 1 or given:
            raise InputError("an embedding-head run predicts alone and without CNN window options "
                             f"({', '.join(given) or 'several --run'}); combine submissions with 'dawnchorus ensemble'")
        from .embed_runs import predict_embeddings

        result = predict_embeddings(run_dir=run[0], audio_dir=audio, cache_dir=embedding_cache or run[0] / "embedding_cache",
                                    threads=threads, pseudo_round=pseudo_round, aggregate=aggregate, progress=sys.stderr.isatty())
    else:
        from .infer import predict as predict_run
        from .multiscale import read_class_windows

        result = predict_run(run_dirs=run, audio_dir=audio, window_s=window_s, hop_s=hop_s, aggregate=aggregate,
                             frame_step_s=frame_step_s, extra_window_s=extra_window_s or None, tta_shifts=tta_shifts,
                             pseudo_round=pseudo_round, device=device, progress=sys.stderr.isatty(),
                             class_window_s=read_class_windows(run[0]) if class_windows else None)
    submission = result.submission
    if smooth > 1:
        from .postprocess import smooth_windows
        from .scores import aggregate_windows

        method, top_k = _run_aggregation(run[0], pseudo_round)
        method = aggregate or method
        smoothed = smooth_windows(result.windows, length=smooth, method="mean")
        submission = aggregate_windows(smoothed, species_columns=result.species.columns, method=method, top_k=top_k)
        result = dataclasses.replace(result, windows=smoothed)
    if postprocess or prior is not None:
        # Reference 0.5, not the run's mean out-of-fold score: it measured better on every model tried
        # (benchmarks/RESULTS.md); 'dawnchorus postprocess --run RUN' uses the out-of-fold reference.
        submission = _postprocess_and_report(scores=submission, source="predictions", out=out, prior_path=prior, run_dir=None)
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
            written = write_raven_detections(table, out_dir=raven_dir, species=species, threshold=raven_threshold)
            typer.echo(f"wrote {len(written)} Raven table(s) to {raven_dir}")


def _run_aggregation(run_dir: Path, pseudo_round: Optional[int]) -> tuple[str, int]:
    """How a run turns window scores into recording scores (either kind of run)."""
    from .config import HeadConfig, load_any_config
    from .runs import resolve_round

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
    from .multiscale import CLASS_WINDOWS_FILE, choose_class_windows

    table = choose_class_windows(run_dir=run, data_dir=data, windows_s=window_s, device=device, progress=sys.stderr.isatty())
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"wrote {run / CLASS_WINDOWS_FILE}")


def _postprocess_and_report(*, scores, source: str, out: Path, prior_path: Optional[Path], run_dir: Optional[Path], **options):
    """Shared by 'postprocess' and 'predict': rescale, print the factors, write the priors sidecar."""
    from .postprocess import postprocess as postprocess_scores
    from .postprocess import read_prior_table, reference_from_run, species_columns_of

    columns = species_columns_of(scores, source=source)
    prior_table = read_prior_table(prior_path, columns=columns) if prior_path is not None else None
    reference = reference_from_run(run_dir, columns=columns) if run_dir is not None else None
    result = postprocess_scores(scores=scores, prior=prior_table, reference=reference, source=source, **options)
    reference_text = f"mean out-of-fold prediction in {run_dir}" if run_dir is not None else "0.5"
    typer.echo(f"{result.source}; reference prior: {reference_text}")
    cells = [f"s{r.species_id}: {'-' if r.prevalence != r.prevalence else f'{r.prevalence:.3f}'} x{r.factor:.3g}"
             for r in result.species.itertuples()]  # prevalence is NaN (shown '-') with a fixed --factor
    typer.echo("species: prevalence x factor")
    for first in range(0, len(cells), 6):
        typer.echo("  " + "   ".join(cells[first : first + 6]))
    sidecar = out.with_suffix(".priors.csv")
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    result.species.to_csv(sidecar, index=False, float_format="%.6g")
    typer.echo(f"wrote {sidecar}")
    return result.scores


@app.command("postprocess")
@friendly_errors
def postprocess_command(
    pred: Path = typer.Option(..., "--pred", help="Submission CSV recording_id,s0..sN to rescale."),
    out: Path = typer.Option(..., "--out", help="Rescaled submission CSV; the factors go to <out>.priors.csv."),
    prior: Optional[Path] = typer.Option(None, "--prior", help="CSV species_id,prevalence of the test set, or the built-in rfcx-host-paper (default: estimate it)."),
    run: Optional[Path] = typer.Option(None, "--run", help="Training run whose oof.csv gives the reference prior (default: 0.5)."),
    method: str = typer.Option("odds", "--method", help="odds, power or linear."),
    factor: Optional[float] = typer.Option(None, "--factor", help="One fixed factor for every species instead of a prior."),
    estimate: str = typer.Option("cc", "--estimate", help="Prior estimator without --prior: cc (classify and count), em or count."),
    labels_per_recording: Optional[float] = typer.Option(None, "--labels-per-recording", help="Species per recording for --estimate count (default: the model's own expected count)."),
    gamma: float = typer.Option(0.5, "--gamma", help="Exponent of the power scaling, p * (prior/reference)**gamma."),
):
    """Rescale a submission to the test prevalences: from a prior table, or estimated from the scores."""
    from .metrics import read_score_table
    from .submission import write_submission

    scores = read_score_table(path=pred, kind="submission")
    options = {"method": method, "factor": factor, "estimate": estimate, "labels_per_recording": labels_per_recording, "gamma": gamma}
    result = _postprocess_and_report(scores=scores, source=str(pred), out=out, prior_path=prior, run_dir=run, **options)
    write_submission(out, result)
    typer.echo(f"wrote {out} ({len(result)} recordings)")


@app.command()
@friendly_errors
def ensemble(
    tables: List[Path] = typer.Argument(..., help="Submission CSVs with the same recordings and species."),
    out: Path = typer.Option(..., "--out", help="Ensembled submission CSV (rows in the first file's order)."),
    method: str = typer.Option("mean", "--method", help="mean, rank or geometric."),
    weights: Optional[str] = typer.Option(None, "--weights", help="One weight per file, comma-separated (default: equal)."),
):
    """Combine several submissions into one by a (weighted) mean, rank mean or geometric mean."""
    from .ensemble import ensemble_tables
    from .metrics import read_score_table
    from .submission import write_submission

    try:
        weight_list = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise InputError(f"--weights must be numbers separated by commas; got {weights!r}") from None
    frames = [read_score_table(path=path, kind="submission") for path in tables]
    combined = ensemble_tables(tables=frames, method=method, weights=weight_list, sources=[str(p) for p in tables])
    write_submission(out, combined)
    typer.echo(f"wrote {out} ({len(combined)} recordings, {method} of {len(tables)} tables)")


@app.command()
@friendly_errors
def match(
    templates: Path = typer.Option(..., "--templates", help="Template boxes: CSV with the RFCx label columns (optional template_id)."),
    audio: Path = typer.Option(..., "--audio", help="Directory (tree) of FLAC/WAV recordings to search."),
    out: Path = typer.Option(..., "--out", help="Candidates CSV to write."),
    template_audio: Optional[Path] = typer.Option(None, "--template-audio", help="Where the templates' recordings are (default: --audio)."),
    threshold: float = typer.Option(0.1, "--threshold", help="Lowest normalized cross-correlation a candidate needs."),
    top_n: Optional[int] = typer.Option(None, "--top-n", help="Keep only the N best candidates per template in each recording."),
    workers: int = typer.Option(0, "--workers", help="Parallel processes (0 = all cores)."),
):
    """Template matching: find boxes that look like the template boxes (spectrogram cross-correlation)."""
    from .templates import match_directory, write_candidates

    candidates = match_directory(templates=templates, audio_dir=audio, template_audio_dir=template_audio, threshold=threshold,
                                 top_n=top_n, workers=workers, progress=sys.stderr.isatty())
    write_candidates(out, candidates)
    typer.echo(f"wrote {out} ({len(candidates)} candidates in {candidates['recording_id'].nunique()} recordings)")


@app.command()
@friendly_errors
def embed(
    audio: Path = typer.Option(..., "--audio", help="Directory (tree) of FLAC/WAV recordings."),
    out: Path = typer.Option(..., "--out", help="Embedding cache directory (one .npz per recording)."),
    hop_s: float = typer.Option(3.0, "--hop-s", help="Hop between the 3 s BirdNET windows, in seconds."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for the BirdNET model."),
):
    """Precompute BirdNET embeddings for every recording (resumable: cached recordings are skipped)."""
    from .embeddings import embed_directory

    summary = embed_directory(audio_dir=audio, cache_dir=out, hop_s=hop_s, threads=threads, progress=sys.stderr.isatty())
    typer.echo(f"embedding cache {out}: {summary}")


@raven_app.command("import")
@friendly_errors
def raven_import(
    tables: List[Path] = typer.Argument(..., help="Selection tables, or directories holding *.txt tables."),
    out: Path = typer.Option(..., "--out", help="Directory to write train_tp.csv and train_fp.csv into."),
    species_csv: Optional[Path] = typer.Option(None, "--species", help="Species table mapping names to ids (default: RFCx species)."),
    species_column: str = typer.Option("Species", "--species-column", help="Column holding species ids or names."),
):
    """Convert Raven selection tables into RFCx train_tp.csv / train_fp.csv."""
    from .data import import_raven_tables, read_species_csv, rfcx_species, write_boxes

    species = read_species_csv(species_csv) if species_csv else rfcx_species()
    paths = [p for t in tables for p in (sorted(t.glob("*.txt")) if t.is_dir() else [t])]
    boxes = import_raven_tables(paths=paths, species=species, species_column=species_column)
    tp = write_boxes(out / "train_tp.csv", [b for b in boxes if b.label == 1])
    fp = write_boxes(out / "train_fp.csv", [b for b in boxes if b.label == 0])
    typer.echo(f"read {len(paths)} table(s), {len(boxes)} box(es): wrote {tp} and {fp}")


@raven_app.command("export")
@friendly_errors
def raven_export(
    labels: List[Path] = typer.Argument(..., help="RFCx label CSVs; files named *fp* are exported as FP, others as TP."),
    out: Path = typer.Option(..., "--out", help="Directory for one selection table per recording."),
    species_csv: Optional[Path] = typer.Option(None, "--species", help="Species table for names (default: RFCx species)."),
):
    """Write RFCx label CSVs as Raven selection tables, one per recording."""
    from .data import export_raven_tables, read_boxes, read_species_csv, rfcx_species

    species = read_species_csv(species_csv) if species_csv else rfcx_species()
    boxes = [b for path in labels for b in read_boxes(path, label=0 if "fp" in path.stem.lower() else 1, species=species)]
    written = export_raven_tables(boxes=boxes, out_dir=out, species=species)
    typer.echo(f"wrote {len(written)} selection table(s) to {out}")


@cache_app.command("warm")
@friendly_errors
def cache_warm(
    audio: Path = typer.Option(..., "--audio", help="Directory of recordings."),
    cache_dir: Path = typer.Option(..., "--cache", help="Cache directory."),
    sample_rate_hz: int = typer.Option(48000, "--sample-rate", help="Target sample rate."),
):
    """Decode and resample every recording into the cache (stale entries are rebuilt)."""
    from .data import AudioCache, find_audio_files

    cache = AudioCache(cache_dir, sample_rate_hz=sample_rate_hz)
    built = cache.warm(list(find_audio_files(audio).values()))
    typer.echo(f"cache {cache_dir}: {built} recording(s) decoded, the rest were fresh")


@cache_app.command("prune")
@friendly_errors
def cache_prune(
    cache_dir: Path = typer.Option(..., "--cache", help="Cache directory."),
    sample_rate_hz: int = typer.Option(48000, "--sample-rate", help="Target sample rate."),
):
    """Remove cache entries whose source file changed or vanished."""
    from .data import AudioCache

    removed = AudioCache(cache_dir, sample_rate_hz=sample_rate_hz).prune()
    typer.echo(f"removed {removed} stale entr{'y' if removed == 1 else 'ies'}")


@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Working directory for the corpus and results."),
    n_train: int = typer.Option(200, "--n-train", help="Training recordings in the demo corpus."),
    n_test: int = typer.Option(50, "--n-test", help="Test recordings in the demo corpus."),
    seed: int = typer.Option(1, "--seed", help="Corpus seed."),
    preset: str = typer.Option("cpu-small", "--preset", help="Training preset."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config field: section.key=value (repeatable)."),
):
    """Run the whole job on built-in example data: synthesise, train, predict, evaluate, report."""
    from .demo import run_demo

    report = run_demo(out_dir=out, n_train=n_train, n_test=n_test, seed=seed, preset=preset, overrides=tuple(overrides))
    typer.echo(report.read_text())


review_app = typer.Typer(help="Review candidate detections in the browser (TP / FP) and export them as labels.")
app.add_typer(review_app, name="review")


@review_app.callback(invoke_without_command=True)
@friendly_errors
def review(
    ctx: typer.Context,
    candidates: Optional[Path] = typer.Option(None, "--candidates", help="CSV recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max[,score][,template_id]."),
    detections: Optional[Path] = typer.Option(None, "--detections", help="Instead of --candidates: the Parquet of 'predict --detections' (full band)."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Directory (tree) holding the candidates' recordings."),
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite file for the decisions (created if missing; reopen it to resume)."),
    port: int = typer.Option(8765, "--port", help="Port to serve on (0 = any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but localhost lets other machines in (no login)."),
    reviewer: Optional[str] = typer.Option(None, "--reviewer", help="Name recorded with each decision (default: your user name; the page can change it)."),
    min_score: float = typer.Option(0.0, "--min-score", help="With --detections: leave out detections scoring below this."),
):
    """Serve the review page: mark candidates TP / FP / skip; 'review export' turns the decisions into labels."""
    if ctx.invoked_subcommand is not None:
        return
    import getpass

    from .review import create_app, read_candidates_csv, read_detections, run_server
    from .review.server import LOOPBACK_HOSTS, is_loopback

    if (candidates is None) == (detections is None):
        raise InputError("give exactly one of --candidates CSV or --detections PARQUET")
    if audio is None or db is None:
        raise InputError("--audio DIR and --db FILE are required to serve the review page (or run 'dawnchorus review export')")
    loaded = read_candidates_csv(candidates) if candidates is not None else read_detections(detections, min_score=min_score)
    if reviewer is None:
        try:
            reviewer = getpass.getuser()
        except Exception:  # no user name in the environment (some containers)
            reviewer = "anonymous"
    with warnings.catch_warnings(record=True) as caught:  # show them now, not when the server stops
        warnings.simplefilter("always")
        review_page = create_app(candidates=loaded, audio_dir=audio, db_path=db, reviewer=reviewer,
                                 allowed_hosts=LOOPBACK_HOSTS if is_loopback(host) else None)
    for warning in caught:
        typer.secho(f"warning: {warning.message}", fg=typer.colors.YELLOW, err=True)
    if not is_loopback(host):
        typer.secho(f"warning: listening on {host}: anyone who can reach it can read the audio and mark candidates", fg=typer.colors.YELLOW, err=True)
    count = len(review_page.state.session.order)
    run_server(app=review_page, host=host, port=port,
               on_ready=lambda url: typer.echo(f"reviewing {count} candidate(s), decisions go to {db}\nopen {url}  (Ctrl+C to stop)"))
    typer.echo(f"stopped; decisions are saved in {db}. Export them with: dawnchorus review export --db {db} --out DIR")


@review_app.command("export")
@friendly_errors
def review_export(
    db: Path = typer.Option(..., "--db", help="Review database written by 'dawnchorus review'."),
    out: Path = typer.Option(..., "--out", help="Dataset directory: train_tp.csv / train_fp.csv there are merged with the decisions."),
):
    """Write the latest TP / FP decisions to train_tp.csv / train_fp.csv (merged, no duplicates; skips left out)."""
    from .review import export_labels

    typer.echo(str(export_labels(db_path=db, out_dir=out)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
