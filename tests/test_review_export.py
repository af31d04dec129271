"""Review decisions to label files, and the 'dawnchorus review' command forms."""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import dawnchorus.review
from dawnchorus.cli import app as cli_app
from dawnchorus.data import load_dataset, read_boxes
from dawnchorus.errors import InputError
from dawnchorus.review import export_labels
from dawnchorus.review.server import bind_socket

from conftest import LABEL_HEADER
from test_review_api import CANDIDATE_HEADER, make_corpus, new_app

runner = CliRunner()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path)


def decide(client: TestClient, decisions: dict[int, list[str]]) -> None:
    for candidate_id, sequence in decisions.items():
        for decision in sequence:
            assert client.post(f"/api/candidates/{candidate_id}/decision", json={"decision": decision}).status_code == 200


def rows(path: Path) -> list[tuple]:
    return [tuple(r) for r in pd.read_csv(path).itertuples(index=False)]


def test_export_merges_with_existing_labels_without_duplicates(corpus):
    data = corpus / "data"
    (data / "train_tp.csv").write_text(LABEL_HEADER + "rec_a,0,1,0.5,800,1.2,1200\n"  # = candidate 1, marked TP again
                                       "rec_b,1,1,0.0,500,0.4,900\n"  # hand-made, untouched
                                       "rec_b,0,1,0.2,2500,0.9,3500\n")  # = candidate 3, now marked FP: moves
    (data / "train_fp.csv").write_text(LABEL_HEADER + "rec_a,2,1,2.5,100,2.9,300\n")
    decide(TestClient(new_app(corpus)), {1: ["tp"], 2: ["fp", "tp"], 3: ["tp", "fp"], 4: ["skip"]})

    summary = export_labels(db_path=corpus / "review.sqlite", out_dir=data)
    assert rows(data / "train_tp.csv") == [("rec_a", 0, 1, 0.5, 800.0, 1.2, 1200.0), ("rec_b", 1, 1, 0.0, 500.0, 0.4, 900.0),
                                           ("rec_a", 1, 1, 1.5, 2000.0, 2.0, 4000.0)]
    assert rows(data / "train_fp.csv") == [("rec_a", 2, 1, 2.5, 100.0, 2.9, 300.0), ("rec_b", 0, 1, 0.2, 2500.0, 0.9, 3500.0)]
    assert (summary.tp_added, summary.fp_added, summary.already_present, summary.moved, summary.skipped) == (1, 1, 1, 1, 1)

    before = [(data / name).read_bytes() for name in ("train_tp.csv", "train_fp.csv")]
    export_labels(db_path=corpus / "review.sqlite", out_dir=data)  # exporting twice changes nothing
    assert [(data / name).read_bytes() for name in ("train_tp.csv", "train_fp.csv")] == before
    assert not list(data.glob(".*.tmp"))


def test_exported_labels_load_as_a_training_dataset(corpus):
    data = corpus / "data"
    (data / "sample_submission.csv").write_text("recording_id,s0,s1,s2\n")
    decide(TestClient(new_app(corpus)), {1: ["tp"], 2: ["fp"], 3: ["skip"]})
    export_labels(db_path=corpus / "review.sqlite", out_dir=data)
    dataset = load_dataset(data)
    assert [(b.recording_id, b.species_id) for b in dataset.tp] == [("rec_a", 0)]
    assert [(b.recording_id, b.species_id) for b in dataset.fp] == [("rec_a", 1)]


def test_candidates_sharing_a_box_are_exported_once_and_a_late_skip_keeps_the_verdict(corpus):
    (corpus / "twice.csv").write_text(CANDIDATE_HEADER + "rec_a,0,1,0.5,800,1.2,1200,0.9,tmpl_a\n"
                                      "rec_a,0,1,0.5,800,1.2,1200,0.8,tmpl_b\n")
    client = TestClient(new_app(corpus, candidates=dawnchorus.review.read_candidates_csv(corpus / "twice.csv")))
    first, second = [c["id"] for c in client.get("/api/candidates").json()]
    decide(client, {first: ["tp"], second: ["tp", "skip"]})
    export_labels(db_path=corpus / "review.sqlite", out_dir=corpus / "out")
    assert len(read_boxes(corpus / "out" / "train_tp.csv", label=1)) == 1
    assert rows(corpus / "out" / "train_fp.csv") == []


def test_export_needs_an_existing_database(tmp_path):
    with pytest.raises(InputError, match="review database not found"):
        export_labels(db_path=tmp_path / "nope.sqlite", out_dir=tmp_path / "out")
    assert not (tmp_path / "nope.sqlite").exists()


def test_cli_review_export(corpus):
    decide(TestClient(new_app(corpus)), {1: ["tp"], 2: ["fp"]})
    result = runner.invoke(cli_app, ["review", "export", "--db", str(corpus / "review.sqlite"), "--out", str(corpus / "labels")])
    assert result.exit_code == 0, result.output
    assert "train_tp.csv: 1 boxes (1 new)" in result.output
    assert rows(corpus / "labels" / "train_tp.csv") == [("rec_a", 0, 1, 0.5, 800.0, 1.2, 1200.0)]
    missing = runner.invoke(cli_app, ["review", "export", "--db", str(corpus / "missing.sqlite"), "--out", str(corpus)])
    assert missing.exit_code == 2 and "review database not found" in missing.output


@pytest.fixture
def fake_server(monkeypatch):
    """Replaces the blocking server with one that records its arguments and answers one request."""
    calls = {}

    def run_server(*, app, host, port, on_ready, token=None):
        from dawnchorus.review.server import page_url

        client = TestClient(app, base_url=f"http://{host}:{port}")
        calls.update(host=host, port=port, token=token, without_token=client.get("/api/candidates").status_code)
        calls["listing"] = client.get("/api/candidates", headers={"Authorization": f"Bearer {token}"} if token else {}).json()
        on_ready(page_url(host, port, token=token))

    monkeypatch.setattr(dawnchorus.review, "run_server", run_server)
    return calls


def test_cli_review_serves_candidates_on_localhost_and_prints_the_url(corpus, fake_server):
    result = runner.invoke(cli_app, ["review", "--candidates", str(corpus / "candidates.csv"), "--audio", str(corpus / "data" / "train"),
                                     "--db", str(corpus / "review.sqlite"), "--reviewer", "ana"])
    assert result.exit_code == 0, result.output
    assert "open http://127.0.0.1:8765/" in result.output and "reviewing 4 candidate(s)" in result.output
    assert fake_server["token"] is None and fake_server["without_token"] == 200  # localhost: Host checks, no token
    assert fake_server["host"] == "127.0.0.1" and len(fake_server["listing"]) == 4


def test_cli_review_detections_with_host_and_port(corpus, fake_server):
    path = corpus / "det.parquet"
    pd.DataFrame({"recording_id": ["rec_a", "rec_gone"], "species_id": [3, 1], "t_start_s": [0.0, 1.0], "t_end_s": [1.0, 2.0],
                  "score": [0.8, 0.9]}).to_parquet(path, index=False)
    result = runner.invoke(cli_app, ["review", "--detections", str(path), "--audio", str(corpus / "data"), "--db",
                                     str(corpus / "det.sqlite"), "--port", "9000", "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert "warning: 1 of 2 candidates left out" in result.stderr and "only requests carrying the token" in result.stderr
    assert (fake_server["host"], fake_server["port"]) == ("0.0.0.0", 9000)
    token = fake_server["token"]  # off localhost: a new token, in the printed link, required on every request
    assert len(token) >= 16 and f"http://0.0.0.0:9000/?token={token}" in result.output and fake_server["without_token"] == 401
    assert [(c["species_id"], c["f_max"]) for c in fake_server["listing"]] == [(3, 8000.0)]


@pytest.mark.parametrize("arguments, message", [
    ([], "exactly one of --candidates"),
    (["--candidates", "c.csv", "--detections", "d.parquet", "--audio", ".", "--db", "r.sqlite"], "exactly one of --candidates"),
    (["--candidates", "{corpus}/candidates.csv", "--db", "r.sqlite"], "--audio DIR and --db FILE are required"),
    (["--candidates", "{corpus}/nope.csv", "--audio", ".", "--db", "r.sqlite"], "candidates file not found"),
])
def test_cli_review_argument_errors(corpus, fake_server, arguments, message):
    result = runner.invoke(cli_app, ["review"] + [a.format(corpus=corpus) for a in arguments])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not fake_server


def test_busy_port_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(InputError, match="pick another port with --port"):
            bind_socket("127.0.0.1", taken.getsockname()[1])
