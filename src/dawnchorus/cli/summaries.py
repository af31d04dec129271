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
    by: str = typer.Option("day", "--by", help="Period of the table: hour, day, week (ISO), month, or all (one per site: the whole deployment)."),
    score: str = typer.Option("max_score", "--score", help="Score to threshold: max_score or topk_mean."),
    out: Path = typer.Option(..., "--out", help="Presence table CSV, one row per site x period x species."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw the presence as a heat-map PNG here."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="A run with thresholds.json ('review calibrate'): each species' threshold for --precision, a prevalence corrected for false detections and one with missed calls added back, with intervals."),
    precision: float = typer.Option(0.9, "--precision", help="With --calibration: the precision the thresholds are chosen for."),
):
    """Species presence per site and day (or hour) from an archive job's per-recording scores.

    With --calibration, an occupancy table instead: detections at each species' calibrated
    threshold, the naive share of recordings with one, the share corrected for false detections,
    and the share with missed calls added back (90 % intervals; it needs reviewed detections
    down to low scores). Species without a calibration keep --threshold, flagged.
    """
    from ..summarize import UNDATED, by_site_and, plot_presence, presence_table, read_recording_summary

    source = summary_path(job=job, summary=summary)
    recordings = read_recording_summary(source)
    if calibration is not None:
        _write_occupancy(recordings, calibration=calibration, precision=precision, threshold=threshold, by=by, score=score,
                         out=out, plot=plot)
        return
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
        title = f"Share of recordings with {score} >= {threshold:g}, {by_site_and(by)}"
        typer.echo(f"wrote {plot_presence(table, out_path=plot, title=title)}")


def _write_occupancy(recordings, *, calibration: Path, precision: float, threshold: float, by: str, score: str, out: Path,
                     plot: Optional[Path]) -> None:
    from ..atomic import atomic_write_text
    from ..occupancy import occupancy_table
    from ..summarize import by_site_and, plot_presence
    from ..thresholds import read_thresholds

    table = occupancy_table(summary=recordings, calibration=read_thresholds(calibration), precision=precision,
                            fallback_threshold=threshold, by=by, score=score)
    atomic_write_text(out, table.to_csv(index=False, float_format="%.6g"))
    uncalibrated = sorted(table.loc[~table["calibrated"].astype(bool), "species_id"].unique())
    typer.echo(f"{recordings['recording_id'].nunique()} recordings: occupancy at precision {precision:g} for "
               f"{table['species_id'].nunique() - len(uncalibrated)} calibrated species")
    if uncalibrated:
        typer.echo(f"{len(uncalibrated)} species have no calibration and keep --threshold {threshold:g} (calibrated = False): "
                   f"{', '.join(map(str, uncalibrated[:20]))}{' ...' if len(uncalibrated) > 20 else ''}")
    extrapolated = table.groupby("species_id")["below_reviewed"].sum()
    extrapolated = extrapolated[extrapolated > 0]
    if len(extrapolated):
        typer.echo(f"{len(extrapolated)} species have recordings scoring below their lowest reviewed score "
                   f"({int(extrapolated.sum())} in all, column below_reviewed): prevalence_with_missed extrapolates there; "
                   "review detections down to lower scores (review --detections --min-score) to cover them")
    typer.echo(f"wrote {out}")
    if plot is not None:
        if table.empty:
            raise InputError("no recordings in the summary, so there is no occupancy to plot")
        shown = table.assign(presence=table["prevalence"].fillna(table["naive_prevalence"]))
        title = f"Share of recordings occupied (calibrated at precision {precision:g}), {by_site_and(by)}"
        typer.echo(f"wrote {plot_presence(shown, out_path=plot, title=title)}")
