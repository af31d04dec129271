"""When and where a field recording was made, from the names recorders give their files.

Recorders write their clock into each file name (and AudioMoth also into the WAV comment),
in local recorder time without a zone. These helpers read it back so an archive's
recordings can be grouped by site and day; a name they do not recognise gives ``None`` or
``''``, never an error, since archives mix recorder files with renamed and copied ones.

Recognised file names (the extension and any folders are ignored)::

    20240401_060000            AudioMoth (also 20240401_060000T, 20240401_060000_001)
    S4A03895_20190522_223000   Song Meter SM2/SM3/SM4/Mini: PREFIX_YYYYMMDD_HHMMSS
    SM4_20200101$050000        Song Meter with '$' between date and time
    20240401T060000            ISO 8601 basic
    20091102-183000            date and time joined by '-'
    2024-04-01_06-00-00        dashed date and time
    Sabana_Seca-2015-08-04_19-10   Arbimon: PREFIX-YYYY-MM-DD_HH-MM (no seconds)
"""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

__all__ = ["parse_recording_start", "site_of"]

# Digit look-arounds keep a serial number such as 24F319055FE58D4A or a longer run of
# digits from being read as a date.
_COMPACT = re.compile(
    r"(?<!\d)(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})[_tT$\- ]"
    r"(?P<hour>\d{2})(?P<minute>\d{2})(?P<second>\d{2})(?!\d)"
)
_DASHED = re.compile(
    r"(?<!\d)(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[_tT ]"
    r"(?P<hour>\d{2})[-:]?(?P<minute>\d{2})(?:[-:]?(?P<second>\d{2}))?(?!\d)"
)
# AudioMoth: "Recorded at 06:00:00 01/04/2024 (UTC) by AudioMoth ..." (day/month/year);
# some firmware writes the zone as (UTC+1) or (UTC-5), which is read but not applied.
_AUDIOMOTH_COMMENT = re.compile(
    r"recorded at (?P<hour>\d{1,2}):(?P<minute>\d{2}):(?P<second>\d{2}) "
    r"(?P<day>\d{1,2})/(?P<month>\d{1,2})/(?P<year>\d{4})",
    re.IGNORECASE,
)
_DATE_ONLY_FOLDER = re.compile(r"(?P<year>\d{4})[-_]?(?P<month>\d{2})[-_]?(?P<day>\d{2})")
_SITE_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")

# Outside these years a match is far more likely a serial number than a recorder clock.
_FIRST_YEAR, _LAST_YEAR = 1900, 2199


class _NameTime(NamedTuple):
    start: dt.datetime
    prefix: str  # the text of the stem before the date-time, e.g. a Song Meter's site prefix


def _datetime_of(match: re.Match) -> dt.datetime | None:
    parts = {key: int(value) for key, value in match.groupdict().items() if value is not None}
    if not _FIRST_YEAR <= parts["year"] <= _LAST_YEAR:
        return None
    try:
        return dt.datetime(parts["year"], parts["month"], parts["day"], parts.get("hour", 0),
                           parts.get("minute", 0), parts.get("second", 0))
    except ValueError:  # month 13, 31 April, hour 25: not a clock reading
        return None


def _stem_of(path: str) -> str:
    name = re.split(r"[/\\]", str(path).strip())[-1]
    stem, dot, _extension = name.rpartition(".")
    return stem if dot and stem else name


def _time_in_name(stem: str) -> _NameTime | None:
    candidates = sorted((m for pattern in (_COMPACT, _DASHED) for m in pattern.finditer(stem)),
                        key=lambda m: m.start())
    for match in candidates:
        start = _datetime_of(match)
        if start is not None:
            return _NameTime(start=start, prefix=stem[: match.start()])
    return None


def parse_recording_start(path: str, *, comment: str | None = None) -> dt.datetime | None:
    """The local recorder time at which a recording starts, or ``None`` when nothing tells it.

    ``path`` is the recording's path relative to the archive root, '/'-separated
    (``siteA/20240401/20240401_060000.WAV``); only its file name is read, in the formats
    listed in this module's docstring. ``comment`` is the WAV comment, if any: when it is an
    AudioMoth ``Recorded at HH:MM:SS DD/MM/YYYY (UTC...)`` line it wins over the name,
    because files are often renamed after they leave the card.

    The result is naive and is the time exactly as the recorder wrote it: a zone such as
    ``(UTC+1)`` in the comment is not applied, so times of one deployment stay comparable
    with its file names. A name with a date but no time (``20240401``), a time without a
    date, or an impossible date or time (month 13, 25:00) gives ``None``.
    """
    if comment:
        match = _AUDIOMOTH_COMMENT.search(comment)
        start = _datetime_of(match) if match else None
        if start is not None:
            return start
    found = _time_in_name(_stem_of(path))
    return found.start if found else None


def _is_date(name: str) -> bool:
    match = _DATE_ONLY_FOLDER.fullmatch(name)
    return match is not None and _datetime_of(match) is not None


def site_of(path: str) -> str:
    """The site a recording belongs to, from its path relative to the archive root.

    The first folder when there is one (``siteA/20240401/x.WAV`` -> ``siteA``), unless that
    folder is only a date (``20240401/x.WAV``, a card copied without a site folder); then the
    prefix before the date-time in the file name (``S4A03895_20190522_223000.wav`` ->
    ``S4A03895``, ``Sabana_Seca-2015-08-05_17-30.flac`` -> ``Sabana_Seca``); else ``''``.
    """
    parts = [part for part in re.split(r"[/\\]", str(path).strip()) if part and part != "."]
    folders = parts[:-1]
    if folders and not _is_date(folders[0]):
        return folders[0]
    if not parts:
        return ""
    found = _time_in_name(_stem_of(parts[-1]))
    if found is None:
        return ""
    prefix = found.prefix.rstrip("_-$ ")
    # Only a recorder-style prefix names a site; free text before a date is something else.
    return prefix if _SITE_PREFIX.fullmatch(prefix) else ""
