"""Commands about data: synthetic corpora, validation, evaluation, baselines, the demo, Raven tables, the audio cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ._app import app, cache_app, friendly_errors, raven_app


@app.command()
@friendly_errors
def synth(
    out: Path = typer.Option(..., "--out", help="Directory to write the corpus into."),
    n_train: int = typer.Option(300, "--n-train", help="Number of training recordings."),
    n_test: int = typer.Option(200, "--n-test", help="Number of test recordings."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same corpus."),
    duration_s: float = typer.Option(60.0, "--duration-s", help="Length of every recording in seconds."),
    workers: int = typer.Option(0, "--workers", help="Parallel processes (0 = all cores)."),
    species_csv: Optional[Path] = typer.Option(None, "--species", help="Species table (default: the RFCx species)."),
    world_name: str = typer.Option("reference", "--world", help="Named world (see --list-worlds): call families, noise, labels, prevalence."),
    backgrounds: Optional[Path] = typer.Option(None, "--backgrounds", help="Folder of real soundscapes, for worlds that mix them in."),
    list_worlds: bool = typer.Option(False, "--list-worlds", help="List the named worlds and exit."),
):
    """Generate a synthetic soundscape corpus in the Kaggle layout, with ground truth."""
    import dataclasses

    from ..synth import generate_corpus, world
    from ..synth.worlds import world_table

    if list_worlds:
        for row in world_table():
            typer.echo(f"{row['world']:20s} {row['role']:7s} {row['description']}")
        return
    config = world(world_name).config(n_train=n_train, n_test=n_test, seed=seed, duration_s=duration_s, workers=workers,
                                      background_dir=backgrounds)
    if species_csv:
        config = dataclasses.replace(config, species_csv=str(species_csv))
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
    from ..data import load_dataset

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
    from ..metrics import evaluate as evaluate_submission

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
    from ..baselines import constant_prior_submission
    from ..data import load_dataset, read_prior_csv
    from ..submission import write_submission

    dataset = load_dataset(data)
    prior_table = read_prior_csv(prior, species=dataset.species) if prior else None
    write_submission(out, constant_prior_submission(dataset=dataset, prior=prior_table))
    typer.echo(f"wrote {out}")


@raven_app.command("import")
@friendly_errors
def raven_import(
    tables: List[Path] = typer.Argument(..., help="Selection tables, or directories holding *.txt tables."),
    out: Path = typer.Option(..., "--out", help="Directory to write train_tp.csv and train_fp.csv into."),
    species_csv: Optional[Path] = typer.Option(None, "--species", help="Species table mapping names to ids (default: RFCx species)."),
    species_column: str = typer.Option("Species", "--species-column", help="Column holding species ids or names."),
):
    """Convert Raven selection tables into RFCx train_tp.csv / train_fp.csv."""
    from ..data import import_raven_tables, read_species_csv, rfcx_species, write_boxes

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
    from ..data import export_raven_tables, read_boxes, read_species_csv, rfcx_species

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
    from ..data import AudioCache, find_audio_files

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
    from ..data import AudioCache

    removed = AudioCache(cache_dir, sample_rate_hz=sample_rate_hz).prune()
    typer.echo(f"removed {removed} stale entr{'y' if removed == 1 else 'ies'}")


@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Working directory for the corpus and results."),
    n_train: int = typer.Option(200, "--n-train", help="Training recordings in the demo corpus."),
    n_test: int = typer.Option(50, "--n-test", help="Test recordings in the demo corpus."),
    seed: int = typer.Option(1, "--seed", help="Corpus seed."),
    preset: str = typer.Option("templates-linear", "--preset", help="Training preset (templates-linear, cpu-small, ...)."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config field: key=value for head presets, section.key=value for CNN presets (repeatable; a CNN preset trains train.epochs=5 unless told otherwise)."),
):
    """Run the whole job on built-in example data: synthesise, train, predict, evaluate, report."""
    from ..demo import run_demo

    report = run_demo(out_dir=out, n_train=n_train, n_test=n_test, seed=seed, preset=preset, overrides=tuple(overrides))
    typer.echo(report.read_text())
