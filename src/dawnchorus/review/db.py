"""The review database (SQLite): candidate boxes and every decision ever made about them.

Decisions are appended, never updated, so the history of who said what and when is kept;
the latest decision per candidate (highest row id) is the one that counts. Each write is its
own committed transaction, so a crash loses at most the click in flight. Connections are
short-lived (one per request) because the web server answers requests on several threads.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import InputError, OutputError

DECISIONS = ("tp", "fp", "skip")
SCHEMA_VERSION = 1
BOX_DECIMALS = 4  # the precision label CSVs are written with, so a box survives export and re-import unchanged
KEY_COLUMNS = ("recording_id", "species_id", "songtype_id", "t_min", "f_min", "t_max", "f_max", "template_id")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    recording_id TEXT NOT NULL,
    species_id INTEGER NOT NULL,
    songtype_id INTEGER NOT NULL,
    t_min REAL NOT NULL,
    f_min REAL NOT NULL,
    t_max REAL NOT NULL,
    f_max REAL NOT NULL,
    template_id TEXT NOT NULL DEFAULT '',
    score REAL,
    source TEXT NOT NULL,
    UNIQUE ({", ".join(KEY_COLUMNS)})
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    decision TEXT NOT NULL CHECK (decision IN ('tp', 'fp', 'skip')),
    reviewer TEXT NOT NULL,
    decided_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_by_candidate ON decisions (candidate_id, id);

PRAGMA user_version = {SCHEMA_VERSION};
"""

# added after version 1 shipped; created in older databases when they are opened (additive)
_MODES_TABLE = """CREATE TABLE IF NOT EXISTS decision_modes (
    decision_id INTEGER PRIMARY KEY REFERENCES decisions(id),
    mode TEXT NOT NULL
);"""

_LATEST = """
SELECT d.id, d.candidate_id, d.decision, d.reviewer, d.decided_at FROM decisions AS d
JOIN (SELECT candidate_id, MAX(id) AS id FROM decisions GROUP BY candidate_id) AS last ON d.id = last.id
"""


@dataclass(frozen=True)
class Decision:
    id: int
    candidate_id: int
    decision: str
    reviewer: str
    decided_at: str  # ISO 8601, UTC

    def as_dict(self) -> dict:
        return {"decision": self.decision, "reviewer": self.reviewer, "decided_at": self.decided_at}


_DISK_TROUBLE = ("disk is full", "readonly database", "disk I/O error", "unable to open database file")


@contextmanager
def open_db(path: str | Path, *, create: bool = True) -> Iterator[sqlite3.Connection]:
    """A connection to the review database at ``path`` (created with its schema when ``create``)."""
    path = Path(path)
    if not create and not path.is_file():
        raise InputError(f"{path}: review database not found; it is written by 'dawnchorus review --db {path}'")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with closing(sqlite3.connect(str(path), timeout=10.0)) as connection:  # waits up to 10 s for another writer
            connection.row_factory = sqlite3.Row
            # write-ahead log: readers never block the writer, and a process killed mid-write
            # leaves the last committed decision in place (the log is replayed on the next open)
            connection.execute("PRAGMA journal_mode=WAL")
            _check_schema(connection, path)
            yield connection
    except sqlite3.OperationalError as exc:
        if any(words in str(exc) for words in _DISK_TROUBLE):  # the file is fine; the disk under it is not
            raise OutputError(f"{path}: cannot save to the review database ({exc}); free some space or make the folder "
                              "writable, then decide again. Every decision saved before is kept") from None
        raise InputError(f"{path}: not a usable review database ({exc}); pass a new file with --db") from None
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: not a usable review database ({exc}); pass a new file with --db") from None


def _check_schema(connection: sqlite3.Connection, path: Path) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        tables = connection.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if tables:
            raise InputError(f"{path}: is a SQLite file but not a dawnchorus review database; pass a new file with --db")
        connection.executescript(_SCHEMA)
    elif version != SCHEMA_VERSION:
        raise InputError(f"{path}: review database schema version {version}, this dawnchorus reads version {SCHEMA_VERSION}")
    try:
        connection.execute(_MODES_TABLE)
    except sqlite3.OperationalError:  # a read-only copy of an older database still reads; only its modes are missing
        pass


def box_key(recording_id: str, species_id: int, songtype_id: int, t_min: float, f_min: float, t_max: float,
            f_max: float, template_id: str = "") -> tuple:
    """The identity of a candidate: its box, rounded as label files round it, and its template."""
    return (str(recording_id), int(species_id), int(songtype_id), round(float(t_min), BOX_DECIMALS),
            round(float(f_min), BOX_DECIMALS), round(float(t_max), BOX_DECIMALS), round(float(f_max), BOX_DECIMALS),
            str(template_id))


def store_candidates(connection: sqlite3.Connection, rows: Iterable[dict]) -> list[int]:
    """Insert candidates (dicts with the key columns, ``score`` and ``source``); return their ids in order.

    A candidate already stored keeps its id (so its decisions stay attached) and gets the new score.
    """
    keys, values = [], []
    for row in rows:
        key = box_key(*(row[c] for c in KEY_COLUMNS))
        keys.append(key)
        values.append(key + (row.get("score"), row.get("source", "candidates")))
    columns = ", ".join(KEY_COLUMNS)
    with connection:
        connection.executemany(
            f"INSERT INTO candidates ({columns}, score, source) VALUES ({', '.join('?' * (len(KEY_COLUMNS) + 2))}) "
            f"ON CONFLICT ({columns}) DO UPDATE SET score = excluded.score",
            values,
        )
    ids = {tuple(row[1:]): row[0] for row in connection.execute(f"SELECT id, {columns} FROM candidates")}
    return [ids[key] for key in keys]


def record_decision(connection: sqlite3.Connection, *, candidate_id: int, decision: str, reviewer: str,
                    decided_at: datetime | None = None, mode: str | None = None) -> Decision:
    """Append one decision and commit it before returning; ``mode`` is the active-learning queue
    it was made in (``review.learning``), kept beside it."""
    if decision not in DECISIONS:
        raise InputError(f"decision must be one of {', '.join(DECISIONS)}; got {decision!r}")
    stamp = (decided_at or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="milliseconds")
    with connection:
        cursor = connection.execute(
            "INSERT INTO decisions (candidate_id, decision, reviewer, decided_at) VALUES (?, ?, ?, ?)",
            (int(candidate_id), decision, reviewer, stamp),
        )
        if mode is not None:
            connection.execute("INSERT INTO decision_modes (decision_id, mode) VALUES (?, ?)", (cursor.lastrowid, mode))
    return Decision(cursor.lastrowid, int(candidate_id), decision, reviewer, stamp)


def decided_in_mode(connection: sqlite3.Connection, mode: str) -> set[int]:
    """The candidates with a decision made in ``mode`` (served by it), whatever their latest decision says."""
    rows = connection.execute("SELECT DISTINCT d.candidate_id FROM decisions AS d "
                              "JOIN decision_modes AS m ON m.decision_id = d.id WHERE m.mode = ?", (mode,))
    return {row[0] for row in rows}


def latest_decisions(connection: sqlite3.Connection) -> dict[int, Decision]:
    """Candidate id -> the decision that counts (the last one recorded)."""
    return {row["candidate_id"]: Decision(*row) for row in connection.execute(_LATEST)}


def decision_history(connection: sqlite3.Connection, candidate_id: int) -> list[Decision]:
    rows = connection.execute(
        "SELECT id, candidate_id, decision, reviewer, decided_at FROM decisions WHERE candidate_id = ? ORDER BY id",
        (int(candidate_id),),
    )
    return [Decision(*row) for row in rows]


def decided_candidates(connection: sqlite3.Connection) -> list[dict]:
    """Every candidate with a decision: its box columns plus ``decision``, ``decision_id`` and the
    ``mode`` that served it (None without active learning), oldest decision first."""
    rows = connection.execute(
        f"SELECT c.*, last.decision, last.id AS decision_id, m.mode FROM candidates AS c JOIN ({_LATEST}) AS last "
        "ON last.candidate_id = c.id LEFT JOIN decision_modes AS m ON m.decision_id = last.id ORDER BY last.id"
    )
    return [dict(row) for row in rows]
