"""Tests of self-supervised pretraining (dawnchorus.pretrain)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from dawnchorus.cli import app
from dawnchorus.config import load_preset, with_overrides
from dawnchorus.errors import InputError
from dawnchorus.models import build_model
from dawnchorus.pretrain import PretrainSettings, nt_xent, pretrain
from dawnchorus.synth import SynthConfig, generate_corpus
from dawnchorus.train import train

SMALL = ["features.sample_rate_hz=16000", "features.n_fft=512", "features.hop_length=256", "features.n_mels=32",
         "features.f_max_hz=8000", "model.backbone=mobilenetv3_small_050", "sampling.crop_s=1.0", "train.device=cpu"]
FAST_TRAIN = ["sampling.crops_per_epoch=16", "train.batch_size=8", "train.epochs=1", "train.folds=2", "train.train_folds=[0]"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(out_dir=root, config=SynthConfig(n_train=6, n_test=2, duration_s=4.0, seed=4, workers=1))
    return root


def test_nt_xent_rewards_matching_views():
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    matched = nt_xent(a, a, temperature=0.1)
    shuffled = nt_xent(a, a[torch.randperm(8)], temperature=0.1)
    assert matched < shuffled and matched < 0.5


def test_pretrained_backbone_loads_into_training_and_a_rerun_continues(corpus, tmp_path):
    config = with_overrides(load_preset("cpu-small"), SMALL)
    out = tmp_path / "backbone.safetensors"
    pretrain(audio_dir=corpus, out=out, config=config, settings=PretrainSettings(steps=2, batch_size=4, checkpoint_every=1))
    log = json.loads(out.with_suffix(".json").read_text())
    assert log["steps_done"] == 2 and len(log["losses"]) == 2 and log["files"] == 8
    weights = load_file(str(out))
    model = build_model(features=config.features, model=with_overrides(config, [f"model.weights={out}"]).model, n_classes=24)
    loaded = model.backbone.state_dict()
    assert weights.keys() == loaded.keys() and all(torch.equal(weights[k], loaded[k]) for k in weights)
    # a rerun with more steps continues where the first stopped
    pretrain(audio_dir=corpus, out=out, config=config, settings=PretrainSettings(steps=3, batch_size=4, checkpoint_every=1))
    assert json.loads(out.with_suffix(".json").read_text())["steps_done"] == 3
    with pytest.raises(InputError, match="other settings"):
        pretrain(audio_dir=corpus / "train", out=out, config=config, settings=PretrainSettings(steps=3, batch_size=4))
    run = train(data_dir=corpus, out_dir=tmp_path / "run", config=with_overrides(config, [*FAST_TRAIN, f"model.weights={out}"]))
    assert (run / "fold0" / "model.safetensors").is_file()


def test_bad_pretraining_input_is_refused_clearly(tmp_path):
    config = with_overrides(load_preset("cpu-small"), SMALL)
    with pytest.raises(InputError, match="batch_size"):
        PretrainSettings(batch_size=1)
    with pytest.raises(InputError, match="safetensors"):
        pretrain(audio_dir=tmp_path, out=tmp_path / "w.pt", config=config)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(InputError, match="none of 1 audio files can be read"):
        pretrain(audio_dir=tmp_path, out=tmp_path / "w.safetensors", config=config, settings=PretrainSettings(steps=1, batch_size=2))


def test_cli_pretrain(corpus, tmp_path):
    sets = [arg for item in SMALL for arg in ("--set", item)]
    result = CliRunner().invoke(app, ["pretrain", "--audio", str(corpus / "test"), "--out", str(tmp_path / "b.safetensors"),
                                      "--steps", "1", "--batch-size", "2", *sets])
    assert result.exit_code == 0, result.output
    assert "model.weights=" in result.output and (tmp_path / "b.safetensors").is_file()
