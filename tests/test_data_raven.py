import pytest

from dawnchorus.data import Box, export_raven_tables, import_raven_tables, read_raven, rfcx_species, write_raven
from dawnchorus.errors import InputError, ValidationError

RAVEN_HEADER = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies\n"


def test_export_then_import_roundtrips_tp_and_fp(tmp_path):
    boxes = [
        Box("rec1", 3, 1, 1.5, 1000.0, 2.25, 3500.0, 1),
        Box("rec1", 17, 4, 10.0, 2000.0, 11.5, 6000.0, 0),
        Box("rec2", 0, 1, 0.0, 4000.0, 0.5, 5000.0, 1),
    ]
    species = rfcx_species()
    paths = export_raven_tables(boxes=boxes, out_dir=tmp_path, species=species)
    assert [p.name for p in paths] == ["rec1.Table.1.selections.txt", "rec2.Table.1.selections.txt"]
    assert "Eleutherodactylus coqui" in paths[0].read_text()
    assert sorted(import_raven_tables(paths=paths, species=species), key=lambda b: (b.recording_id, b.t_min_s)) == boxes


def test_plain_raven_table_with_ids_and_waveform_rows(tmp_path):
    path = tmp_path / "abc123.Table.1.selections.txt"
    path.write_text(RAVEN_HEADER + "1\tWaveform 1\t1\t1.0\t2.0\t500\t1500\t3\n1\tSpectrogram 1\t1\t1.0\t2.0\t500\t1500\t3\n")
    boxes = read_raven(path)
    assert boxes == [Box("abc123", 3, 1, 1.0, 500.0, 2.0, 1500.0, 1)]


def test_species_names_map_to_ids_and_unknown_names_are_errors(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text(RAVEN_HEADER + "1\tSpectrogram 1\t1\t1.0\t2.0\t500\t1500\tcoereba flaveola\n"
                    "2\tSpectrogram 1\t1\t1.0\t2.0\t500\t1500\tPasser domesticus\n"
                    "3\tSpectrogram 1\t1\t3.0\t2.0\t500\t1500\t7\n")
    with pytest.raises(ValidationError) as caught:
        read_raven(path, species=rfcx_species())
    message = str(caught.value)
    assert "line 3: species 'Passer domesticus'" in message and "line 4: begin time must be before end time" in message
    assert "line 2" not in message


def test_missing_columns_and_missing_file(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("Selection\tBegin Time (s)\n1\t2\n")
    with pytest.raises(ValidationError, match="End Time \\(s\\)"):
        read_raven(path)
    with pytest.raises(InputError, match="not found"):
        read_raven(tmp_path / "none.txt")


def test_write_raven_with_scores(tmp_path):
    path = write_raven(tmp_path / "d.txt", [Box("r", 1, 1, 0.0, 10.0, 1.0, 20.0, 1)], scores=[0.875])
    text = path.read_text()
    assert "Score" in text.splitlines()[0] and "0.875" in text
