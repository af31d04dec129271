import pytest

from dawnchorus.data import Box
from dawnchorus.data.bands import read_bands_csv, species_bands, write_bands_csv
from dawnchorus.errors import InputError


def test_bands_span_the_tp_boxes_of_each_species_and_ignore_fps():
    boxes = [
        Box("r1", 3, 1, 1.0, 1200.0, 2.0, 3400.0, 1),
        Box("r2", 3, 1, 5.0, 900.5, 6.0, 2500.0, 1),
        Box("r2", 3, 1, 7.0, 100.0, 8.0, 9000.0, 0),  # an FP far outside the calls
        Box("r1", 0, 1, 0.0, 4000.0, 1.0, 6000.0, 1),
        Box("r1", 9, 1, 0.0, 10.0, 1.0, 20.0, 0),  # a species with FPs only has no band
    ]
    assert species_bands(boxes) == {0: (4000.0, 6000.0), 3: (900.5, 3400.0)}


def test_bands_round_trip_through_csv_without_temporary_files(tmp_path):
    bands = {3: (900.5, 3400.0), 0: (4000.0, 6000.25)}
    path = write_bands_csv(bands, tmp_path / "out" / "bands.csv")
    assert path.read_text() == "species_id,f_min_hz,f_max_hz\n0,4000.000,6000.250\n3,900.500,3400.000\n"
    assert read_bands_csv(path) == {0: (4000.0, 6000.25), 3: (900.5, 3400.0)}
    assert sorted(p.name for p in path.parent.iterdir()) == ["bands.csv"]
    write_bands_csv({1: (1.0, 2.0)}, path)  # replaces the old table
    assert read_bands_csv(path) == {1: (1.0, 2.0)}


def test_missing_band_file_and_bad_lines_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="species band file not found"):
        read_bands_csv(tmp_path / "none.csv")
    path = tmp_path / "bands.csv"
    path.write_text("species_id,f_min_hz,f_max_hz\n1,100,200\nx,100,200\n2,500,400\n1,10,20\n")
    with pytest.raises(InputError) as caught:
        read_bands_csv(path)
    message = str(caught.value)
    assert str(path) in message
    assert "line 3: species_id must be an integer" in message
    assert "line 4: band 500.0..400.0 Hz" in message
    assert "line 5: species 1 is listed twice" in message
    assert "line 2" not in message
    path.write_text("species,low\n1,2\n")
    with pytest.raises(InputError, match="missing column"):
        read_bands_csv(path)
