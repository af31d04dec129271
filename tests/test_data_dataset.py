"""Loading a dataset folder: labels exported from an archive's review name recordings by path."""

from __future__ import annotations

import pytest

from dawnchorus.data import load_dataset
from dawnchorus.errors import DawnchorusError

from conftest import LABEL_HEADER, write_tone


def _archive_dataset(root, labels: str):
    for site, freq in (("site1", 1000), ("site2", 2000)):  # one recorder file name in both site folders
        write_tone(root / "train" / site / "20240401_060000.flac", freq_hz=freq)
    (root / "species.csv").write_text("species_id,scientific_name\n1,Burhinus grallarius\n")
    (root / "train_tp.csv").write_text(LABEL_HEADER + labels)
    return root


def test_labels_naming_archive_paths_key_the_recordings_by_path(tmp_path):
    root = _archive_dataset(tmp_path / "data", "site2/20240401_060000,1,1,0.5,800,1.5,2500\n")
    dataset = load_dataset(root)
    assert sorted(dataset.train) == ["site1/20240401_060000", "site2/20240401_060000"]
    assert [b.recording_id for b in dataset.tp] == ["site2/20240401_060000"]
    assert dataset.train["site2/20240401_060000"].path.parent.name == "site2"


def test_file_names_alone_stay_refused_when_they_repeat(tmp_path):
    root = _archive_dataset(tmp_path / "data", "20240401_060000,1,1,0.5,800,1.5,2500\n")
    with pytest.raises(DawnchorusError, match="share the recording id"):
        load_dataset(root)
