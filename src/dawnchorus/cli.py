"""The ``dawnchorus`` command: a thin layer over the library API.

Each command parses its options, calls one library function and prints the result. Errors
the user can fix (``DawnchorusError``) are printed as one clear message with exit code 2.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from .errors import DawnchorusError

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
    preset: str = typer.Option("cpu-small", "--preset", help="Preset name (cpu-small, gpu) or a YAML config file."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config field: section.key=value (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
):
    """Train the detector from TP/FP boxes (k-fold, masked loss)."""
    from .config import load_config, load_preset, with_overrides
    from .train import train as train_run

    config = load_config(preset) if preset.endswith((".yaml", ".yml")) else load_preset(preset)
    config = with_overrides(config, list(overrides))
    run_dir = train_run(data_dir=data, out_dir=out, config=config, resume=resume, progress=True)
    typer.echo(f"trained: {run_dir}")


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
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
):
    """Predict species presence for every recording (sliding windows, folds averaged)."""
    from .infer import detections_table, predict as predict_run, write_raven_detections
    from .submission import write_submission

    result = predict_run(run_dirs=run, audio_dir=audio, window_s=window_s, hop_s=hop_s, aggregate=aggregate,
                         device=device, progress=sys.stderr.isatty())
    write_submission(out, result.submission)
    typer.echo(f"wrote {out} ({len(result.submission)} recordings)")
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
    n_train: int = typer.Option(240, "--n-train", help="Training recordings in the demo corpus."),
    n_test: int = typer.Option(60, "--n-test", help="Test recordings in the demo corpus."),
    seed: int = typer.Option(1, "--seed", help="Corpus seed."),
    preset: str = typer.Option("cpu-small", "--preset", help="Training preset."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config field: section.key=value (repeatable)."),
):
    """Run the whole job on built-in example data: synthesise, train, predict, evaluate, report."""
    from .demo import run_demo

    report = run_demo(out_dir=out, n_train=n_train, n_test=n_test, seed=seed, preset=preset, overrides=tuple(overrides))
    typer.echo(report.read_text())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
