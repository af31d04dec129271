"""What an archive job has finished: ``job.json`` (settings and their fingerprint) and an
append-only ``journal.jsonl`` with one line per file that ended, done or failed.

A line is written only after the file's results are safely renamed into place, and is
flushed to disk before the next file starts, so a job killed at any moment resumes with
every finished file kept and none counted twice. A line cut short by the kill is dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import InputError

JOB_FORMAT = "dawnchorus-job-v1"
JOB_FILE = "job.json"
JOURNAL_FILE = "journal.jsonl"


def fingerprint_digest(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_or_start_job(out_dir: Path, *, command: str, audio_root: Path, fingerprint: dict, force: bool) -> bool:
    """Write ``job.json`` for a new job, or check that an existing one ran with the same settings.

    Returns True when earlier results in ``out_dir`` may be reused. Different settings are
    refused (their results must not mix) unless ``force``, which discards the old results.
    """
    path = out_dir / JOB_FILE
    wanted = {"format": JOB_FORMAT, "command": command, "audio_root": str(audio_root.resolve()),
              "fingerprint": fingerprint, "fingerprint_digest": fingerprint_digest(fingerprint)}
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            raise InputError(f"{path}: unreadable job file; remove {out_dir} or choose another --out") from None
        same = {k: saved.get(k) for k in ("command", "audio_root", "fingerprint_digest")} == \
               {k: wanted[k] for k in ("command", "audio_root", "fingerprint_digest")}
        if same:
            return True
        if not force:
            raise InputError(f"{out_dir}: holds results of a job with other settings ({describe_change(saved, wanted)}); "
                             "they must not mix: choose a new --out, or pass --force to discard the old results")
        discard_results(out_dir)
    elif out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise InputError(f"{out_dir}: exists and is not an archive job folder; choose a new --out (or --force to use it)")
    wanted["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_text(path, json.dumps(wanted, indent=2, default=str) + "\n")
    return False


def describe_change(saved: dict, wanted: dict) -> str:
    changes = []
    for key in ("command", "audio_root"):
        if saved.get(key) != wanted.get(key):
            changes.append(f"{key}: {saved.get(key)!r} -> {wanted.get(key)!r}")
    old, new = saved.get("fingerprint") or {}, wanted["fingerprint"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            changes.append(f"{key}: {_short(old.get(key))} -> {_short(new.get(key))}")
    return "; ".join(changes) or "fingerprint differs"


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def discard_results(out_dir: Path) -> None:
    import shutil

    for name in (JOB_FILE, JOURNAL_FILE):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "parts", ignore_errors=True)


@dataclass(frozen=True)
class JournalEntry:
    path: str
    status: str  # "done" or "failed"
    size_bytes: int
    mtime_ns: int
    part: str = ""  # results file, relative to the job folder
    rows: int = 0
    error: str = ""
    seconds: float = 0.0


class Journal:
    """The job's journal: the last line per file wins (a retried file ends done or failed again)."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / JOURNAL_FILE
        self.entries: dict[str, JournalEntry] = {}
        if self.path.is_file():
            self._read()
        self._handle = None

    def _read(self) -> None:
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        if len(complete) != len(raw):  # killed mid-line: drop the fragment so appends start on a fresh line
            with open(self.path, "r+b") as handle:
                handle.truncate(len(complete))
        for line in complete.decode("utf-8", errors="replace").splitlines():
            try:
                entry = JournalEntry(**json.loads(line))
            except (ValueError, TypeError):
                continue
            self.entries[entry.path] = entry

    def record(self, entry: JournalEntry) -> None:
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(entry.__dict__) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.entries[entry.path] = entry

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_job(out_dir: str | Path) -> dict | None:
    """``job.json`` of a job folder, or None when ``out_dir`` is not one."""
    path = Path(out_dir) / JOB_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def finished_files(out_dir: str | Path) -> dict[Path, JournalEntry]:
    """Absolute audio path -> journal entry of every file the job finished (for reading its parts)."""
    job = read_job(out_dir)
    if job is None:
        return {}
    root = Path(job["audio_root"])
    return {root / e.path: e for e in Journal(Path(out_dir)).entries.values() if e.status == "done"}
