"""Embedding search: an archive indexed with a trained CNN run's features, searched by a box,
a clip and from the CLI; candidates in the columns the review page reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dawnchorus.batch.engine import read_parts
from dawnchorus.cli import app
from dawnchorus.errors import InputError
from dawnchorus.review import read_candidates_csv
from dawnchorus.search import index_archive, open_index, read_queries, resolve_index_embedder, search_index
from dawnchorus.search.index import META_FILE
from dawnchorus.templates import CANDIDATE_COLUMNS

from test_batch_jobs import trained  # noqa: F401  (a fixture: a tiny CNN run and an archive of two sites)

LABELS = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\n"


@pytest.fixture(scope="module")
def indexed(trained, tmp_path_factory):  # noqa: F811
    _, run, archive = trained
    out = tmp_path_factory.mktemp("index") / "index"
    summary = index_archive(audio_root=archive, out_dir=out, embedder=run, hop_s=0.5)
    return run, archive, out, summary


def test_index_holds_one_vector_per_window_of_every_finished_file(indexed):
    run, archive, out, summary = indexed
    assert (summary.done_now, summary.failed) == (6, 1)  # the broken WAV is listed, not indexed
    opened = open_index(out)
    parts = read_parts(out)
    assert len(opened) == len(parts) and opened.rows["recording_id"].nunique() == 6
    assert opened.meta["embedder"] == str(Path(run).resolve()) and opened.meta["dim"] == len(parts["vector"].iloc[0])
    again = index_archive(audio_root=archive, out_dir=out, embedder=run, hop_s=0.5)  # resumed: nothing embedded again
    assert (again.done_now, again.done_before) == (0, 6) and len(open_index(out)) == len(parts)


def test_a_box_finds_the_same_call_in_the_copy_of_its_recording(indexed, tmp_path):
    run, archive, out, _ = indexed
    rows = open_index(out).rows
    recording = next(r for r in rows["recording_id"].unique() if r.startswith("siteA"))
    twin = recording.replace("siteA", "siteB")  # the archive holds each test file in both sites
    # a box as long as the embedder's window, on the index's hop grid: its twin window is the same audio
    (tmp_path / "query.csv").write_text(LABELS + f"{recording},3,1,1.0,500,2.5,4000\n")
    queries = read_queries(tmp_path / "query.csv", audio_root=archive)
    candidates = search_index(index=open_index(out), queries=queries, embedder=resolve_index_embedder(run), top=5)
    assert list(candidates.columns) == [*CANDIDATE_COLUMNS, "path"] and len(candidates) == 5
    best = candidates.iloc[0]
    assert best.recording_id == twin and (best.t_min, best.t_max) == (1.0, 2.5) and best.score > 0.98
    assert (best.species_id, best.songtype_id, best.f_min, best.f_max) == (3, 1, 500, 4000)
    assert candidates["score"].is_monotonic_decreasing
    own = candidates[candidates.recording_id == recording]
    assert ((own.t_max <= 1.0) | (own.t_min >= 2.5)).all()  # the example itself is not a candidate
    for _, group in candidates.groupby("recording_id"):  # one candidate per call: candidates do not overlap
        spans = group.sort_values("t_min")[["t_min", "t_max"]].to_numpy()
        assert (spans[1:, 0] >= spans[:-1, 1]).all()


def test_a_clip_cut_from_the_archive_finds_where_it_was_cut(indexed, tmp_path):
    run, archive, out, _ = indexed
    embedder = resolve_index_embedder(run)
    source = sorted((archive / "siteB").rglob("*.flac"))[0]
    samples, rate = sf.read(str(source), dtype="float32")
    start_s = 1.5  # on the index's hop grid
    sf.write(str(tmp_path / "clip.wav"), samples[int(start_s * rate): int((start_s + embedder.window_s) * rate)], rate)
    with pytest.raises(InputError, match="--species"):
        read_queries(tmp_path / "clip.wav", audio_root=None)
    queries = read_queries(tmp_path / "clip.wav", audio_root=None, species_id=2)
    candidates = search_index(index=open_index(out), queries=queries, embedder=embedder, top=3)
    top_two = candidates.head(2)
    assert set(top_two.path.str.split("/").str[0]) == {"siteA", "siteB"}  # the file and its copy, both exactly there
    assert (top_two.t_min <= start_s).all() and (top_two.t_max >= start_s + embedder.window_s).all()
    assert (top_two.score > 0.98).all() and top_two.template_id.str.startswith("search:clip:").all()


def test_search_refuses_what_it_cannot_answer(indexed, tmp_path):
    run, archive, out, _ = indexed
    with pytest.raises(InputError, match="not an index"):
        open_index(tmp_path)
    (tmp_path / "query.csv").write_text(LABELS + "nowhere,3,1,1.0,500,2.0,4000\n")
    with pytest.raises(InputError, match="no audio under"):
        read_queries(tmp_path / "query.csv", audio_root=archive)
    moved = tmp_path / "moved"
    moved.mkdir()
    for path in out.iterdir():
        if path.is_file():
            (moved / path.name).write_bytes(path.read_bytes())
    meta = json.loads((moved / META_FILE).read_text())
    (moved / META_FILE).write_text(json.dumps({**meta, "embedder_name": "cnn-another-run"}))
    clip = tmp_path / "clip.wav"
    sf.write(str(clip), np.zeros(16000, np.float32), 16000)
    with pytest.raises(InputError, match="was built with embedder"):
        search_index(index=open_index(moved), queries=read_queries(clip, audio_root=None, species_id=1),
                     embedder=resolve_index_embedder(run), top=3)


def test_cli_indexes_searches_and_the_review_page_reads_the_candidates(trained, tmp_path):  # noqa: F811
    _, run, archive = trained
    runner = CliRunner()
    built = runner.invoke(app, ["index", "--audio", str(archive), "--out", str(tmp_path / "idx"), "--embedder", str(run)])
    assert built.exit_code == 3, built.output  # one file of the archive is broken: listed in failed.csv
    assert "time per stage" in built.output and (tmp_path / "idx" / "ann.usearch").is_file()
    recording = open_index(tmp_path / "idx").rows["recording_id"].iloc[0]
    (tmp_path / "query.csv").write_text(LABELS + f"{recording},1,1,0.5,300,1.5,3000\n")
    found = runner.invoke(app, ["search", "--index", str(tmp_path / "idx"), "--query", str(tmp_path / "query.csv"), "--top", "4",
                                "--out", str(tmp_path / "candidates.csv")])
    assert found.exit_code == 0, found.output
    assert "4 candidate(s)" in found.output
    candidates = read_candidates_csv(tmp_path / "candidates.csv")
    assert len(candidates) == 4 and all(c.species_id == 1 and c.template_id.startswith("search:") for c in candidates)
    refused = runner.invoke(app, ["search", "--index", str(tmp_path / "idx"), "--query", str(tmp_path / "nothing.wav"),
                                  "--out", str(tmp_path / "x.csv")])
    assert refused.exit_code == 2 and "file not found" in refused.output
    assert pd.read_csv(tmp_path / "candidates.csv").columns[-1] == "path"
