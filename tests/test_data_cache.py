import os

import numpy as np
import pytest

from dawnchorus.data import AudioCache, load_audio
from dawnchorus.errors import AudioError

from conftest import write_tone


def test_cache_serves_the_same_samples_and_hits_the_second_time(tmp_path):
    source = write_tone(tmp_path / "a.flac", sample_rate_hz=44100, duration_s=2.0)
    cache = AudioCache(tmp_path / "cache", sample_rate_hz=48000)
    first = cache.load(source)
    # Stored as 16-bit samples: within half a quantisation step of the decoded float32.
    np.testing.assert_allclose(first, load_audio(source, sample_rate_hz=48000), atol=0.5 / 32767 + 1e-7)
    assert isinstance(cache.get(source), np.memmap) and cache.get(source).dtype == np.int16
    assert cache.misses == 1 and cache.hits >= 1


def test_crops_from_the_cache_match_direct_crops(tmp_path):
    source = write_tone(tmp_path / "a.flac", duration_s=2.0)
    cache = AudioCache(tmp_path / "cache", sample_rate_hz=48000)
    crop = cache.load(source, t_start_s=0.5, duration_s=1.0)
    np.testing.assert_allclose(crop, load_audio(source, sample_rate_hz=48000, t_start_s=0.5, duration_s=1.0), atol=0.5 / 32767 + 1e-7)
    padded = cache.load(source, t_start_s=1.5, duration_s=1.0)
    assert padded.shape == (48000,) and np.all(padded[24000:] == 0)
    with pytest.raises(AudioError, match="outside the recording"):
        cache.load(source, t_start_s=3.0, duration_s=1.0)


def test_changed_source_is_detected_as_stale_and_rebuilt(tmp_path):
    source = write_tone(tmp_path / "a.wav", freq_hz=500, duration_s=1.0)
    cache = AudioCache(tmp_path / "cache", sample_rate_hz=48000)
    old = cache.load(source)
    write_tone(source, freq_hz=3000, duration_s=1.5)
    os.utime(source, ns=(os.stat(source).st_atime_ns, os.stat(source).st_mtime_ns + 10**9))
    assert not cache.is_fresh(source)
    new = cache.load(source)
    assert new.shape == (72000,) and not np.array_equal(new[:48000], old)
    assert cache.misses == 2 and cache.is_fresh(source)


def test_entries_are_per_sample_rate_and_prune_removes_orphans(tmp_path):
    a = write_tone(tmp_path / "a.wav", duration_s=1.0)
    b = write_tone(tmp_path / "b.wav", duration_s=1.0)
    cache48 = AudioCache(tmp_path / "cache", sample_rate_hz=48000)
    cache32 = AudioCache(tmp_path / "cache", sample_rate_hz=32000)
    assert cache48.warm([a, b]) == 2 and cache48.warm([a, b]) == 0
    assert cache32.get(a).shape == (32000,)
    b.unlink()
    assert cache48.prune() == 1
    assert cache48.is_fresh(a) and cache32.is_fresh(a)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_entries_of_an_older_format_are_stale(tmp_path):
    import json

    source = write_tone(tmp_path / "a.wav", duration_s=0.5)
    cache = AudioCache(tmp_path / "cache", sample_rate_hz=48000)
    cache.get(source)
    meta_path = next((tmp_path / "cache").glob("*.json"))
    meta = json.loads(meta_path.read_text())
    meta["format"] = "float32"
    meta_path.write_text(json.dumps(meta))
    assert not cache.is_fresh(source)
    cache.get(source)
    assert cache.is_fresh(source) and cache.misses == 2


def test_open_entries_are_reused_until_the_source_changes(tmp_path, monkeypatch):
    source = write_tone(tmp_path / "a.wav", duration_s=0.5)
    cache = AudioCache(tmp_path / "cache", sample_rate_hz=48000)
    first = cache.load(source, t_start_s=0.1, duration_s=0.2)
    monkeypatch.setattr(cache, "is_fresh", lambda _: (_ for _ in ()).throw(AssertionError("sidecar re-read")))
    np.testing.assert_array_equal(cache.load(source, t_start_s=0.1, duration_s=0.2), first)
    monkeypatch.undo()
    os.utime(source, ns=(1, 1))  # the source changed: the entry is checked (and rebuilt) again
    cache.load(source, t_start_s=0.1, duration_s=0.2)
    assert cache.misses == 2
