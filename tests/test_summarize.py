"""Presence tables per site x period x species from a job's per-recording summary."""

import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from dawnchorus.cli import app
from dawnchorus.errors import InputError
from dawnchorus.summarize import PRESENCE_COLUMNS, plot_presence, presence_table, read_recording_summary

HEADER = "path,recording_id,site,start_time,duration_s,species_id,species,max_score,topk_mean\n"
COQUI, ANGELAE = "Eleutherodactylus coqui", "Setophaga angelae"
# Two sites, two days, one recording without a start time; r3's s0 sits exactly on 0.5.
RECORDINGS = [
    # path, site, start_time, duration_s, (max_score, topk_mean) of species 0 and 1
    ("A/r1.wav", "A", "2024-04-01T06:00:00", 60, (0.9, 0.6), (0.2, 0.1)),
    ("A/r2.wav", "A", "2024-04-01T07:30:00", 60, (0.4, 0.3), (0.7, 0.5)),
    ("A/r3.wav", "A", "2024-04-02T06:00:00", 120, (0.5, 0.2), (0.1, 0.1)),
    ("B/r4.wav", "B", "2024-04-01T06:15:00", 60, (0.1, 0.1), (0.95, 0.8)),
    ("B/r5.wav", "B", "2024-04-02T23:59:59", 60, (0.3, 0.2), (0.3, 0.2)),
    ("A/r6.wav", "A", "", 30, (0.8, 0.7), (0.0, 0.0)),
]


def summary_csv(tmp_path, recordings=RECORDINGS):
    lines = [HEADER]
    for path, site, start, duration, *scores in recordings:
        for species_id, (name, (best, topk)) in enumerate(zip((COQUI, ANGELAE), scores)):
            lines.append(f"{path},{path[:-4]},{site},{start},{duration},{species_id},{name},{best},{topk}\n")
    out = tmp_path / "recordings.csv"
    out.write_text("".join(lines))
    return out


def cells(table):
    return {(r.site, r.period, r.species_id): (r.recordings, r.recordings_present, r.present)
            for r in table.itertuples()}


def test_read_recording_summary_types(tmp_path):
    summary = read_recording_summary(summary_csv(tmp_path))
    assert len(summary) == 12
    assert pd.api.types.is_datetime64_any_dtype(summary["start_time"])
    assert summary["start_time"].isna().sum() == 2  # r6, one row per species
    assert summary["species_id"].dtype == "int64" and summary["max_score"].dtype == "float64"
    assert summary.loc[0, "site"] == "A" and summary.loc[0, "species"] == COQUI


def test_presence_by_day_counts_recordings_exactly(tmp_path):
    table = presence_table(summary=read_recording_summary(summary_csv(tmp_path)), threshold=0.5)
    assert list(table.columns) == PRESENCE_COLUMNS
    assert list(zip(table.site, table.period, table.species_id)) == [
        ("A", "2024-04-01", 0), ("A", "2024-04-01", 1), ("A", "2024-04-02", 0), ("A", "2024-04-02", 1),
        ("A", "undated", 0), ("A", "undated", 1),
        ("B", "2024-04-01", 0), ("B", "2024-04-01", 1), ("B", "2024-04-02", 0), ("B", "2024-04-02", 1)]
    assert cells(table) == {
        ("A", "2024-04-01", 0): (2, 1, True), ("A", "2024-04-01", 1): (2, 1, True),
        ("A", "2024-04-02", 0): (1, 1, True), ("A", "2024-04-02", 1): (1, 0, False),  # 0.5 >= 0.5
        ("A", "undated", 0): (1, 1, True), ("A", "undated", 1): (1, 0, False),
        ("B", "2024-04-01", 0): (1, 0, False), ("B", "2024-04-01", 1): (1, 1, True),
        ("B", "2024-04-02", 0): (1, 0, False), ("B", "2024-04-02", 1): (1, 0, False)}
    first = table.iloc[0]
    assert first.presence == 0.5 and first.max_score == 0.9 and first.species == COQUI
    assert first.audio_hours == pytest.approx(120 / 3600)
    assert table.iloc[4].audio_hours == pytest.approx(30 / 3600)
    assert table["present"].dtype == bool and table["recordings"].dtype == "int64"


def test_presence_by_hour_and_by_topk_mean(tmp_path):
    summary = read_recording_summary(summary_csv(tmp_path))
    table = presence_table(summary=summary, threshold=0.5, by="hour")
    assert sorted(set(zip(table.site, table.period))) == [
        ("A", "2024-04-01 06:00"), ("A", "2024-04-01 07:00"), ("A", "2024-04-02 06:00"), ("A", "undated"),
        ("B", "2024-04-01 06:00"), ("B", "2024-04-02 23:00")]
    assert (table["recordings"] == 1).all()
    topk = cells(presence_table(summary=summary, threshold=0.5, by="day", score="topk_mean"))
    assert topk[("A", "2024-04-01", 0)] == (2, 1, True) and topk[("A", "2024-04-02", 0)] == (1, 0, False)
    assert topk[("A", "2024-04-01", 1)] == (2, 1, True) and topk[("B", "2024-04-01", 1)] == (1, 1, True)


def test_presence_by_week_month_and_the_whole_deployment(tmp_path):
    summary = read_recording_summary(summary_csv(tmp_path))
    weeks = presence_table(summary=summary, threshold=0.5, by="week")
    assert sorted(set(zip(weeks.site, weeks.period))) == [("A", "2024-W14"), ("A", "undated"), ("B", "2024-W14")]
    assert set(presence_table(summary=summary, threshold=0.5, by="month").period) == {"2024-04", "undated"}
    whole = cells(presence_table(summary=summary, threshold=0.5, by="all"))  # one period per site, undated included
    assert whole[("A", "all", 0)] == (4, 3, True) and whole[("B", "all", 1)] == (2, 1, True)


def test_a_species_without_a_row_counts_as_absent(tmp_path):
    path = summary_csv(tmp_path)
    extra = "C/r7.wav,C/r7,,2024-04-03T05:00:00,60,1,Setophaga angelae,0.9,0.8\n"  # no site, no species-0 row
    path.write_text(path.read_text() + extra)
    table = presence_table(summary=read_recording_summary(path), threshold=0.5)
    row_zero, row_one = table[table["site"] == ""].itertuples()
    assert (row_zero.species_id, row_zero.recordings, row_zero.recordings_present) == (0, 1, 0)
    assert math.isnan(row_zero.max_score) and row_zero.species == COQUI
    assert (row_one.species_id, row_one.recordings_present, row_one.presence) == (1, 1, 1.0)


@pytest.mark.parametrize("options, message", [
    ({"threshold": 1.5}, "threshold must be between 0 and 1"),
    ({"threshold": -0.1}, "threshold must be between 0 and 1"),
    ({"threshold": float("nan")}, "threshold must be between 0 and 1"),
    ({"threshold": 0.5, "score": "mean"}, "score must be one of max_score, topk_mean"),
    ({"threshold": 0.5, "by": "season"}, "by must be one of hour, day, week, month, all"),
])
def test_bad_options_are_input_errors(tmp_path, options, message):
    summary = read_recording_summary(summary_csv(tmp_path))
    with pytest.raises(InputError, match=message):
        presence_table(summary=summary, **options)


def test_missing_columns_name_the_file_and_the_columns(tmp_path):
    path = tmp_path / "recordings.csv"
    path.write_text("path,recording_id,site,species_id,max_score\nA/r1.wav,A/r1,A,0,0.9\n")
    with pytest.raises(InputError) as caught:
        read_recording_summary(path)
    assert str(path) in str(caught.value)
    assert "missing column(s) start_time, duration_s, species, topk_mean" in str(caught.value)
    with pytest.raises(InputError, match="not found"):
        read_recording_summary(tmp_path / "nothing.csv")


def test_bad_rows_are_reported_by_line(tmp_path):
    path = tmp_path / "recordings.csv"
    path.write_text(HEADER + "A/r1.wav,A/r1,A,yesterday,60,0,x,0.9,0.5\nA/r1.wav,A/r1,A,,sixty,zero,x,high,0.5\n")
    with pytest.raises(InputError) as caught:
        read_recording_summary(path)
    text = str(caught.value)
    assert "line 2: start_time 'yesterday' is not an ISO 8601 time" in text
    assert "line 3: species_id 'zero' is not a whole number" in text
    assert "line 3: duration_s 'sixty' is not a number >= 0" in text and "line 3: max_score 'high'" in text


def test_plot_presence_writes_a_png(tmp_path):
    table = presence_table(summary=read_recording_summary(summary_csv(tmp_path)), threshold=0.5)
    out = plot_presence(table, out_path=tmp_path / "plots" / "presence.png", title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="empty"):
        plot_presence(table.iloc[:0], out_path=tmp_path / "empty.png")


runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_summarize_writes_the_table_and_the_plot(tmp_path):
    summary = summary_csv(tmp_path)
    out, plot = tmp_path / "out" / "presence.csv", tmp_path / "out" / "presence.png"
    result = invoke("summarize", "--summary", summary, "--threshold", 0.5, "--out", out, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert "6 recordings: 2 sites, 3 periods (day), 2 species" in result.output
    assert "1 recording(s) have no start time" in result.output
    assert f"wrote {out}" in result.output and f"wrote {plot}" in result.output
    written = pd.read_csv(out, keep_default_na=False)
    assert list(written.columns) == PRESENCE_COLUMNS and len(written) == 10
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"


def test_cli_summarize_reads_a_job_folder(tmp_path):
    summary_csv(tmp_path)
    out = tmp_path / "presence.csv"
    result = invoke("summarize", "--job", tmp_path, "--by", "hour", "--score", "topk_mean", "--out", out)
    assert result.exit_code == 0, result.output
    assert "5 periods (hour)" in result.output  # A and B share 2024-04-01 06:00 and len(pd.read_csv(out)) == 12


def test_cli_summarize_errors_without_traceback(tmp_path):
    summary = summary_csv(tmp_path)
    out = tmp_path / "presence.csv"
    for args in ([], ["--job", tmp_path, "--summary", summary]):
        result = invoke("summarize", *args, "--out", out)
        assert result.exit_code == 2 and "exactly one of --job DIR" in result.output
    empty_job = tmp_path / "job"
    empty_job.mkdir()
    result = invoke("summarize", "--job", empty_job, "--out", out)
    assert result.exit_code == 2 and "no recordings.csv" in result.output
    result = invoke("summarize", "--summary", summary, "--threshold", 2, "--out", out)
    assert result.exit_code == 2 and "threshold must be between 0 and 1" in result.output
    assert "Traceback" not in result.output and not out.exists()
