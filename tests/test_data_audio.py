
import numpy as np
import pytest
import soundfile as sf

from dawnchorus.data import find_audio_files, load_audio, probe_audio, resample
from dawnchorus.data.audio import window_starts, window_starts_between
from hypothesis import given, settings, strategies as st
from dawnchorus.errors import AudioError

from conftest import write_tone


def test_probe_reads_header(tmp_path):
    path = write_tone(tmp_path / "a.flac", sample_rate_hz=44100, duration_s=1.5)
    info = probe_audio(path)
    assert info.sample_rate_hz == 44100 and info.n_frames == 66150
    assert info.duration_s == pytest.approx(1.5) and info.nyquist_hz == 22050


def test_load_is_mono_float32_and_stereo_is_averaged(tmp_path):
    mono = load_audio(write_tone(tmp_path / "m.wav"), sample_rate_hz=48000)
    stereo = load_audio(write_tone(tmp_path / "s.wav", channels=2), sample_rate_hz=48000)
    assert mono.dtype == np.float32 and mono.ndim == 1
    np.testing.assert_allclose(stereo, mono, atol=1e-4)


def test_441_and_48_khz_files_come_out_the_same_length(tmp_path):
    a = load_audio(write_tone(tmp_path / "a.flac", sample_rate_hz=48000, duration_s=3.0), sample_rate_hz=48000)
    b = load_audio(write_tone(tmp_path / "b.flac", sample_rate_hz=44100, duration_s=3.0), sample_rate_hz=48000)
    assert a.shape == b.shape == (144000,)
    c = load_audio(tmp_path / "b.flac", sample_rate_hz=32000)
    assert c.shape == (96000,)


def test_resampling_preserves_a_tone(tmp_path):
    out = load_audio(write_tone(tmp_path / "b.flac", sample_rate_hz=44100, freq_hz=3000, duration_s=1.0), sample_rate_hz=48000)
    t = np.arange(out.size) / 48000
    expected = 0.5 * np.sin(2 * np.pi * 3000 * t)
    middle = slice(1000, -1000)
    # The residual is the fixture's 1% noise and 16-bit quantisation, not resampling error.
    assert np.sqrt(np.mean((out[middle] - expected[middle]) ** 2)) < 0.02


@pytest.mark.parametrize("rate", [48000, 44100])
def test_crop_matches_the_same_span_of_the_full_load(tmp_path, rate):
    path = write_tone(tmp_path / "x.flac", sample_rate_hz=rate, duration_s=4.0, freq_hz=1234)
    full = load_audio(path, sample_rate_hz=48000)
    crop = load_audio(path, sample_rate_hz=48000, t_start_s=1.25, duration_s=0.5)
    assert crop.shape == (24000,)
    np.testing.assert_allclose(crop, full[60000:84000], atol=2e-3)


def test_crop_past_the_end_is_zero_padded(tmp_path):
    path = write_tone(tmp_path / "x.wav", duration_s=1.0)
    crop = load_audio(path, sample_rate_hz=48000, t_start_s=0.75, duration_s=0.5)
    assert crop.shape == (24000,) and np.all(crop[12000:] == 0) and np.any(crop[:12000] != 0)


def test_crop_seeks_instead_of_decoding_everything(tmp_path, monkeypatch):
    path = write_tone(tmp_path / "long.flac", duration_s=10.0)
    reads = []
    original = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        reads.append(frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    load_audio(path, sample_rate_hz=48000, t_start_s=5.0, duration_s=1.0)
    assert reads and max(reads) <= 48000 * 1.1


def test_corrupt_empty_and_missing_files_name_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + bytes(range(256)) * 10)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    silent = tmp_path / "zero.wav"
    sf.write(str(silent), np.zeros(0, dtype=np.float32), 48000)
    for path in (corrupt, empty, silent, tmp_path / "missing.flac"):
        with pytest.raises(AudioError, match=path.name):
            load_audio(path, sample_rate_hz=48000)


def test_truncated_file_names_the_file(tmp_path):
    path = write_tone(tmp_path / "cut.flac", duration_s=3.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(AudioError, match="cut.flac"):
        load_audio(path, sample_rate_hz=48000)


def test_bad_crop_arguments(tmp_path):
    path = write_tone(tmp_path / "x.wav", duration_s=1.0)
    with pytest.raises(AudioError, match="negative"):
        load_audio(path, sample_rate_hz=48000, t_start_s=-1, duration_s=0.5)
    with pytest.raises(AudioError, match="beyond the end"):
        load_audio(path, sample_rate_hz=48000, t_start_s=2.0, duration_s=0.5)


def test_resample_exact_length():
    x = np.random.default_rng(0).standard_normal(44100).astype(np.float32)
    assert resample(x, from_hz=44100, to_hz=48000, n_out=48000).shape == (48000,)


def test_find_audio_files_rejects_duplicate_ids(tmp_path):
    write_tone(tmp_path / "a" / "rec.flac")
    write_tone(tmp_path / "b" / "rec.wav")
    with pytest.raises(AudioError, match="share the recording id 'rec'"):
        find_audio_files(tmp_path)
    assert list(find_audio_files(tmp_path / "a")) == ["rec"]


@settings(max_examples=300, deadline=None)
@given(n_total=st.integers(1, 5000), window=st.integers(1, 600), hop=st.integers(1, 600),
       first=st.integers(0, 5000), length=st.integers(1, 3000))
def test_window_starts_between_are_the_whole_file_starts_in_that_span(n_total, window, hop, first, length):
    whole = window_starts(n_total, window=window, hop=hop)
    expected = whole[(whole >= first) & (whole < first + length)]
    got = window_starts_between(n_total, window=window, hop=hop, first=first, stop=first + length)
    assert got.tolist() == expected.tolist()
