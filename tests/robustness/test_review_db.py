"""The review database under concurrent servers and a kill mid-write: no decision lost, nothing corrupt."""

from __future__ import annotations

import multiprocessing
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from dawnchorus.review import db
from dawnchorus.review.db import open_db, record_decision

sys.path.insert(0, str(Path(__file__).parents[1]))  # the suite's shared helpers, when this folder runs alone
from test_review_api import make_corpus, new_app  # noqa: E402

WRITER = """
import sys
from dawnchorus.review.db import open_db, record_decision
with open_db(sys.argv[1]) as connection:
    for i in range(100000):
        decision = record_decision(connection, candidate_id=i % 50 + 1, decision="tp", reviewer="killed")
        print(decision.id, flush=True)  # printed only after the commit
"""


def _write_decisions(db_path: str, reviewer: str, count: int) -> None:
    with open_db(db_path) as connection:
        for i in range(count):
            record_decision(connection, candidate_id=i % 50 + 1, decision="fp" if i % 3 else "tp", reviewer=reviewer)


def _integrity(db_path: Path) -> str:
    with sqlite3.connect(str(db_path)) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def test_two_processes_writing_one_database_lose_nothing(tmp_path):
    db_path = tmp_path / "review.sqlite"
    with open_db(db_path) as connection:  # the schema once, as the first server does
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_decisions, args=(str(db_path), name, 300)) for name in ("ana", "ben")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    with open_db(db_path, create=False) as connection:
        rows = connection.execute("SELECT reviewer, count(*), count(DISTINCT id) FROM decisions GROUP BY reviewer").fetchall()
    assert sorted(tuple(r) for r in rows) == [("ana", 300, 300), ("ben", 300, 300)]
    assert _integrity(db_path) == "ok"


def test_a_writer_killed_mid_write_keeps_every_committed_decision(tmp_path):
    db_path = tmp_path / "review.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db_path)], stdout=subprocess.PIPE, text=True)
    committed = [int(writer.stdout.readline()) for _ in range(200)]
    writer.send_signal(signal.SIGKILL)  # while it keeps writing
    writer.wait(timeout=30)
    with open_db(db_path, create=False) as connection:
        stored = {row[0] for row in connection.execute("SELECT id FROM decisions")}
        record_decision(connection, candidate_id=1, decision="fp", reviewer="after")  # still writable
    assert set(committed) <= stored
    assert _integrity(db_path) == "ok"


def test_a_full_disk_under_the_database_is_a_507_naming_it_and_keeps_earlier_decisions(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path)
    client = TestClient(new_app(corpus))
    assert client.post("/api/candidates/1/decision", json={"decision": "tp"}).status_code == 200
    real = db.record_decision

    def disk_full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")  # what SQLite raises when a write finds no room

    monkeypatch.setattr(db, "record_decision", disk_full)
    refused = client.post("/api/candidates/2/decision", json={"decision": "fp"})
    assert refused.status_code == 507
    assert "review.sqlite: cannot save" in refused.json()["detail"] and "free some space" in refused.json()["detail"]
    monkeypatch.setattr(db, "record_decision", real)
    assert client.post("/api/candidates/2/decision", json={"decision": "fp"}).status_code == 200
    decided = {c["id"]: c["decision"] for c in client.get("/api/candidates").json()}
    assert decided[1] == "tp" and decided[2] == "fp"
