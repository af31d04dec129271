"""Names that come from other people's files (label recording ids, URLs sent to the review server)
never read or write outside the folders the user chose."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dawnchorus.cli import app
from dawnchorus.data.annotations import Box
from dawnchorus.data.raven import export_raven_tables
from dawnchorus.errors import InputError
from dawnchorus.review.candidates import read_candidates_csv
from dawnchorus.review.server import MAX_BODY_BYTES

sys.path.insert(0, str(Path(__file__).parents[1]))  # the suite's shared helpers, when this folder runs alone
from conftest import LABEL_HEADER  # noqa: E402
from test_review_api import CANDIDATE_HEADER, CANDIDATE_ROWS, make_corpus, new_app  # noqa: E402

SECRET = "root:x:0:0:the secret that must not leak"


def _box(recording_id: str) -> Box:
    return Box(recording_id, 0, 1, 1.0, 100.0, 2.0, 900.0, 1)


@pytest.mark.parametrize("recording_id", ["../escaped", "a/../../escaped", "/tmp/escaped_absolute", "link_out/escaped"])
def test_recording_ids_cannot_make_raven_export_write_outside_its_folder(tmp_path, recording_id):
    out, outside = tmp_path / "tables", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    os.symlink(outside, out / "link_out")  # a link someone left in the output folder
    before = set(tmp_path.rglob("*"))
    with pytest.raises(InputError, match=r"would write outside"):
        export_raven_tables(boxes=[_box("fine"), _box(recording_id)], out_dir=out)
    assert set(tmp_path.rglob("*")) == before  # nothing written, not even the good table
    assert not Path("/tmp/escaped_absolute.Table.1.selections.txt").exists()


def test_relative_path_ids_of_archives_stay_nested_inside(tmp_path):
    written = export_raven_tables(boxes=[_box("siteA/20240401/20240401_060000"), _box("plain")], out_dir=tmp_path / "tables")
    assert sorted(p.relative_to(tmp_path / "tables").as_posix() for p in written) == [
        "plain.Table.1.selections.txt", "siteA/20240401/20240401_060000.Table.1.selections.txt"]


def test_cli_raven_export_refuses_a_traversing_label_row(tmp_path):
    labels = tmp_path / "train_tp.csv"
    labels.write_text(LABEL_HEADER + "../../etc/cron.d/x,0,1,1.0,100,2.0,900\n")
    result = CliRunner().invoke(app, ["raven", "export", str(labels), "--out", str(tmp_path / "tables")])
    assert result.exit_code == 2 and "would write outside" in result.output and "Traceback" not in result.output


@pytest.fixture
def leaky_corpus(tmp_path: Path) -> Path:
    """The review corpus plus a recording that is a link to a secret text file outside the audio folder."""
    corpus = make_corpus(tmp_path / "corpus")
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    os.symlink(secret, corpus / "data" / "train" / "leak.wav")
    (corpus / "candidates.csv").write_text(CANDIDATE_HEADER + CANDIDATE_ROWS + "leak,0,1,0.1,100,0.5,900,0.5,\n")
    return corpus


def test_a_recording_linked_outside_the_audio_folder_is_left_out_and_never_served(leaky_corpus):
    with pytest.warns(UserWarning, match=r"leak.wav points outside"):
        client = TestClient(new_app(leaky_corpus, candidates=read_candidates_csv(leaky_corpus / "candidates.csv")))
    listed = client.get("/api/candidates").json()
    assert "leak" not in {c["recording_id"] for c in listed} and len(listed) == 4
    for route in ("spectrogram.png", "audio.wav", "history"):
        response = client.get(f"/api/candidates/5/{route}")
        assert response.status_code == 404 and "secret" not in response.text, (route, response.text)


@pytest.mark.parametrize("path", [
    "/static/%252e%252e%252fserver.py", "/static/..%252fserver.py", "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static//etc/passwd", "/static/review.js%00.py", "/api/candidates/%2e%2e/audio.wav", "/api/candidates/1e3/audio.wav",
    "/api/candidates/-1/audio.wav", "/api/candidates/99999999999999999999999/audio.wav", "/api/candidates/0x1/audio.wav",
    "/static/..%5c..%5cserver.py",
])
def test_double_encoded_and_odd_paths_get_4xx(leaky_corpus, path):
    response = TestClient(new_app(leaky_corpus)).get(path)
    assert 400 <= response.status_code < 500, (path, response.status_code)
    assert "secret" not in response.text and "import" not in response.text


def test_oversized_bodies_get_413_whether_declared_or_chunked_and_write_nothing(leaky_corpus):
    client = TestClient(new_app(leaky_corpus))
    padded = b'{"decision": "tp", "reviewer": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    assert client.post("/api/candidates/1/decision", content=padded, headers={"content-type": "application/json"}).status_code == 413

    def chunks():
        yield padded[:100]
        for start in range(100, len(padded), 512):
            yield padded[start:start + 512]

    assert client.post("/api/candidates/1/decision", content=chunks(), headers={"content-type": "application/json"}).status_code == 413
    lying = client.post("/api/candidates/1/decision", content=b'{"decision": "tp"}',
                        headers={"content-type": "application/json", "content-length": "99999999"})
    assert lying.status_code in (400, 413)
    with sqlite3.connect(leaky_corpus / "review.sqlite") as connection:
        assert connection.execute("SELECT count(*) FROM decisions").fetchone()[0] == 0
    assert client.post("/api/candidates/1/decision", json={"decision": "tp"}).status_code == 200  # a real decision still works
