import librosa
import numpy as np
import pytest
import torch

from dawnchorus.config import FeatureConfig
from dawnchorus.features import FrontEnd, LogMel, delta, pcen


def signal(seconds=1.0, rate=32000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    chirp = 0.3 * np.sin(2 * np.pi * (1000 + 3000 * t) * t)
    return (chirp + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("n_fft,hop,n_mels,win", [(1024, 320, 64, None), (2048, 512, 128, None), (512, 256, 40, 400)])
def test_log_mel_matches_librosa(n_fft, hop, n_mels, win):
    """Parity with librosa: within 0.05 dB wherever the reference is above its 80 dB floor."""
    config = FeatureConfig(sample_rate_hz=32000, n_fft=n_fft, hop_length=hop, win_length=win, n_mels=n_mels,
                           f_min_hz=50.0, f_max_hz=15000.0, top_db=80.0)
    y = signal()
    ours = LogMel(config)(torch.from_numpy(y)[None])[0].numpy()
    mel = librosa.feature.melspectrogram(y=y.astype(np.float64), sr=32000, n_fft=n_fft, hop_length=hop, win_length=win,
                                         window="hann", center=True, pad_mode="constant", power=2.0, n_mels=n_mels,
                                         fmin=50.0, fmax=15000.0)
    reference = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=0.05)


def test_batched_equals_one_by_one_and_runs_on_the_input_device():
    config = FeatureConfig(n_mels=32)
    waves = torch.from_numpy(np.stack([signal(seed=0), signal(seed=1) * 0.1]))
    logmel = LogMel(config)
    batched = logmel(waves)
    single = torch.cat([logmel(waves[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(batched, single)
    assert batched.device == waves.device


def test_front_end_channels_and_normalisation():
    config = FeatureConfig(n_mels=32, extra_channels=("freq", "pcen", "delta"))
    image = FrontEnd(config)(torch.from_numpy(signal())[None])
    assert image.shape == (1, 4, 32, 101)
    assert abs(float(image[0, 0].mean())) < 1e-4 and abs(float(image[0, 0].std()) - 1) < 1e-2
    ramp = image[0, 1, :, 0]
    assert float(ramp[0]) == -1.0 and float(ramp[-1]) == 1.0 and torch.all(ramp.diff() > 0)
    with pytest.raises(ValueError, match="unknown extra channel"):
        FrontEnd(FeatureConfig(extra_channels=("bogus",)))


def test_pcen_suppresses_steady_background_but_keeps_onsets():
    frames = 400
    steady = torch.full((1, 4, frames), 100.0)
    burst = steady.clone()
    burst[:, :, 200:210] = 10000.0
    out_steady, out_burst = pcen(steady, frames_per_second=100), pcen(burst, frames_per_second=100)
    assert float(out_steady[..., 50:].std()) < 1e-3  # a constant input becomes a constant
    assert float(out_burst[..., 200:210].mean()) > 5 * float(out_steady[..., 200:210].mean())


def test_delta_of_a_ramp_is_its_slope():
    ramp = torch.arange(50, dtype=torch.float32).view(1, 1, 50).repeat(1, 3, 1) * 2.0
    np.testing.assert_allclose(delta(ramp)[..., 5:-5].numpy(), 2.0, atol=1e-5)
    reference = librosa.feature.delta(ramp[0].numpy(), width=9, mode="interp")
    np.testing.assert_allclose(delta(ramp)[0, :, 5:-5].numpy(), reference[:, 5:-5], atol=1e-4)
