import math

import pandas as pd
import pytest

from dawnchorus.batch.manifest import ManifestEntry
from dawnchorus.batch.outputs import (
    WRITERS,
    AudacityLabels,
    BirdnetCsv,
    RavenTables,
    RecordingSummary,
    SubmissionCsv,
    display_names,
    make_writers,
)
from dawnchorus.data import Box, SpeciesTable, read_raven
from dawnchorus.errors import InputError

SPECIES = SpeciesTable((0, 3, 7), ("Eleutherodactylus coqui", "s3", "Coereba flaveola"), (None, None, None))
# Species 3 has no band (full 0..Nyquist); species 7's reaches above a 48 kHz file's Nyquist.
BANDS = {0: (1000.0, 3000.0), 7: (2000.0, 30000.0)}
NAME = "20240401_060000.WAV"
A = ManifestEntry("siteA/20240401/20240401_060000", f"siteA/20240401/{NAME}", 100, 1, duration_s=60.0,
                  sample_rate_hz=48000, channels=1, format="wav", site="siteA", start_time="2024-04-01T06:00:00")
B = ManifestEntry("siteB/20240401/20240401_060000", f"siteB/20240401/{NAME}", 100, 1, duration_s=30.0,
                  sample_rate_hz=32000, channels=1, format="wav", site="siteB", start_time="")
QUIET = ManifestEntry("siteA/20240401/20240401_070000", "siteA/20240401/20240401_070000.WAV", 100, 1, duration_s=10.0,
                      sample_rate_hz=48000, channels=1, format="wav", site="siteA")


def windows_of(entry, starts, scores):
    frame = pd.DataFrame({"recording_id": entry.recording_id, "path": entry.path,
                          "t_start_s": [float(s) for s in starts], "t_end_s": [s + 2.0 for s in starts]})
    for column, values in scores.items():
        frame[column] = values
    return frame


WINDOWS_A = windows_of(A, [0, 2, 4], {"s0": [0.9, 0.1, 0.6], "s3": [0.2, 0.7, 0.0], "s7": [0.0, 0.0, 0.55]})
WINDOWS_B = windows_of(B, [12, 10], {"s0": [0.8, 0.3], "s3": [0.0, 0.95], "s7": [0.2, 0.1]})  # out of time order
EMPTY = pd.DataFrame()

BOXES_A = [Box("20240401_060000", 0, 1, 0.0, 1000.0, 2.0, 3000.0, 1), Box("20240401_060000", 3, 1, 2.0, 0.0, 4.0, 24000.0, 1),
           Box("20240401_060000", 0, 1, 4.0, 1000.0, 6.0, 3000.0, 1), Box("20240401_060000", 7, 1, 4.0, 2000.0, 6.0, 24000.0, 1)]
BOXES_B = [Box("20240401_060000", 3, 1, 10.0, 0.0, 12.0, 16000.0, 1), Box("20240401_060000", 0, 1, 12.0, 1000.0, 14.0, 3000.0, 1)]


def run(writer, *items):
    for entry, windows in items:
        writer.add(entry, windows)
    return writer.close()


def table(path):
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def test_display_names_fall_back_to_species_id():
    assert display_names(SPECIES) == ["Eleutherodactylus coqui", "species 3", "Coereba flaveola"]


def test_raven_tables_per_file_mirror_the_archive_and_read_back(tmp_path):
    out, root = tmp_path / "raven", tmp_path / "audio"
    writer = RavenTables(out_dir=out, audio_root=root, species=SPECIES, threshold=0.5, bands=BANDS)
    written = run(writer, (A, WINDOWS_A), (QUIET, EMPTY), (B, WINDOWS_B))
    path_a = out / "siteA" / "20240401" / "20240401_060000.Table.1.selections.txt"
    path_b = out / "siteB" / "20240401" / "20240401_060000.Table.1.selections.txt"
    assert written == [path_a, path_b]  # the quiet recording gets no table
    assert read_raven(path_a, species=SPECIES) == BOXES_A
    clock = table(path_a)["Begin Date Time"].tolist()
    assert clock[0].startswith("2024/04/01 06:00:") and len(clock[0]) == len("2024/04/01 06:00:00.000")
    assert read_raven(path_b, species=SPECIES) == BOXES_B
    rows = table(path_b)
    assert list(rows.columns) == ["Selection", "View", "Channel", "Begin File", "Begin Path", "File Offset (s)", "Begin Time (s)",
                                  "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)", "Species", "Species ID", "Score",
                                  "Begin Date Time"]
    assert rows["Begin Date Time"].tolist() == ["", ""]  # siteB's file name holds no start time
    assert "Label" not in rows.columns
    assert rows["Selection"].tolist() == ["1", "2"] and rows["View"].tolist() == ["Spectrogram 1"] * 2
    assert rows["Begin File"].tolist() == [NAME, NAME]
    assert rows["Begin Path"].tolist() == [str(root.absolute() / "siteB" / "20240401" / NAME)] * 2
    assert rows["Species"].tolist() == ["species 3", "Eleutherodactylus coqui"]
    assert rows["Score"].tolist() == ["0.95", "0.8"]
    assert table(path_a)["Score"].tolist() == ["0.9", "0.7", "0.6", "0.55"]
    assert sorted(p.name for p in path_a.parent.iterdir()) == [path_a.name]  # no temporary file left


def test_raven_table_of_a_recording_without_detections_is_removed_on_a_new_run(tmp_path):
    path = run(RavenTables(out_dir=tmp_path, audio_root=tmp_path, species=SPECIES, threshold=0.5), (A, WINDOWS_A))[0]
    assert path.is_file()
    assert run(RavenTables(out_dir=tmp_path, audio_root=tmp_path, species=SPECIES, threshold=0.99), (A, WINDOWS_A)) == []
    assert not path.exists()


def test_combined_raven_table_lays_recordings_out_as_a_file_sequence(tmp_path):
    out, root = tmp_path / "raven", tmp_path / "audio"
    writer = RavenTables(out_dir=out, audio_root=root, species=SPECIES, threshold=0.5, bands=BANDS, combined=True)
    writer.add(A, WINDOWS_A)
    assert not (out / "detections.selections.txt").exists()  # only a finished table appears under its name
    writer.add(QUIET, EMPTY)
    writer.add(B, WINDOWS_B)
    assert writer.close() == [out / "detections.selections.txt"]
    rows = table(out / "detections.selections.txt")
    assert rows["Selection"].tolist() == ["1", "2", "3", "4", "5", "6"]
    second = rows.iloc[4:]
    # B starts after A (60 s) and the quiet recording (10 s) in the sequence.
    assert second["Begin Time (s)"].tolist() == ["80.0", "82.0"] and second["End Time (s)"].tolist() == ["82.0", "84.0"]
    assert second["File Offset (s)"].tolist() == ["10.0", "12.0"]
    assert second["Begin Path"].tolist() == [str(root.absolute() / "siteB" / "20240401" / NAME)] * 2
    assert "Label" not in rows.columns and rows["Score"].tolist() == ["0.9", "0.7", "0.6", "0.55", "0.95", "0.8"]
    assert read_raven(out / "detections.selections.txt", species=SPECIES) == BOXES_A + BOXES_B


def test_combined_raven_table_without_detections_is_an_empty_table(tmp_path):
    paths = run(RavenTables(out_dir=tmp_path, audio_root=tmp_path, species=SPECIES, threshold=0.5, combined=True), (QUIET, EMPTY))
    assert read_raven(paths[0]) == []


def test_audacity_labels_carry_name_score_and_band(tmp_path):
    written = run(AudacityLabels(out_dir=tmp_path, species=SPECIES, threshold=0.5, bands=BANDS), (A, WINDOWS_A), (QUIET, EMPTY))
    assert written == [tmp_path / "siteA" / "20240401" / "20240401_060000.txt"]
    assert written[0].read_text() == (
        "0.000000\t2.000000\tEleutherodactylus coqui 0.900\n\\\t1000.000000\t3000.000000\n"
        "2.000000\t4.000000\tspecies 3 0.700\n\\\t0.000000\t24000.000000\n"
        "4.000000\t6.000000\tEleutherodactylus coqui 0.600\n\\\t1000.000000\t3000.000000\n"
        "4.000000\t6.000000\tCoereba flaveola 0.550\n\\\t2000.000000\t24000.000000\n")


def test_birdnet_csv_lists_every_detection_with_its_file(tmp_path):
    root = tmp_path / "audio"
    out = tmp_path / "detections.birdnet.csv"
    assert run(BirdnetCsv(out_path=out, audio_root=root, species=SPECIES, threshold=0.75), (A, WINDOWS_A), (QUIET, EMPTY),
               (B, WINDOWS_B)) == [out]
    file_a, file_b = root.absolute() / A.path, root.absolute() / B.path
    assert out.read_text() == ("Start (s),End (s),Scientific name,Common name,Confidence,File\n"
                               f"0.0,2.0,Eleutherodactylus coqui,Eleutherodactylus coqui,0.9,{file_a}\n"
                               f"10.0,12.0,species 3,species 3,0.95,{file_b}\n"
                               f"12.0,14.0,Eleutherodactylus coqui,Eleutherodactylus coqui,0.8,{file_b}\n")


def test_recording_summary_has_one_row_per_recording_and_species(tmp_path):
    out = tmp_path / "recordings.csv"
    writer = RecordingSummary(out_path=out, species=SPECIES, top_k=2)
    writer.add(A, WINDOWS_A)
    assert not out.exists()
    writer.add(QUIET, EMPTY)
    writer.add(B, WINDOWS_B)
    assert writer.close() == [out] and writer.close() == [out]
    lines = out.read_text().splitlines()
    assert lines[0] == "path,recording_id,site,start_time,duration_s,species_id,species,max_score,topk_mean"
    assert lines[1:4] == [
        f"{A.path},{A.recording_id},siteA,2024-04-01T06:00:00,60.0,0,Eleutherodactylus coqui,0.9,0.75",
        f"{A.path},{A.recording_id},siteA,2024-04-01T06:00:00,60.0,3,species 3,0.7,0.45",
        f"{A.path},{A.recording_id},siteA,2024-04-01T06:00:00,60.0,7,Coereba flaveola,0.55,0.275",
    ]
    assert lines[4] == f"{QUIET.path},{QUIET.recording_id},siteA,,10.0,0,Eleutherodactylus coqui,,"
    assert lines[7:] == [
        f"{B.path},{B.recording_id},siteB,,30.0,0,Eleutherodactylus coqui,0.8,0.55",
        f"{B.path},{B.recording_id},siteB,,30.0,3,species 3,0.95,0.475",
        f"{B.path},{B.recording_id},siteB,,30.0,7,Coereba flaveola,0.2,0.15",
    ]
    frame = pd.read_csv(out)
    assert len(frame) == 9 and math.isnan(frame.loc[4, "max_score"])


@pytest.mark.parametrize("aggregate, expected_a, expected_b", [
    ("max", "0.9,0.7,0.55", "0.8,0.95,0.2"),
    ("topk_mean", "0.75,0.45,0.275", "0.55,0.475,0.15"),
])
def test_submission_csv_is_one_wide_row_per_recording(tmp_path, aggregate, expected_a, expected_b):
    out = tmp_path / "submission.csv"
    run(SubmissionCsv(out_path=out, species=SPECIES, aggregate=aggregate, top_k=2), (A, WINDOWS_A), (QUIET, EMPTY), (B, WINDOWS_B))
    assert out.read_text() == (f"recording_id,s0,s3,s7\n{A.recording_id},{expected_a}\n{QUIET.recording_id},,,\n"
                               f"{B.recording_id},{expected_b}\n")


def test_make_writers_places_each_format_and_rejects_unknown_ones(tmp_path):
    writers = make_writers(formats=list(WRITERS) + ["summary"], out_dir=tmp_path, audio_root=tmp_path / "audio", species=SPECIES,
                           threshold=0.5, bands=BANDS, aggregate="max", top_k=3)
    assert len(writers) == len(WRITERS)  # a format named twice is written once
    written = []
    for writer in writers:
        written += run(writer, (A, WINDOWS_A))
    relative = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert relative == ["audacity/siteA/20240401/20240401_060000.txt", "detections.birdnet.csv",
                        "raven/detections.selections.txt", "raven/siteA/20240401/20240401_060000.Table.1.selections.txt",
                        "recordings.csv", "submission.csv"]
    with pytest.raises(InputError, match="known formats: submission, summary, raven, raven-combined, audacity, birdnet"):
        make_writers(formats=["raven", "kml"], out_dir=tmp_path, audio_root=tmp_path, species=SPECIES, threshold=0.5,
                     bands=None, aggregate="max", top_k=3)


def test_bad_settings_and_windows_without_species_columns_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="aggregation 'median'"):
        SubmissionCsv(out_path=tmp_path / "s.csv", species=SPECIES, aggregate="median")
    with pytest.raises(InputError, match="threshold"):
        RavenTables(out_dir=tmp_path, audio_root=tmp_path, species=SPECIES, threshold="high")
    writer = BirdnetCsv(out_path=tmp_path / "b.csv", audio_root=tmp_path, species=SPECIES, threshold=0.5)
    with pytest.raises(InputError, match=r"siteA/20240401/20240401_060000.WAV: window scores lack column\(s\) s7"):
        writer.add(A, WINDOWS_A.drop(columns=["s7"]))
