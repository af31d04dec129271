"""Fuzzed tables (hypothesis): label CSVs, Raven selection tables, species lists, prior tables and
submissions. Each reader must either return exactly the rows that were written, or raise one
InputError naming the file (and, for a bad cell, its line): never another exception, never
rows dropped, shifted or invented."""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dawnchorus.data.annotations import LABEL_COLUMNS, read_boxes
from dawnchorus.data.audio import AudioInfo
from dawnchorus.data.raven import BEGIN, END, HIGH, LOW, read_raven
from dawnchorus.data.species import SpeciesTable, read_prior_csv, read_species_csv
from dawnchorus.errors import InputError
from dawnchorus.metrics import read_score_table

SPECIES = SpeciesTable(tuple(range(6)), tuple(f"Genus species{k}" for k in range(6)), tuple(None for _ in range(6)))
DURATION_S, RATE_HZ = 60.0, 48000
RECORDINGS = {r: AudioInfo(Path(f"{r}.flac"), RATE_HZ, int(DURATION_S * RATE_HZ), 1) for r in ("r0", "r1", "site 2_rec", "forêt")}
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

times = st.floats(0.0, 50.0, allow_subnormal=False)
lengths = st.floats(0.01, 9.9, allow_subnormal=False)
freqs = st.floats(0.0, 10000.0, allow_subnormal=False)
bands = st.floats(10.0, 10000.0, allow_subnormal=False)


@dataclass(frozen=True)
class Format:
    """How to write valid rows of one table kind, how to break a cell, and how to read it back."""

    name: str
    header: tuple[str, ...]
    rows: Callable  # hypothesis strategy of lists of valid rows (dicts column -> text)
    bad: dict  # column -> texts that make a row invalid
    read: Callable  # path -> the rows read, normalized
    expect: Callable  # valid rows -> what read must return
    sep: str = ","
    extra_columns_ok: bool = True
    file_name: str = "table.csv"


@st.composite
def _label_row(draw):
    t_min, f_min = draw(times), draw(freqs)
    return {"recording_id": draw(st.sampled_from(sorted(RECORDINGS))), "species_id": str(draw(st.integers(0, 5))),
            "songtype_id": str(draw(st.integers(1, 4))), "t_min": repr(t_min), "f_min": repr(f_min),
            "t_max": repr(t_min + draw(lengths)), "f_max": repr(f_min + draw(bands))}


def _label_key(row):
    return (row["recording_id"], row["t_min"], row["species_id"])


LABELS = Format(
    name="label CSV",
    header=LABEL_COLUMNS,
    rows=st.lists(_label_row(), min_size=1, max_size=12, unique_by=_label_key),
    bad={"recording_id": ["", "no-such-recording"], "species_id": ["abc", "", "1.5", "99", "nan"], "songtype_id": ["x", ""],
         "t_min": ["nan", "inf", "-1", "", "1e400", "abc"], "t_max": ["61", "nan", "-inf"], "f_min": ["-5", "nan"],
         "f_max": ["30000", "inf", ""]},
    read=lambda p: sorted((b.recording_id, b.species_id, b.songtype_id, b.t_min_s, b.f_min_hz, b.t_max_s, b.f_max_hz)
                          for b in read_boxes(p, label=1, species=SPECIES, recordings=RECORDINGS)),
    expect=lambda rows: sorted((r["recording_id"], int(r["species_id"]), int(r["songtype_id"]), float(r["t_min"]),
                                float(r["f_min"]), float(r["t_max"]), float(r["f_max"])) for r in rows),
)


@st.composite
def _raven_row(draw):
    t_min, f_min = draw(times), draw(freqs)
    species_id = draw(st.integers(0, 5))
    return {"Selection": "1", "View": "Spectrogram 1", "Channel": "1", BEGIN: repr(t_min), END: repr(t_min + draw(lengths)),
            LOW: repr(f_min), HIGH: repr(f_min + draw(bands)),
            "Species": draw(st.sampled_from([str(species_id), SPECIES.names[species_id], SPECIES.names[species_id].upper()])),
            "Label": draw(st.sampled_from(["TP", "fp", "1", "0", "present", ""]))}


RAVEN = Format(
    name="Raven selection table",
    header=("Selection", "View", "Channel", BEGIN, END, LOW, HIGH, "Species", "Label"),
    rows=st.lists(_raven_row(), min_size=1, max_size=12),
    bad={BEGIN: ["nan", "-1", "abc", ""], END: ["inf", "x"], LOW: ["nan", "-3"], HIGH: ["", "1e999"],
         "Species": ["Unknown bird", "", "-1", "7"], "Label": ["maybe"]},
    read=lambda p: sorted((b.recording_id, b.species_id, b.t_min_s, b.t_max_s, b.f_min_hz, b.f_max_hz, b.label)
                          for b in read_raven(p, species=SPECIES)),
    expect=lambda rows: sorted(("r0", int(r["Species"]) if r["Species"].isdigit() else SPECIES.id_for_name(r["Species"]),
                                float(r[BEGIN]), float(r[END]), float(r[LOW]), float(r[HIGH]),
                                0 if r["Label"].lower() in ("fp", "0") else 1) for r in rows),
    sep="\t",
    file_name="r0.Table.1.selections.txt",
)

SPECIES_LIST = Format(
    name="species list",
    header=("species_id", "scientific_name", "songtype_ids"),
    rows=st.lists(st.fixed_dictionaries({
        "species_id": st.integers(0, 10**6).map(str),
        "scientific_name": st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1,
                                   max_size=20).map(str.strip).filter(bool),
        "songtype_ids": st.sampled_from(["", "1", "1;4", "2;3;9"])}), min_size=1, max_size=12, unique_by=lambda r: r["species_id"]),
    bad={"species_id": ["x", "1.5", "", "nan"], "songtype_ids": ["a;b", "1;;x"]},
    read=lambda p: sorted(zip(*(lambda t: (t.species_ids, t.names, t.songtypes))(read_species_csv(p))), key=lambda r: r[0]),
    expect=lambda rows: sorted(((int(r["species_id"]), r["scientific_name"],
                                 frozenset(int(s) for s in r["songtype_ids"].split(";")) if r["songtype_ids"] else None)
                                for r in rows), key=lambda r: r[0]),
)

PRIORS = Format(
    name="prior table",
    header=("species_id", "prevalence"),
    rows=st.lists(st.fixed_dictionaries({"species_id": st.integers(0, 500).map(str),
                                         "prevalence": st.floats(0.0, 1.0, allow_subnormal=False).map(repr)}),
                  min_size=1, max_size=12, unique_by=lambda r: r["species_id"]),
    bad={"species_id": ["x", ""], "prevalence": ["1.5", "-0.1", "nan", "abc", "", "inf"]},
    read=lambda p: sorted(read_prior_csv(p).items()),
    expect=lambda rows: sorted((int(r["species_id"]), float(r["prevalence"])) for r in rows),
)

SUBMISSION_COLUMNS = ("recording_id", "s0", "s1", "s2")
SUBMISSION = Format(
    name="submission",
    header=SUBMISSION_COLUMNS,
    rows=st.lists(st.fixed_dictionaries({"recording_id": st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True),
                                         **{c: st.floats(0.0, 1.0, allow_subnormal=False).map(repr) for c in SUBMISSION_COLUMNS[1:]}}),
                  min_size=1, max_size=12, unique_by=lambda r: r["recording_id"]),
    bad={"recording_id": [""], "s0": ["1.5", "nan", "", "abc", "-0.1", "1e400"], "s2": ["inf", "0,5"]},
    read=lambda p: [tuple(r) for r in read_score_table(path=p).itertuples(index=False)],
    expect=lambda rows: [(r["recording_id"], *(float(r[c]) for c in SUBMISSION_COLUMNS[1:])) for r in rows],
    extra_columns_ok=False,
)

FORMATS = [LABELS, RAVEN, SPECIES_LIST, PRIORS, SUBMISSION]


def _render(fmt: Format, header, rows: list[list[str]], *, blank_after: set[int] = frozenset()) -> tuple[str, list[int]]:
    """The file's text and the line each data row lands on."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=fmt.sep, lineterminator="\n",
                        quoting=csv.QUOTE_NONE if fmt.sep == "\t" else csv.QUOTE_MINIMAL, escapechar="\\" if fmt.sep == "\t" else None)
    writer.writerow(header)
    lines, line = [], 1
    for i, row in enumerate(rows):
        writer.writerow(row)
        line += 1
        lines.append(line)
        if i in blank_after:
            out.write("\n")
            line += 1
    return out.getvalue(), lines


def _write(path: Path, text: str, *, encoding: str, newline: str) -> Path:
    text = text.replace("\n", newline)
    data = {"utf-16": codecs.BOM_UTF16_LE + text.encode("utf-16-le")}.get(encoding) or text.encode(encoding)
    path.write_bytes(data)
    return path


def _message_without_path(error: Exception, path: Path) -> str:
    message = str(error)
    assert str(path) in message, f"the error does not name the file: {message}"
    return message.replace(str(path), "")


def _read_quietly(fmt: Format, path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Raven's cp1252 fallback warns; what it reads is checked here
        return fmt.read(path)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@FUZZ
@given(data=st.data(), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]), newline=st.sampled_from(["\n", "\r\n"]),
       padded=st.booleans(), extra=st.booleans())
def test_valid_tables_read_back_exactly_in_any_encoding_and_line_end(tmp_path, fmt, data, encoding, newline, padded, extra):
    rows = data.draw(fmt.rows)
    blank_after = set(data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=3)))
    header = list(fmt.header) + (["notes"] if extra else [])
    cells = [[(f" {row[c]} " if padded and fmt.sep == "," else row[c]) for c in fmt.header] + (["free text"] if extra else [])
             for row in rows]
    text, _ = _render(fmt, header, cells, blank_after=blank_after)
    path = _write(tmp_path / fmt.file_name, text, encoding=encoding, newline=newline)
    if extra and not fmt.extra_columns_ok:
        with pytest.raises(InputError) as error:
            _read_quietly(fmt, path)
        assert "notes" in _message_without_path(error.value, path)
        return
    assert _read_quietly(fmt, path) == fmt.expect(rows)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@FUZZ
@given(data=st.data())
def test_a_bad_cell_is_refused_naming_its_line(tmp_path, fmt, data):
    rows = data.draw(fmt.rows)
    blank_after = set(data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=3)))
    column = data.draw(st.sampled_from(sorted(fmt.bad)))
    index = data.draw(st.integers(0, len(rows) - 1))
    bad_value = data.draw(st.sampled_from(fmt.bad[column]))
    broken = [dict(row) for row in rows]
    broken[index][column] = bad_value
    if all(not str(v).strip() for v in broken[index].values()):
        return  # an all-empty row is a blank line, which carries nothing
    text, lines = _render(fmt, fmt.header, [[row[c] for c in fmt.header] for row in broken], blank_after=blank_after)
    path = _write(tmp_path / fmt.file_name, text, encoding="utf-8", newline="\n")
    with pytest.raises(InputError) as error:
        _read_quietly(fmt, path)
    message = _message_without_path(error.value, path)
    if fmt is SUBMISSION and column == "recording_id":
        assert "recording_id" in message
    else:
        assert re.search(rf"\b{lines[index]}\b", message), (lines[index], message)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@FUZZ
@given(data=st.data(), change=st.sampled_from(["drop", "duplicate", "ragged", "swap"]))
def test_broken_structure_is_refused_naming_the_problem(tmp_path, fmt, data, change):
    rows = data.draw(fmt.rows)
    header = list(fmt.header)
    cells = [[row[c] for c in fmt.header] for row in rows]
    needle = None
    if change == "drop":
        column = data.draw(st.sampled_from(_required(fmt)))
        at = header.index(column)
        header.pop(at)
        cells = [row[:at] + row[at + 1:] for row in cells]
        needle = column
    elif change == "duplicate":
        column = data.draw(st.sampled_from(header))
        header.append(column)
        cells = [row + [row[fmt.header.index(column)]] for row in cells]
        needle = column
    elif change == "ragged":
        index = data.draw(st.integers(0, len(cells) - 1))
        cells[index] = cells[index] + ["1", "2"]
        needle = f"line {index + 2}"
    else:
        first, second = _swappable(fmt)
        if first is None:
            return
        index = data.draw(st.integers(0, len(rows) - 1))
        at, bt = fmt.header.index(first), fmt.header.index(second)
        cells[index][at], cells[index][bt] = cells[index][bt], cells[index][at]
        needle = f"line {index + 2}"
    text, _ = _render(fmt, header, cells)
    path = _write(tmp_path / fmt.file_name, text, encoding="utf-8", newline="\n")
    with pytest.raises(InputError) as error:
        _read_quietly(fmt, path)
    assert needle in _message_without_path(error.value, path)


def _required(fmt: Format) -> list[str]:
    optional = {"scientific_name", "songtype_ids", "Selection", "View", "Channel", "Label"}
    if fmt is SUBMISSION:
        return ["recording_id"]  # without an expected species list, any set of s<k> columns is a submission
    return [c for c in fmt.header if c not in optional]


def _swappable(fmt: Format) -> tuple[str | None, str | None]:
    return {"label CSV": ("t_min", "t_max"), "Raven selection table": (BEGIN, END)}.get(fmt.name, (None, None))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@FUZZ
@given(content=st.one_of(st.binary(max_size=2000), st.text(max_size=2000).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_random_bytes_give_records_or_one_input_error(tmp_path, fmt, content):
    path = tmp_path / fmt.file_name
    path.write_bytes(content)
    try:
        result = _read_quietly(fmt, path)
    except InputError as error:
        _message_without_path(error, path)
        return
    for record in result:  # the rare random file that parses must still give checked values
        assert all(math.isfinite(v) for v in record if isinstance(v, float))


def test_a_cp1252_raven_table_is_read_with_a_warning(tmp_path):
    """Raven Pro on Windows writes the system code page, so a non-UTF-8 Raven table is read as cp1252, saying so."""
    rows = [["1", "Spectrogram 1", "1", "1.0", "2.0", "100", "900", "0", "TP"],
            ["2", "Spectrogram 1", "1", "3.0", "4.0", "100", "900", "1", "FP"]]
    text = "\n".join("\t".join(r) for r in [list(RAVEN.header) + ["Notes"]] + [r + ["près du ruisseau"] for r in rows]) + "\n"
    path = tmp_path / "forêt.Table.1.selections.txt"
    path.write_bytes(text.encode("cp1252"))
    with pytest.warns(UserWarning, match="cp1252"):
        boxes = read_raven(path, species=SPECIES)
    assert [(b.recording_id, b.species_id, b.label) for b in boxes] == [("forêt", 0, 1), ("forêt", 1, 0)]


def test_a_latin1_label_csv_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "train_tp.csv"
    path.write_bytes((",".join(LABEL_COLUMNS) + "\nr0,0,1,1.0,100,2.0,900\nforêt,0,1,1.0,100,2.0,900\n").encode("latin-1"))
    with pytest.raises(InputError, match=r"line 3: not UTF-8.*save the label file as UTF-8"):
        read_boxes(path, label=1)


def test_100k_row_tables_are_read_whole_or_refused_with_a_bounded_message(tmp_path):
    rows = [f"r{i % 2},{i % 6},1,{(i % 500) / 10:.1f},{i % 7000},{(i % 500) / 10 + 1:.1f},{i % 7000 + 500}" for i in range(100_000)]
    unique = list(dict.fromkeys(rows))
    path = tmp_path / "train_tp.csv"
    path.write_text(",".join(LABEL_COLUMNS) + "\n" + "\n".join(unique) + "\n")
    assert len(read_boxes(path, label=1, species=SPECIES, recordings=RECORDINGS)) == len(unique)
    path.write_text(",".join(LABEL_COLUMNS) + "\n" + "\n".join(r.replace(",1,", ",x,", 1) for r in rows) + "\n")
    with pytest.raises(InputError) as error:
        read_boxes(path, label=1, species=SPECIES, recordings=RECORDINGS)
    message = str(error.value)
    assert "100000 problem(s)" in message and "and 99950 more" in message and len(message.splitlines()) < 60
