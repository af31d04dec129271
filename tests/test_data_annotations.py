
import pytest

from dawnchorus.data import SpeciesTable, load_dataset, read_boxes, rfcx_species, write_boxes
from dawnchorus.data.audio import AudioInfo
from dawnchorus.errors import InputError, ValidationError

from conftest import LABEL_HEADER

SPECIES = SpeciesTable((0, 1, 17), ("a", "b", "c"), (frozenset({1}), frozenset({1}), frozenset({1, 4})))


def recordings(tmp_path):
    return {
        "r48": AudioInfo(tmp_path / "r48.flac", 48000, 48000 * 60, 1),
        "r44": AudioInfo(tmp_path / "r44.flac", 44100, 44100 * 60, 1),
    }


def test_good_rows_become_typed_boxes(tmp_path):
    path = tmp_path / "tp.csv"
    path.write_text(LABEL_HEADER + "r48,0,1,1.5,500,3.25,1500\nr44,17,4,10,2000,12,8000\n")
    boxes = read_boxes(path, label=1, species=SPECIES, recordings=recordings(tmp_path))
    assert [(b.recording_id, b.species_id, b.songtype_id, b.label) for b in boxes] == [("r48", 0, 1, 1), ("r44", 17, 4, 1)]
    assert boxes[0].t_min_s == 1.5 and boxes[0].f_max_hz == 1500 and boxes[0].duration_s == 1.75


BAD_ROWS = {
    "r48,0,1,5,500,5,1500": "t_min (5.0) must be less than t_max",
    "r48,0,1,-1,500,2,1500": "negative time",
    "r48,0,1,59,500,61,1500": "beyond the recording's duration",
    "r48,0,1,1,1500,2,1500": "f_min (1500.0) must be less than f_max",
    "r44,0,1,1,500,2,23000": "above the Nyquist frequency (22050 Hz)",
    "r48,5,1,1,500,2,1500": "unknown species_id 5",
    "r48,0,4,1,500,2,1500": "unknown songtype_id 4 for species 0",
    "nofile,0,1,1,500,2,1500": "recording 'nofile' has no audio file",
    "r48,zero,1,1,500,2,1500": "species_id 'zero' is not a number",
    "r48,0,1,abc,500,2,1500": "t_min 'abc' is not a number",
    "r48,0,1,1,,2,1500": "f_min is empty",
    "r48,0,1.5,1,500,2,1500": "songtype_id '1.5' is not an integer",
}


def test_every_problem_is_reported_with_its_line(tmp_path):
    good = "r48,1,1,1,500,2,1500"
    path = tmp_path / "train_tp.csv"
    path.write_text(LABEL_HEADER + good + "\n" + "\n".join(BAD_ROWS) + "\n" + good + "\n")
    with pytest.raises(ValidationError) as caught:
        read_boxes(path, label=1, species=SPECIES, recordings=recordings(tmp_path))
    message = str(caught.value)
    assert str(path) in message
    for line, expected in enumerate(BAD_ROWS.values(), start=3):
        assert f"line {line}: " in message and expected in message, expected
    duplicate_line = 3 + len(BAD_ROWS)
    assert f"line {duplicate_line}: duplicate of line 2" in message
    assert len(caught.value.problems) == len(BAD_ROWS) + 1


def test_drop_bad_rows_keeps_good_ones_and_warns(tmp_path):
    path = tmp_path / "train_fp.csv"
    path.write_text(LABEL_HEADER + "r48,0,1,1,500,2,1500\nr48,0,1,3,500,2,1500\n")
    with pytest.warns(UserWarning, match="line 3"):
        boxes = read_boxes(path, label=0, species=SPECIES, recordings=recordings(tmp_path), drop_bad_rows=True)
    assert len(boxes) == 1 and boxes[0].label == 0


def test_missing_columns_and_empty_and_missing_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("recording_id,species_id,t_min\nr48,0,1\n")
    with pytest.raises(ValidationError, match="missing column\\(s\\) songtype_id, f_min, t_max, f_max"):
        read_boxes(path, label=1)
    path.write_text("")
    with pytest.raises(InputError, match="file is empty"):
        read_boxes(path, label=1)
    with pytest.raises(InputError, match="not found"):
        read_boxes(tmp_path / "nope.csv", label=1)


def test_write_then_read_roundtrip(tmp_path):
    path = tmp_path / "tp.csv"
    path.write_text(LABEL_HEADER + "r48,0,1,1.5,500,3.25,1500\n")
    boxes = read_boxes(path, label=1)
    assert read_boxes(write_boxes(tmp_path / "out.csv", boxes), label=1) == boxes


def test_load_dataset_reads_the_layout(tiny_dataset):
    dataset = load_dataset(tiny_dataset)
    assert dataset.species.species_ids == (0, 1, 2)
    assert list(dataset.train) == ["rec_a", "rec_b", "rec_c"] and list(dataset.test) == ["tst_1", "tst_2"]
    assert len(dataset.tp) == 2 and len(dataset.fp) == 2 and {b.label for b in dataset.fp} == {0}
    assert dataset.submission_ids == ("tst_1", "tst_2")
    assert dataset.summary()["train_sample_rates_hz"] == [44100, 48000]


def test_load_dataset_reports_problems_of_both_files(tiny_dataset):
    (tiny_dataset / "train_tp.csv").write_text(LABEL_HEADER + "rec_a,0,1,1,500,9,1500\n")
    (tiny_dataset / "train_fp.csv").write_text(LABEL_HEADER + "ghost,1,1,1,500,2,1500\n")
    with pytest.raises(InputError) as caught:
        load_dataset(tiny_dataset)
    assert "train_tp.csv" in str(caught.value) and "beyond the recording's duration (2.000 s)" in str(caught.value)
    assert "train_fp.csv" in str(caught.value) and "'ghost' has no audio file" in str(caught.value)


def test_species_come_from_species_csv_first(tiny_dataset):
    (tiny_dataset / "species.csv").write_text("species_id,scientific_name,songtype_ids\n0,A a,1\n1,B b,1;4\n2,C c,1\n")
    dataset = load_dataset(tiny_dataset)
    assert dataset.species.names == ("A a", "B b", "C c") and dataset.species.allows_songtype(1, 4)
    (tiny_dataset / "train_tp.csv").write_text(LABEL_HEADER + "rec_a,0,4,0.5,800,1.5,1200\n")
    with pytest.raises(InputError, match="unknown songtype_id 4 for species 0"):
        load_dataset(tiny_dataset)


def test_dataset_without_species_information_is_an_error(tiny_dataset):
    (tiny_dataset / "sample_submission.csv").unlink()
    with pytest.raises(InputError, match="cannot tell the species list"):
        load_dataset(tiny_dataset)


def test_unreadable_audio_in_dataset_is_listed(tiny_dataset):
    (tiny_dataset / "train" / "bad.flac").write_bytes(b"garbage")
    with pytest.raises(ValidationError, match="bad.flac"):
        load_dataset(tiny_dataset)


def test_rfcx_species_table():
    species = rfcx_species()
    assert len(species) == 24 and species.names[3] == "Eleutherodactylus coqui"
    assert species.allows_songtype(23, 4) and not species.allows_songtype(3, 4)


def test_htk_segments_by_file_stem_and_bad_times_name_the_line(tmp_path):
    from dawnchorus.data.annotations import read_htk_segments

    mlf = tmp_path / "phones.mlf"
    mlf.write_text('#!MLF!#\n"*/clip_a.lab"\n0 1625000 SIL\n1625000 12074000 CURLEW1\n.\n"*/clip_b.lab"\n0 5000000 SIL\n.\n')
    assert read_htk_segments(mlf, label="CURLEW1") == {"clip_a": (0.1625, 1.2074)}
    mlf.write_text('"*/clip_a.lab"\nsoon 12074000 CURLEW1\n')
    with pytest.raises(InputError, match="line 2"):
        read_htk_segments(mlf, label="CURLEW1")
