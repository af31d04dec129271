"""Presence tables: which species were heard at which site on which day (or hour).

An archive job writes ``recordings.csv``, one row per recording and species with the
species' best clip score. Ecologists work with detection / non-detection per site and
period instead, so this module counts, for each site x period x species, how many
recordings there were and in how many the species scored at or above a threshold.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from .data.tables import read_text_table
from .errors import InputError, ValidationError

__all__ = ["SUMMARY_COLUMNS", "PRESENCE_COLUMNS", "check_summary_request", "period_labels", "read_recording_summary",
           "presence_table", "plot_presence"]

SUMMARY_COLUMNS = ["path", "recording_id", "site", "start_time", "duration_s", "species_id", "species",
                   "max_score", "topk_mean"]
PRESENCE_COLUMNS = ["site", "period", "species_id", "species", "recordings", "recordings_present", "presence",
                    "present", "max_score", "audio_hours"]
SCORE_COLUMNS = ("max_score", "topk_mean")
PERIOD_FORMATS = {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}
WHOLE_DEPLOYMENT = "all"  # --by all: one period per site, the whole deployment (a site-level occupancy)
UNDATED = "undated"

_TEXT_COLUMNS = ("path", "recording_id", "site", "species")
_NUMBER_COLUMNS = ("duration_s", "max_score", "topk_mean")


def _start_time_of(text: str) -> dt.datetime | None:
    """Naive local recorder time; an offset, if a file carries one, is dropped, not applied,
    so that every recording of a site is grouped by the clock its recorder showed."""
    value = dt.datetime.fromisoformat(text).replace(tzinfo=None)
    pd.Timestamp(value)  # raises OutOfBoundsDatetime (a ValueError) for years pandas cannot hold
    return value


def read_recording_summary(path: str | Path) -> pd.DataFrame:
    """Read and check a job's per-recording summary CSV (columns ``SUMMARY_COLUMNS``).

    ``start_time`` becomes a datetime column (NaT where empty), ``species_id`` an integer,
    the scores and ``duration_s`` floats and the text columns strings ('' where empty).
    Every bad row is reported at once, by its line in the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: summary file not found; pass the recordings.csv of a finished archive job")
    raw = read_text_table(path, what="recording summary (the recordings.csv of an archive job)", header=",".join(SUMMARY_COLUMNS))
    missing = [c for c in SUMMARY_COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; a recording summary has the columns "
                         f"{','.join(SUMMARY_COLUMNS)} (found: {','.join(map(str, raw.columns)) or 'none'})")
    summary = raw.reset_index(drop=True)
    problems: list[str] = []
    lines = raw.index.to_numpy()
    raw = raw.reset_index(drop=True)
    for column in _TEXT_COLUMNS:
        summary[column] = raw[column].astype(str).str.strip()
    for line, recording_id in zip(lines, summary["recording_id"]):
        if not recording_id:
            problems.append(f"line {line}: recording_id is empty")
    species_ids = pd.to_numeric(raw["species_id"].str.strip(), errors="coerce")
    for line, text, value in zip(lines, raw["species_id"], species_ids):
        if not (np.isfinite(value) and float(value).is_integer() and value >= 0):
            problems.append(f"line {line}: species_id {text!r} is not a whole number >= 0")
    for column in _NUMBER_COLUMNS:
        values = pd.to_numeric(raw[column].str.strip(), errors="coerce")
        for line, text, value in zip(lines, raw[column], values):
            if not np.isfinite(value) or (column == "duration_s" and value < 0):
                problems.append(f"line {line}: {column} {text!r} is not a number"
                                + (" >= 0" if column == "duration_s" else ""))
        summary[column] = values.astype(float)
    starts: list[dt.datetime | None] = []
    for line, text in zip(lines, raw["start_time"].str.strip()):
        try:
            starts.append(_start_time_of(text) if text else None)
        except ValueError:
            starts.append(None)
            problems.append(f"line {line}: start_time {text!r} is not an ISO 8601 time such as 2024-04-01T06:00:00 "
                            "(leave it empty when the time is unknown)")
    if problems:
        raise ValidationError(str(path), problems)
    summary["species_id"] = species_ids.astype(np.int64)
    summary["start_time"] = pd.to_datetime(pd.Series(starts, index=summary.index, dtype=object))
    return summary


def period_labels(start_time: pd.Series, *, by: str) -> pd.Series:
    """Each recording's period: its hour, day, ISO week or month (recorder wall clock;
    ``UNDATED`` without a start time), or ``all`` for the whole deployment."""
    if by == WHOLE_DEPLOYMENT:
        return pd.Series(WHOLE_DEPLOYMENT, index=start_time.index, dtype=str)
    start_time = pd.to_datetime(start_time, errors="coerce")
    if getattr(start_time.dt, "tz", None) is not None:
        start_time = start_time.dt.tz_localize(None)  # keep the recorder's wall clock (see _start_time_of)
    return start_time.dt.strftime(PERIOD_FORMATS[by]).where(start_time.notna(), UNDATED).astype(str)


def by_site_and(by: str) -> str:
    """How a plot's title names the table's cells."""
    return "by site (whole deployment)" if by == WHOLE_DEPLOYMENT else f"by site and {by}"


def check_summary_request(summary: pd.DataFrame, *, score: str, by: str) -> None:
    """The score column and period asked for exist, and ``summary`` has the columns of a recording summary."""
    if score not in SCORE_COLUMNS:
        raise InputError(f"score must be one of {', '.join(SCORE_COLUMNS)}; got {score!r}")
    if by not in (*PERIOD_FORMATS, WHOLE_DEPLOYMENT):
        raise InputError(f"by must be one of {', '.join([*PERIOD_FORMATS, WHOLE_DEPLOYMENT])}; got {by!r}")
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise InputError(f"the summary lacks column(s) {', '.join(missing)}; read it with read_recording_summary")


def presence_table(*, summary: pd.DataFrame, threshold: float, by: str = "day", score: str = "max_score") -> pd.DataFrame:
    """Detection / non-detection of every species per site and period (columns ``PRESENCE_COLUMNS``).

    A species counts as present in a recording when its ``score`` (``max_score`` or
    ``topk_mean``) is at or above ``threshold``. ``by`` is ``"day"`` (period ``YYYY-MM-DD``)
    or ``"hour"`` (``YYYY-MM-DD HH:00``) of the recording's start; recordings without a start
    time form the period ``"undated"`` rather than being dropped. Every site x period has a
    row for every species in the summary, so an absence is an explicit 0, not a gap.

    ``recordings`` and ``audio_hours`` count all recordings of the site and period;
    ``presence`` is the share of them in which the species was present and ``present`` whether
    any was; ``max_score`` is the species' highest ``max_score`` there (NaN if never scored).
    Rows are sorted by site, period and species_id.
    """
    check_summary_request(summary, score=score, by=by)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise InputError(f"threshold must be a number between 0 and 1; got {threshold!r}") from None
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be between 0 and 1; got {threshold}")
    if summary.empty:
        return pd.DataFrame(columns=PRESENCE_COLUMNS)

    rows = pd.DataFrame({
        "site": summary["site"].fillna("").astype(str),
        "period": period_labels(summary["start_time"], by=by),
        "recording_id": summary["recording_id"].astype(str),
        "species_id": summary["species_id"].astype(np.int64),
        "duration_s": summary["duration_s"].astype(float),
        "max_score": summary["max_score"].astype(float),
        "present": summary[score].astype(float) >= threshold,
    })
    cell = ["site", "period"]
    # One row per recording and species even if a summary repeats one (e.g. two jobs concatenated).
    rows = rows.groupby(cell + ["recording_id", "species_id"], as_index=False).agg(
        duration_s=("duration_s", "first"), max_score=("max_score", "max"), present=("present", "any"))

    recordings = rows.drop_duplicates(cell + ["recording_id"]).groupby(cell).agg(
        recordings=("recording_id", "size"), audio_seconds=("duration_s", "sum"))
    species = rows.groupby(cell + ["species_id"]).agg(recordings_present=("present", "sum"),
                                                       max_score=("max_score", "max"))
    all_species = np.sort(rows["species_id"].unique())
    grid = pd.MultiIndex.from_tuples([(site, period, sid) for site, period in recordings.index for sid in all_species],
                                     names=cell + ["species_id"])
    table = species.reindex(grid).reset_index().join(recordings, on=cell)
    table["recordings_present"] = table["recordings_present"].fillna(0).astype(np.int64)
    table["recordings"] = table["recordings"].astype(np.int64)
    table["presence"] = table["recordings_present"] / table["recordings"]
    table["present"] = table["recordings_present"] > 0
    table["audio_hours"] = table["audio_seconds"] / 3600.0
    names = (summary.assign(species=summary["species"].fillna("").astype(str))
             .loc[lambda frame: frame["species"] != ""].groupby("species_id")["species"].first())
    table["species"] = table["species_id"].map(names).fillna("").astype(str)
    table = table.sort_values(["site", "period", "species_id"], kind="stable").reset_index(drop=True)
    return table[PRESENCE_COLUMNS]


def plot_presence(table: pd.DataFrame, *, out_path: str | Path, title: str | None = None) -> Path:
    """Save a heat map of ``table`` (from ``presence_table``) as a PNG: one row per species, one
    column per site and period, the colour the share of recordings with the species."""
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window: this runs on servers without a display
    import matplotlib.pyplot as plt

    missing = [c for c in ("site", "period", "species_id", "species", "presence") if c not in table.columns]
    if missing:
        raise InputError(f"cannot plot a table without the column(s) {', '.join(missing)}; make it with presence_table")
    if table.empty:
        raise InputError("the presence table is empty: the summary has no recordings to plot")
    frame = table.assign(column=np.where(table["site"].astype(str) != "",
                                         table["site"].astype(str) + " " + table["period"].astype(str),
                                         table["period"].astype(str)))
    columns = list(dict.fromkeys(frame.sort_values(["site", "period"], kind="stable")["column"]))
    species = frame.drop_duplicates("species_id").sort_values("species_id")
    labels = [name if name else f"species {sid}" for sid, name in zip(species["species_id"], species["species"])]
    grid = frame.pivot_table(index="species_id", columns="column", values="presence", aggfunc="max")
    grid = grid.reindex(index=species["species_id"], columns=columns)

    # Size the figure by the cells so labels stay readable; cap it so a long archive still saves.
    width = min(max(8.0, 0.32 * len(columns) + 4.0), 120.0)
    height = min(max(4.0, 0.3 * len(labels) + 3.0), 120.0)
    figure, axes = plt.subplots(figsize=(width, height), layout="constrained")
    try:
        image = axes.imshow(np.ma.masked_invalid(grid.to_numpy(dtype=float)), aspect="auto", cmap="viridis",
                            vmin=0.0, vmax=1.0, interpolation="nearest")
        axes.set_xticks(range(len(columns)), labels=columns, rotation=90, fontsize=8)
        axes.set_yticks(range(len(labels)), labels=labels, fontsize=8)
        axes.set_xlabel("site and period")
        axes.set_ylabel("species")
        if title:
            axes.set_title("\n".join(textwrap.wrap(title, width=max(40, int(width * 9)))), fontsize=10)
        figure.colorbar(image, ax=axes, label="presence (share of recordings)", fraction=0.04, pad=0.02)
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out_path, dpi=100, format="png", bbox_inches="tight")  # the colour bar's label stays whole
    finally:
        plt.close(figure)
    return out_path
