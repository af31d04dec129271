from pathlib import Path

import pytest
import torch

from dawnchorus.augment import BackgroundBank, SpecAugment, augment_waveforms, mix_backgrounds, mix_targets, mixup, pink_noise
from dawnchorus.errors import InputError
from dawnchorus.config import AugmentConfig

NAN = float("nan")


def test_mix_targets_label_algebra():
    a = torch.tensor([[1, 1, 1, 0, 0, 0, NAN, NAN, NAN]])
    b = torch.tensor([[1, 0, NAN, 0, 1, NAN, NAN, 1, 0]])
    expected = torch.tensor([[1, 1, 1, 0, 1, NAN, NAN, 1, NAN]])
    torch.testing.assert_close(mix_targets(a, b), expected, equal_nan=True)


def test_mixup_mixes_waves_and_targets_consistently():
    torch.manual_seed(0)
    waves = torch.stack([torch.full((100,), float(i)) for i in range(8)])
    targets = torch.eye(8)
    generator = torch.Generator().manual_seed(0)
    mixed, mixed_targets = mixup(waves, targets, AugmentConfig(mixup_prob=1.0), generator=generator)
    for row in range(8):
        sources = torch.nonzero(mixed_targets[row] == 1).flatten().tolist()
        assert row in sources
        if len(sources) == 2:
            partner = [s for s in sources if s != row][0]
            value = float(mixed[row, 0])
            assert min(row, partner) - 1e-5 <= value <= max(row, partner) + 1e-5
            assert abs(value - row) <= abs(value - partner) + 1e-5  # the original dominates
    unchanged, same_targets = mixup(waves, targets, AugmentConfig(mixup_prob=0.0), generator=generator)
    assert torch.equal(unchanged, waves) and torch.equal(same_targets, targets)


def test_waveform_augment_is_seeded_and_noise_hits_the_snr():
    config = AugmentConfig(gain_db=0.0, noise_prob=1.0, noise_snr_db=(10.0, 10.0), time_shift_fraction=0.0)
    waves = torch.sin(torch.linspace(0, 400, 32000)).repeat(4, 1)
    first = augment_waveforms(waves, config, generator=torch.Generator().manual_seed(3))
    again = augment_waveforms(waves, config, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    noise = first - waves
    snr = 10 * torch.log10(waves.pow(2).mean(1) / noise.pow(2).mean(1))
    assert torch.allclose(snr, torch.full((4,), 10.0), atol=0.5)


def test_time_shift_rolls_and_gain_scales():
    waves = torch.arange(10.0).repeat(2, 1)
    frame_target = torch.arange(5.0).repeat(2, 3, 1)  # (batch, classes, frames): 2 samples per frame
    config = AugmentConfig(gain_db=0, noise_prob=0, time_shift_fraction=0.5)
    shifted, frames = augment_waveforms(waves, config, generator=torch.Generator().manual_seed(1),
                                        frames={"frame": frame_target})
    for row, frame_row in zip(shifted, frames["frame"]):
        assert sorted(row.tolist()) == list(range(10))
        wave_shift = (10 - int(row[0])) % 10  # new[0] = old[-shift]
        frame_shift = (5 - int(frame_row[0, 0])) % 5
        assert (frame_row == frame_row[:1]).all()
        gap = abs(wave_shift / 2 - frame_shift)  # frames move with their samples, to within half a frame
        assert min(gap, 5 - gap) <= 0.5
    scaled = augment_waveforms(waves + 1, AugmentConfig(gain_db=6, noise_prob=0), generator=torch.Generator().manual_seed(1))
    ratio = scaled / (waves + 1)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio)) and float(ratio.max()) <= 2.0 and float(ratio.min()) >= 0.5


def test_pink_noise_has_falling_spectrum():
    noise = pink_noise((1, 2**14), generator=torch.Generator().manual_seed(0), device="cpu")
    power = torch.fft.rfft(noise).abs().pow(2)[0]
    assert float(power[10:100].mean()) > 10 * float(power[-1000:].mean())


def test_spec_augment_masks_only_in_training():
    module = SpecAugment(AugmentConfig(spec_time_masks=2, spec_time_mask_frames=10, spec_freq_masks=2, spec_freq_mask_bins=4))
    image = torch.randn(4, 1, 32, 100)
    module.train()
    torch.manual_seed(0)
    masked = module(image)
    assert (masked != image).any() and (masked == image).float().mean() > 0.5
    module.eval()
    assert torch.equal(module(image), image)


REAL_BACKGROUNDS = Path(__file__).parent / "data" / "real" / "tfk-audio-environment"


def test_background_bank_holds_real_soundscapes_at_the_model_rate():
    config = AugmentConfig(background_dir=str(REAL_BACKGROUNDS), background_prob=1.0, background_max_s=3.0)
    bank = BackgroundBank(config, sample_rate_hz=16000)
    assert len(bank.files) == 2 and bank.buffer.shape[0] == 2 * 16000 + 16000  # 1.5 s of each 2 s file
    stretch = bank.sample(4, 40000, generator=torch.Generator().manual_seed(0), device="cpu")  # longer than the bank: wraps
    assert stretch.shape == (4, 40000) and torch.allclose(stretch.pow(2).mean(dim=1), torch.ones(4), atol=1e-3)


def test_mixed_backgrounds_make_absent_species_unknown_but_keep_calls():
    config = AugmentConfig(background_dir=str(REAL_BACKGROUNDS), background_prob=1.0, background_snr_db=(0.0, 0.0))
    bank = BackgroundBank(config, sample_rate_hz=8000)
    waves = torch.sin(torch.arange(8000.0))[None].repeat(3, 1)
    targets = {"clip": torch.tensor([[1.0, 0.0, NAN]] * 3), "frame": torch.zeros(3, 3, 5)}
    mixed, labels = mix_backgrounds(waves, targets, bank, config, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(mixed, waves)
    noise = mixed - waves  # at 0 dB the background is as loud as the crop
    assert torch.allclose(noise.pow(2).mean(dim=1), waves.pow(2).mean(dim=1), rtol=1e-3)
    torch.testing.assert_close(labels["clip"], torch.tensor([[1.0, NAN, NAN]] * 3), equal_nan=True)
    assert torch.isnan(labels["frame"]).all()
    keep = AugmentConfig(**{**config.__dict__, "background_labels": "keep"})
    _, kept = mix_backgrounds(waves, targets, bank, keep, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(kept["clip"], targets["clip"], equal_nan=True)
    none = AugmentConfig(**{**config.__dict__, "background_prob": 1e-9})
    unmixed, untouched = mix_backgrounds(waves, targets, bank, none, generator=torch.Generator().manual_seed(1))
    assert torch.equal(unmixed, waves) and torch.equal(untouched["frame"], targets["frame"])


@pytest.mark.parametrize("settings, words", [
    ({"background_dir": "/no/such/folder", "background_prob": 0.5}, "not a folder"),
    ({"background_dir": str(REAL_BACKGROUNDS), "background_prob": 0.0}, "background_prob"),
    ({"background_dir": str(REAL_BACKGROUNDS), "background_prob": 0.5, "background_labels": "zero"}, "background_labels"),
    ({"background_dir": "EMPTY", "background_prob": 0.5}, "no audio file"),
])
def test_bad_background_settings_are_refused_by_name(settings, words, tmp_path):
    if settings["background_dir"] == "EMPTY":
        (tmp_path / "notes.txt").write_text("not audio")
        settings = {**settings, "background_dir": str(tmp_path)}
    with pytest.raises(InputError, match=words):
        BackgroundBank(AugmentConfig(**settings), sample_rate_hz=16000)
