"""Recording start times and sites from recorder file names and AudioMoth comments."""

from datetime import datetime

import pytest

from dawnchorus.data.timestamps import parse_recording_start, site_of

AUDIOMOTH_COMMENT = ("Recorded at 06:00:00 01/04/2024 (UTC) by AudioMoth 24F319055FE58D4A at medium gain "
                     "while battery was 4.2V and temperature was 15.2C.")


@pytest.mark.parametrize("path, expected", [
    # AudioMoth, with and without the suffixes some firmware adds
    ("siteA/20240401/20240401_060000.WAV", datetime(2024, 4, 1, 6, 0, 0)),
    ("20240401_060000T.WAV", datetime(2024, 4, 1, 6, 0, 0)),
    ("20240401_060000_001.wav", datetime(2024, 4, 1, 6, 0, 0)),
    # Song Meters
    ("S4A03895_20190522_223000.wav", datetime(2019, 5, 22, 22, 30, 0)),
    ("SMM01234_20230101_050000.wav", datetime(2023, 1, 1, 5, 0, 0)),
    ("SM4_20200101$050000.wav", datetime(2020, 1, 1, 5, 0, 0)),
    ("north-ridge_2_20210615_043015.flac", datetime(2021, 6, 15, 4, 30, 15)),
    # ISO basic, dashed, Arbimon, date-time joined by '-'
    ("20240401T060000.flac", datetime(2024, 4, 1, 6, 0, 0)),
    ("2024-04-01_06-00-30.wav", datetime(2024, 4, 1, 6, 0, 30)),
    ("Sabana-Seca-2015-08-04_19-10.flac", datetime(2015, 8, 4, 19, 10)),
    ("Sabana_Seca-2015-08-05_17-30.flac", datetime(2015, 8, 5, 17, 30)),
    ("Sabana_Seca-2015-08-06_00-40.flac", datetime(2015, 8, 6, 0, 40)),
    ("Currawongs_curlew_West_Knoll_Bees_20091102-183000.mp3", datetime(2009, 11, 2, 18, 30, 0)),
])
def test_recorder_names_give_their_start_time(path, expected):
    assert parse_recording_start(path) == expected


@pytest.mark.parametrize("path", [
    "20241301_060000.WAV",  # month 13
    "20240431_060000.WAV",  # 31 April
    "20240401_250000.WAV",  # hour 25
    "2015-02-30_19-10.flac",
    "20240401.WAV",  # a date without a time
    "siteA/060000.WAV",  # a time without a date
    "rec_a.flac",
    "",
    "siteA/",
    "123420240401_0600001.wav",  # the digits run on: part of a longer number
])
def test_names_without_a_possible_date_time_give_none(path):
    assert parse_recording_start(path) is None


def test_only_the_file_name_is_read():
    assert parse_recording_start("20240401_060000/recording.wav") is None


def test_the_audiomoth_comment_wins_over_a_renamed_file():
    assert parse_recording_start("siteA/20990101_000000.WAV", comment=AUDIOMOTH_COMMENT) == datetime(2024, 4, 1, 6)
    assert parse_recording_start("siteA/renamed.WAV", comment=AUDIOMOTH_COMMENT) == datetime(2024, 4, 1, 6)


def test_a_comment_zone_is_read_but_not_applied():
    for zone in ("UTC+1", "UTC-5"):
        comment = AUDIOMOTH_COMMENT.replace("(UTC)", f"({zone})").replace("06:00:00", "21:15:30")
        assert parse_recording_start("x.WAV", comment=comment) == datetime(2024, 4, 1, 21, 15, 30)


def test_a_comment_that_does_not_parse_leaves_the_name():
    name = "20240401_060000.WAV"
    assert parse_recording_start(name, comment="field notes: windy") == datetime(2024, 4, 1, 6)
    assert parse_recording_start(name, comment="Recorded at 06:00:00 31/13/2024 (UTC)") == datetime(2024, 4, 1, 6)
    assert parse_recording_start(name, comment="") == datetime(2024, 4, 1, 6)


@pytest.mark.parametrize("path, site", [
    ("siteA/20240401/20240401_060000.WAV", "siteA"),
    ("siteA/x.WAV", "siteA"),
    ("20240401/S4A03895_20190522_223000.wav", "S4A03895"),  # a date folder is no site
    ("2024-04-01/20240401_060000.WAV", ""),
    ("S4A03895_20190522_223000.wav", "S4A03895"),
    ("SMM01234_20230101_050000.wav", "SMM01234"),
    ("SM4_20200101$050000.wav", "SM4"),
    ("Sabana-Seca-2015-08-04_19-10.flac", "Sabana-Seca"),
    ("Sabana_Seca-2015-08-05_21-30.flac", "Sabana_Seca"),
    ("Currawongs_curlew_West_Knoll_Bees_20091102-183000.mp3", "Currawongs_curlew_West_Knoll_Bees"),
    ("20240401_060000.WAV", ""),  # AudioMoth names carry no site
    ("rec_a.flac", ""),
    ("my notes 20240401_060000.WAV", ""),  # free text, not a recorder prefix
    ("", ""),
])
def test_site_of(path, site):
    assert site_of(path) == site
