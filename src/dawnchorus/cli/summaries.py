"""Commands that turn an archive job's per-recording scores into tables for ecologists."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import InputError
from ._app import app, friendly_errors


def summary_path(*, job: Optional[Path], summary: Optional[Path]) -> Path:
    """The recordings.csv to read: ``--summary`` itself, or the one inside ``--job``."""
    if (job is None) == (summary is None):
        raise InputError("pass exactly one of --job DIR (a finished archive job) or --summary FILE (its recordings.csv)")
    if summary is not None:
        return summary
    if not job.is_dir():
        raise InputError(f"--job {job}: no such folder; pass the output folder of an archive job")
    path = job / "recordings.csv"
    if not path.is_file():
        raise InputError(f"--job {job}: no recordings.csv in it; has the job finished? (or pass --summary FILE)")
    return path


@app.command()
@friendly_errors
def summarize(
    job: Optional[Path] = typer.Option(None, "--job", help="Archive job folder; reads its recordings.csv."),
    summary: Optional[Path] = typer.Option(None, "--summary", help="A per-recording summary CSV (recordings.csv) instead of --job."),
    threshold: float = typer.Option(0.5, "--threshold", help="Score at or above which a species counts as present in a recording (0..1)."),
    by: str = typer.Option("day", "--by", help="Period of the table: day or hour."),
    score: str = typer.Option("max_score", "--score", help="Score to threshold: max_score or topk_mean."),
    out: Path = typer.Option(..., "--out", help="Presence table CSV, one row per site x period x species."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw the presence as a heat-map PNG here."),
):
    """Species presence per site and day (or hour) from an archive job's per-recording scores."""
    from ..summarize import UNDATED, plot_presence, presence_table, read_recording_summary

    source = summary_path(job=job, summary=summary)
    recordings = read_recording_summary(source)
    table = presence_table(summary=recordings, threshold=threshold, by=by, score=score)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.6g")
    undated = table.loc[table["period"] == UNDATED].drop_duplicates(["site"])["recordings"].sum()
    typer.echo(f"{recordings['recording_id'].nunique()} recordings: {table['site'].nunique()} sites, "
               f"{table['period'].nunique()} periods ({by}), {table['species_id'].nunique()} species; "
               f"present where {score} >= {threshold:g}")
    if undated:
        typer.echo(f"{undated} recording(s) have no start time; they are in the period '{UNDATED}'")
    typer.echo(f"wrote {out}")
    if plot is not None:
        if table.empty:
            raise InputError(f"{source}: no recordings in the summary, so there is no presence to plot")
        title = f"Share of recordings with {score} >= {threshold:g}, by site and {by}"
        typer.echo(f"wrote {plot_presence(table, out_path=plot, title=title)}")
