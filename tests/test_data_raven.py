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


def test_species_id_column_wins_over_names_and_empty_ids_fall_back(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Selection\tView\tBegin File\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies\tSpecies ID\n"
                    "1\tSpectrogram 1\tx.WAV\t1.0\t2.0\t500\t1500\tspecies 12\t12\n"
                    "2\tSpectrogram 1\tx.WAV\t3.0\t4.0\t500\t1500\t5\t\n")
    assert read_raven(path) == [Box("x", 12, 1, 1.0, 500.0, 2.0, 1500.0, 1), Box("x", 5, 1, 3.0, 500.0, 4.0, 1500.0, 1)]
    # A column the user names explicitly is read as given.
    path.write_text("Begin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tCode\tSpecies ID\n1\t2\t5\t6\t4\t12\n")
    assert read_raven(path, species_column="Code")[0].species_id == 4


def test_file_offset_gives_times_within_the_file(tmp_path):
    path = tmp_path / "seq.selections.txt"
    path.write_text("Selection\tBegin File\tFile Offset (s)\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies ID\n"
                    "1\ta.WAV\t10.5\t10.5\t12.5\t100\t900\t1\n"
                    "2\tb.mp3\t1.25\t61.25\t62.0\t100\t900\t2\n"
                    "3\tb.mp3\tsoon\t62.0\t63.0\t100\t900\t2\n")
    with pytest.raises(ValidationError) as caught:
        read_raven(path)
    assert "line 4: File Offset (s) 'soon' is not a number" in str(caught.value) and "line 3" not in str(caught.value)
    path.write_text("\n".join(path.read_text().splitlines()[:3]) + "\n")
    assert read_raven(path) == [Box("a", 1, 1, 10.5, 100.0, 12.5, 900.0, 1), Box("b", 2, 1, 1.25, 100.0, 2.0, 900.0, 1)]


def test_write_raven_names_the_real_audio_file(tmp_path):
    boxes = [Box("20240401_060000", 1, 1, 0.0, 10.0, 1.0, 20.0, 1), Box("other", 1, 1, 0.0, 10.0, 1.0, 20.0, 0)]
    path = write_raven(tmp_path / "d.txt", boxes, file_names={"20240401_060000": "20240401_060000.WAV"})
    lines = path.read_text().splitlines()
    assert "\t20240401_060000.WAV\t" in lines[1] and "\tother.flac\t" in lines[2]
    assert [b.recording_id for b in read_raven(path)] == ["20240401_060000", "other"]
    exported = export_raven_tables(boxes=boxes[:1], out_dir=tmp_path / "x", file_names={"20240401_060000": "20240401_060000.WAV"})
    assert "20240401_060000.WAV" in exported[0].read_text()
    assert "\tother.flac\t" in write_raven(tmp_path / "e.txt", boxes).read_text()
