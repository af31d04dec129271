"""Text tables people send us (label CSVs, Raven selection tables, species lists, priors,
submissions), read into strings with their real file line numbers.

Every reader of a user's table goes through :func:`read_text_table`, so an odd file fails the
same way everywhere: a byte-order mark, UTF-16 from Excel's "Unicode text" or CRLF line ends
just work; a file that is not text, not UTF-8, has a duplicated column or a row with more
cells than the header is refused naming the file and line, never passed on as shifted or
renamed columns (pandas renames a duplicate ``t_min`` to ``t_min.1`` without a word).
Cells are checked one by one by the caller, so every bad row can be named at once.
"""

from __future__ import annotations

import codecs
import csv
import io
import warnings
from pathlib import Path

import pandas as pd

from ..errors import InputError, ValidationError

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_MAX_FIELD_CHARS = 1 << 20  # far past any real cell; stops a binary blob from being read as one field


def read_text_table(path: str | Path, *, what: str, header: str, sep: str = ",",
                    fallback_encoding: str | None = None) -> pd.DataFrame:
    """The table as strings ('' where a cell is missing), indexed by file line number.

    Blank lines are skipped; column names and cells are stripped of surrounding spaces.
    ``fallback_encoding`` decodes files that are not UTF-8 (with a warning saying so), for
    formats whose writers use the system code page (Raven Pro on Windows writes cp1252).
    """
    path = Path(path)
    text = _decode(path, _read_bytes(path, what=what), what=what, fallback_encoding=fallback_encoding)
    if not text.strip():
        raise InputError(f"{path}: file is empty; a {what} needs the header {header}")
    if "\x00" in text:
        raise InputError(f"{path}: contains NUL bytes, so it is binary data, not a {what}; expected a text table with "
                         f"the header {header}")
    rows, lines = _rows(path, text, sep=sep)
    if not rows:
        raise InputError(f"{path}: file is empty; a {what} needs the header {header}")
    columns, body, body_lines = [c.strip() for c in rows[0]], rows[1:], lines[1:]
    problems = _header_problems(columns)
    width = len(columns)
    cells = []
    for line, row in zip(body_lines, body):
        if len(row) > width and any(c.strip() for c in row[width:]):
            problems.append(f"line {line}: {len(row)} cells, but the header has {width} columns "
                            "(a separator inside a value needs quotes)")
            continue
        cells.append([c.strip() for c in row[:width]] + [""] * (width - len(row)))
    if problems:
        raise ValidationError(str(path), problems)
    kept = [(line, row) for line, row in zip(body_lines, cells) if any(row)]
    return pd.DataFrame([row for _, row in kept], columns=columns, index=pd.Index([line for line, _ in kept], name="line"),
                        dtype=object).astype(str) if kept else pd.DataFrame(columns=columns, dtype=str)


def _read_bytes(path: Path, *, what: str) -> bytes:
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file; give the path of the {what}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


def _decode(path: Path, data: bytes, *, what: str, fallback_encoding: str | None) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}: starts with a {encoding} byte-order mark but is not valid {encoding} "
                                 f"(byte {exc.start}); save the {what} again as UTF-8") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if fallback_encoding is not None:
            try:
                text = data.decode(fallback_encoding)
            except UnicodeDecodeError:
                pass
            else:
                warnings.warn(f"{path}: not UTF-8; read as {fallback_encoding}", stacklevel=3)
                return text
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path} line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the {what} as UTF-8 "
                         "(in Excel: 'CSV UTF-8')") from None


def _rows(path: Path, text: str, *, sep: str) -> tuple[list[list[str]], list[int]]:
    """Rows and the file line each starts on (quoted cells may span lines, so count as we go)."""
    # Tab tables (Raven) never quote, and a lone '"' in an annotation must not swallow the next rows.
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    limit = csv.field_size_limit()
    csv.field_size_limit(_MAX_FIELD_CHARS)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=quoting)
    rows, lines, start = [], [], 1
    try:
        for row in reader:
            rows.append(row)
            lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"{path} line {reader.line_num}: cannot parse as a table ({exc})") from None
    finally:
        csv.field_size_limit(limit)
    return rows, lines


def _header_problems(columns: list[str]) -> list[str]:
    problems = []
    duplicated = sorted({c for c in columns if c and columns.count(c) > 1})
    if duplicated:
        problems.append(f"line 1: duplicate column(s) in the header: {', '.join(duplicated)}; keep one of each")
    return problems
