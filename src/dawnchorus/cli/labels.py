"""Commands that find training data: template matching and the review page."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from ..errors import InputError
from ._app import ArchiveJobOptions, app, archive_job_options, friendly_errors, report_job, review_app


@app.command()
@friendly_errors
@archive_job_options(workers=typer.Option(0, "--workers", help="Parallel processes (0 = all cores); in a job folder, decoding processes."))
def match(
    templates: Path = typer.Option(..., "--templates", help="Template boxes: CSV with the RFCx label columns (optional template_id)."),
    audio: Path = typer.Option(..., "--audio", help="Directory (tree) of recordings (FLAC, WAV, MP3, OGG; symbolic links followed) to search."),
    out: Path = typer.Option(..., "--out", help="Candidates CSV to write, or a job folder (not *.csv) for an archive: resumable, writes DIR/candidates.csv."),
    template_audio: Optional[Path] = typer.Option(None, "--template-audio", help="Where the templates' recordings are (default: --audio)."),
    threshold: float = typer.Option(0.1, "--threshold", help="Lowest normalized cross-correlation a candidate needs."),
    top_n: Optional[int] = typer.Option(None, "--top-n", help="Keep only the N best candidates per template in each recording."),
    job: ArchiveJobOptions = None,
):
    """Template matching: find boxes that look like the template boxes (spectrogram cross-correlation)."""
    from ..templates import match_directory, write_candidates

    if out.suffix.lower() != ".csv":
        from ..batch.jobs import match_archive

        report_job(match_archive(templates=templates, audio_root=audio, out_dir=out, template_audio_dir=template_audio,
                                 threshold=threshold, top_n=top_n, **{**job.engine_kwargs(), "workers": max(1, job.workers)}))
        return
    job_only = [flag for flag in job.given if flag != "--workers"]
    if job_only:
        raise InputError(f"{', '.join(job_only)}: only for job folders; give --out DIR instead of a .csv")

    candidates = match_directory(templates=templates, audio_dir=audio, template_audio_dir=template_audio, threshold=threshold,
                                 top_n=top_n, workers=job.workers, progress=sys.stderr.isatty())
    write_candidates(out, candidates)
    typer.echo(f"wrote {out} ({len(candidates)} candidates in {candidates['recording_id'].nunique()} recordings)")


@review_app.callback(invoke_without_command=True)
@friendly_errors
def review(
    ctx: typer.Context,
    candidates: Optional[Path] = typer.Option(None, "--candidates", help="CSV recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max[,score][,template_id]."),
    detections: Optional[Path] = typer.Option(None, "--detections", help="Instead of --candidates: the Parquet of 'predict --detections', or an archive job folder (predict --out DIR); full band."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Directory (tree) holding the candidates' recordings."),
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite file for the decisions (created if missing; reopen it to resume)."),
    port: int = typer.Option(8765, "--port", help="Port to serve on (0 = any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but localhost lets other machines in, with a token."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File holding the token every request must carry (default off localhost: a new one, printed in the link)."),
    reviewer: Optional[str] = typer.Option(None, "--reviewer", help="Name recorded with each decision (default: your user name; the page can change it)."),
    min_score: float = typer.Option(0.0, "--min-score", help="With --detections: leave out detections scoring below this."),
    group_windows: bool = typer.Option(True, "--group-windows/--no-group-windows", help="With --detections: overlapping windows of one species are one call, reviewed once."),
    sample_per_species: Optional[int] = typer.Option(None, "--sample-per-species", help="With --detections: review only N windows per species, drawn across its score range (10 bins); with a low --min-score, what 'review calibrate' needs, from an archive of millions of windows."),
    index_dir: Optional[Path] = typer.Option(None, "--index", help="Active learning: an index from 'dawnchorus index' over the same audio; a head on the candidates' embeddings re-ranks the queue as you decide."),
    learn_every: int = typer.Option(10, "--learn-every", help="With --index: retrain the head after this many decisions."),
    mode: str = typer.Option("likely", "--mode", help="With --index: the queue's first order: likely, uncertain, random or input (the page can switch)."),
    species_list: Optional[Path] = typer.Option(None, "--species-list", help="CSV species_id,scientific_name[,...] (a run's species.csv): names shown instead of ids."),
):
    """Serve the review page: mark candidates TP / FP / skip; 'review export' turns the decisions into labels."""
    if ctx.invoked_subcommand is not None:
        return
    import getpass

    from ..data.species import read_species_csv
    from ..review import create_app, read_candidates_csv, read_detections, run_server
    from ..review.server import LOOPBACK_HOSTS, is_loopback, new_token, read_token_file

    if (candidates is None) == (detections is None):
        raise InputError("give exactly one of --candidates CSV or --detections PARQUET")
    if audio is None or db is None:
        raise InputError("--audio DIR and --db FILE are required to serve the review page (or run 'dawnchorus review export')")
    if sample_per_species is not None and detections is None:
        raise InputError("--sample-per-species draws from a model's detections: give --detections JOB too")
    if index_dir is None and (learn_every != 10 or mode != "likely"):
        raise InputError("--learn-every and --mode are for active learning: give --index INDEX too")
    token = read_token_file(token_file) if token_file is not None else None if is_loopback(host) else new_token()
    loaded = read_candidates_csv(candidates) if candidates is not None else read_detections(
        detections, min_score=min_score, group=group_windows, sample_per_species=sample_per_species)
    if reviewer is None:
        try:
            reviewer = getpass.getuser()
        except Exception:  # no user name in the environment (some containers)
            reviewer = "anonymous"
    with warnings.catch_warnings(record=True) as caught:  # show them now, not when the server stops
        warnings.simplefilter("always")
        review_page = create_app(candidates=loaded, audio_dir=audio, db_path=db, reviewer=reviewer,
                                 allowed_hosts=LOOPBACK_HOSTS if is_loopback(host) else None, token=token,
                                 index_dir=index_dir, learn_every=learn_every, mode=mode,
                                 species=read_species_csv(species_list) if species_list is not None else None)
    for warning in caught:
        typer.secho(f"warning: {warning.message}", fg=typer.colors.YELLOW, err=True)
    if not is_loopback(host):
        typer.secho(f"note: listening on {host}: only requests carrying the token get in (the link below sets it); "
                    "the traffic is plain HTTP, so use it on a network you trust or behind a TLS proxy",
                    fg=typer.colors.YELLOW, err=True)
    count = len(review_page.state.session.order)
    run_server(app=review_page, host=host, port=port, token=token,
               on_ready=lambda url: typer.echo(f"reviewing {count} candidate(s), decisions go to {db}\nopen {url}  (Ctrl+C to stop)"))
    typer.echo(f"stopped; decisions are saved in {db}. Export them with: dawnchorus review export --db {db} --out DIR")


@review_app.command("export")
@friendly_errors
def review_export(
    db: Path = typer.Option(..., "--db", help="Review database written by 'dawnchorus review'."),
    out: Path = typer.Option(..., "--out", help="Dataset directory: train_tp.csv / train_fp.csv there are merged with the decisions."),
):
    """Write the latest TP / FP decisions to train_tp.csv / train_fp.csv (merged, no duplicates; skips left out)."""
    from ..review import export_labels

    typer.echo(str(export_labels(db_path=db, out_dir=out)))


@review_app.command("calibrate")
@friendly_errors
def review_calibrate(
    db: Path = typer.Option(..., "--db", help="Review database holding reviewed detections of the run ('review --detections')."),
    run: Path = typer.Option(..., "--run", help="The run whose detections were reviewed: RUN/thresholds.json is written there."),
    precision: float = typer.Option(0.9, "--precision", help="Show each species' threshold for this precision (any can be asked later)."),
    all_modes: bool = typer.Option(False, "--all-modes", help="Also fit on detections the head chose (likely/uncertain mode), which bias P(correct | score) upwards."),
):
    """Fit P(correct | score) per species on reviewed detections; 'predict --threshold-precision P' then uses it.

    Reviews in input or random order calibrate best; cover low scores too ('review --detections
    JOB --min-score 0.05 --sample-per-species 200') so that summarize can also count the calls
    the threshold misses.
    """
    from ..review.calibrate import calibrate_run

    path, table, head_chosen = calibrate_run(db_path=db, run_dir=run, precision=precision, all_modes=all_modes)
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    if head_chosen:
        typer.echo(f"{head_chosen} decision(s) chosen by the head (likely/uncertain mode) left out; "
                   "--all-modes takes them")
    typer.echo(f"wrote {path}")
