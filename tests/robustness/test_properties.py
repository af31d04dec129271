"""Property-based tests (hypothesis): windows, crops, box-to-frame targets and chunked reading give
in-range, correctly sized results for any duration, window, hop, sample rate and box."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings, strategies as st

from dawnchorus.data.annotations import Box
from dawnchorus.data.audio import load_audio, window_starts
from dawnchorus.data.crops import ClassIndex, crop_start_range, crop_target, frame_target
from dawnchorus.errors import AudioError

CLASSES = ClassIndex([(0, None), (1, None), (2, None)])


@st.composite
def boxes(draw, *, duration_s: float = 60.0):
    t_min = draw(st.floats(0.0, duration_s - 0.01))
    length = draw(st.floats(0.01, 20.0))
    f_min = draw(st.floats(0.0, 20000.0))
    return Box(recording_id="r", species_id=draw(st.integers(0, 2)), songtype_id=1, t_min_s=t_min, f_min_hz=f_min,
               t_max_s=min(duration_s, t_min + length), f_max_hz=f_min + draw(st.floats(1.0, 4000.0)), label=draw(st.integers(0, 1)))


@settings(deadline=None)  # hop 1 over a million samples lists a million windows: slow, not wrong
@given(n_total=st.integers(1, 10**6), window=st.integers(1, 10**5), hop=st.integers(1, 10**5))
def test_windows_cover_the_signal_in_order_and_inside_it(n_total, window, hop):
    starts = window_starts(n_total, window=window, hop=hop)
    assert starts[0] == 0 and (np.diff(starts) > 0).all()
    assert (starts + min(window, n_total) <= max(n_total, window)).all()  # no window runs past the end (short files: one)
    assert starts[-1] + window >= n_total  # the end of the signal is covered
    if n_total > window:
        assert (np.diff(starts) <= hop).all()  # no gaps wider than a hop


@given(box=boxes(), crop_s=st.floats(0.5, 10.0), duration_s=st.floats(0.5, 120.0), min_inside=st.floats(0.05, 1.0))
def test_crop_start_ranges_lie_inside_the_recording(box, crop_s, duration_s, min_inside):
    low, high = crop_start_range(box, crop_s=crop_s, duration_s=duration_s, min_inside=min_inside)
    assert 0.0 <= low <= high <= max(0.0, duration_s - crop_s) + 1e-9


@given(found=st.lists(boxes(), max_size=6), t_start_s=st.floats(0.0, 60.0), crop_s=st.floats(0.5, 10.0),
       min_inside=st.floats(0.05, 1.0), label_mode=st.sampled_from(["masked", "naive", "tp_only"]))
def test_clip_targets_are_one_zero_or_unknown_and_a_tp_wins(found, t_start_s, crop_s, min_inside, label_mode):
    target = crop_target(boxes=found, t_start_s=t_start_s, crop_s=crop_s, classes=CLASSES, min_inside=min_inside,
                         label_mode=label_mode)
    assert target.shape == (3,) and np.isin(target[~np.isnan(target)], (0.0, 1.0)).all()
    if label_mode != "masked":
        assert not np.isnan(target).any()
    for box in found:
        inside = max(0.0, min(box.t_max_s, t_start_s + crop_s) - max(box.t_min_s, t_start_s))
        if box.label == 1 and inside >= min_inside * min(box.duration_s, crop_s):
            assert target[box.species_id] == 1.0


@given(found=st.lists(boxes(), max_size=6), t_start_s=st.floats(0.0, 60.0), crop_s=st.floats(0.5, 10.0),
       n_frames=st.integers(1, 400))
def test_frame_targets_have_one_column_per_frame_and_only_label_frames_inside_boxes(found, t_start_s, crop_s, n_frames):
    target = frame_target(boxes=found, t_start_s=t_start_s, crop_s=crop_s, classes=CLASSES, n_frames=n_frames)
    assert target.shape == (3, n_frames)
    centres = t_start_s + (np.arange(n_frames) + 0.5) * crop_s / n_frames
    for species in range(3):
        covered = np.zeros(n_frames, dtype=bool)
        for box in (b for b in found if b.species_id == species):
            covered |= (centres >= box.t_min_s) & (centres <= box.t_max_s)
        assert np.isnan(target[species, ~covered]).all()  # no box, no claim
        assert not np.isnan(target[species, covered]).any()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file_rate=st.sampled_from([8000, 12000, 22050, 44100, 48000]), model_rate=st.sampled_from([16000, 32000, 48000]),
       duration_s=st.floats(0.05, 3.0), t_start_s=st.floats(0.0, 4.0), span_s=st.floats(0.01, 2.0))
def test_chunked_reading_gives_exactly_the_asked_length_at_any_rate(tmp_path_factory, file_rate, model_rate, duration_s,
                                                                      t_start_s, span_s):
    path = tmp_path_factory.mktemp("audio") / "clip.wav"
    n = max(1, int(duration_s * file_rate))
    sf.write(str(path), (0.3 * np.sin(np.arange(n) * 0.05)).astype(np.float32), file_rate)
    if t_start_s >= n / file_rate:  # a span that starts after the end is refused, naming the file
        with pytest.raises(AudioError, match="clip.wav: crop start .* beyond the end"):
            load_audio(path, sample_rate_hz=model_rate, t_start_s=t_start_s, duration_s=span_s)
        return
    samples = load_audio(path, sample_rate_hz=model_rate, t_start_s=t_start_s, duration_s=span_s)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.shape[0] - round(span_s * model_rate)) <= 1  # past the end: zero padding to the asked length
    assert np.isfinite(samples).all() and np.abs(samples).max(initial=0.0) <= 1.5
