"""The first step of an archive job: every file under the audio root, listed once with its header.

A recording is identified by its path relative to the audio root (``siteA/20240401/
20240401_060000.WAV``), since recorders name every card's files alike; ``recording_id`` is
that path without its extension (a flat Kaggle folder gives the usual file stems). Files
with an audio extension that cannot be read are kept in the manifest with the reason, so
they end in ``failed.csv`` instead of vanishing; other files (``CONFIG.TXT``) are counted.

Re-listing an archive reuses the header of every file whose size and modification time are
unchanged, so resuming a job over 100,000 files costs a directory walk, not 100,000 probes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..data.audio import AUDIO_EXTENSIONS, is_audio_name, path_ids, probe_audio, walk_files
from ..data.timestamps import parse_recording_start, site_of
from ..errors import AudioError, InputError


@dataclass(frozen=True)
class ManifestEntry:
    """One file of the archive as the job saw it when listing."""

    recording_id: str
    path: str  # relative to the audio root, '/'-separated
    size_bytes: int
    mtime_ns: int
    duration_s: float = 0.0
    sample_rate_hz: int = 0
    channels: int = 0
    format: str = ""
    site: str = ""
    start_time: str = ""  # ISO 8601 local time of the first sample, '' when the name tells none
    error: str = ""  # why the file cannot be read ('' for readable files)

    @property
    def readable(self) -> bool:
        return not self.error

    def absolute(self, root: str | Path) -> Path:
        return Path(root) / self.path


@dataclass(frozen=True)
class Manifest:
    root: Path
    entries: tuple[ManifestEntry, ...]
    ignored: dict[str, int]  # extension -> count of files that are not audio

    @property
    def readable(self) -> list[ManifestEntry]:
        return [e for e in self.entries if e.readable]

    @property
    def unreadable(self) -> list[ManifestEntry]:
        return [e for e in self.entries if not e.readable]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(e) for e in self.entries], columns=[f.name for f in fields(ManifestEntry)])


def describe_file(root: Path, relative: str, recording_id: str, stat: os.stat_result | None = None) -> ManifestEntry:
    """The manifest entry of one file under ``root``: its header, site and start time, or why it is unreadable."""
    path = root / relative
    stat = stat if stat is not None else path.stat()
    base = dict(recording_id=recording_id, path=relative, size_bytes=int(stat.st_size), mtime_ns=int(stat.st_mtime_ns),
                site=site_of(relative))
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        return ManifestEntry(**base, error=f"{path.suffix} files cannot be decoded (libsndfile reads FLAC, WAV, MP3, OGG); "
                                           "convert it, e.g. 'ffmpeg -i IN OUT.flac'")
    try:
        info = probe_audio(path)
    except AudioError as exc:
        return ManifestEntry(**base, error=str(exc))
    comment = None
    if path.suffix.lower() == ".wav":  # AudioMoth writes its clock into the WAV comment
        comment = _wav_comment(path)
    start = parse_recording_start(relative, comment=comment)
    return ManifestEntry(**base, duration_s=info.duration_s, sample_rate_hz=info.sample_rate_hz, channels=info.channels,
                         format=path.suffix.lower().lstrip("."), start_time=start.isoformat() if start else "")


def _wav_comment(path: Path) -> str | None:
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as handle:
            return handle.comment or None
    except Exception:  # the header was readable a moment ago; metadata is optional
        return None


def list_archive(root: str | Path, *, previous: pd.DataFrame | None = None, skip: Sequence[Path] = ()) -> Manifest:
    """Walk ``root`` (following folder links) and probe every audio file not already in ``previous``
    with the same size and modification time."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: audio folder not found")
    audio, ignored = [], {}
    for path in walk_files(root, skip=skip):
        if is_audio_name(path):
            audio.append(path)
        else:
            suffix = path.suffix.lower() or "(no extension)"
            ignored[suffix] = ignored.get(suffix, 0) + 1
    known: dict[str, dict] = {}
    if previous is not None and len(previous):
        known = {row["path"]: row for row in previous.fillna("").to_dict("records")}
    entries = []
    for recording_id, path in path_ids(root, audio).items():
        relative = path.relative_to(root).as_posix()
        try:
            stat = path.stat()
        except OSError as exc:  # a dangling link, or a file removed while listing
            entries.append(ManifestEntry(recording_id, relative, 0, 0, error=f"{path}: cannot be read ({exc.strerror})"))
            continue
        old = known.get(relative)
        if old is not None and int(old["size_bytes"]) == stat.st_size and int(old["mtime_ns"]) == stat.st_mtime_ns \
                and old["recording_id"] == recording_id:
            entries.append(_from_row(old))
        else:
            entries.append(describe_file(root, relative, recording_id, stat))
    entries.sort(key=lambda e: e.path)
    return Manifest(root=root, entries=tuple(entries), ignored=dict(sorted(ignored.items())))


def _from_row(row: dict) -> ManifestEntry:
    kinds = {f.name: f.type for f in fields(ManifestEntry)}
    values = {}
    for name, kind in kinds.items():
        value = row.get(name, "")
        if kind == "int":
            value = int(value or 0)
        elif kind == "float":
            value = float(value or 0.0)
        else:
            value = "" if value is None else str(value)
        values[name] = value
    return ManifestEntry(**values)


def read_manifest(path: str | Path) -> pd.DataFrame | None:
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception:  # a manifest cut short is rebuilt from the archive
        return None
