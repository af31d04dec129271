"""Config and preset files: unknown keys, wrong types, out-of-range values and contradictions are
refused naming the key path and what is allowed; a YAML file that is not a config is refused too."""

from __future__ import annotations

import re

import pytest
import yaml

from dawnchorus.config import load_any_config, load_config, load_preset, save_config, with_head_overrides, with_overrides
from dawnchorus.errors import InputError


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", "unknown key 'epoch' in train; keys are folds"),
    ("trian.epochs=3", "unknown section 'trian'; sections are features"),
    ("train.epochs=lots", "train.epochs: expected int"),
    ("train.epochs=0", "train.epochs=0 (at least 1)"),
    ("features.f_max_hz=40000", "features.f_max_hz=40000.0 (at most sample_rate_hz / 2 = 16000)"),
    ("features.f_min_hz=17000", "features.f_min_hz=17000.0 (0 or more, below features.f_max_hz)"),
    ("loss.label_mode=maybe", "loss.label_mode='maybe' (masked, naive or tp_only)"),
    ("sampling.tp_fraction=1.5", "sampling.tp_fraction=1.5 (a share between 0 and 1)"),
    ("augment.noise_snr_db=[20, 5]", "augment.noise_snr_db=(20.0, 5.0) ([low, high] with low <= high)"),
    ("augment.background_prob=0.5", "above 0 it needs augment.background_dir"),
    ("train.train_folds=[5]", "train.train_folds=(5,) (null or fold numbers from 0 to train.folds - 1 = 4)"),
    ("infer.aggregate=mean", "infer.aggregate='mean' (max or topk_mean)"),
    ("pseudo.hard_thresholds=[0.9, 0.1]", "null or [low, high], 0 <= low < high <= 1"),
])
def test_bad_cnn_settings_name_the_key_and_what_is_allowed(override, message):
    with pytest.raises(InputError) as caught:
        with_overrides(load_preset("cpu-small"), [override])
    assert message in str(caught.value)


def test_every_problem_of_a_config_file_is_listed_at_once(tmp_path):
    path = tmp_path / "config.yaml"
    save_config(load_preset("cpu-small"), path)
    raw = yaml.safe_load(path.read_text())
    raw["train"]["epochs"], raw["sampling"]["crop_s"] = -2, 0
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match=r"train.epochs=-2 \(at least 1\).*sampling.crop_s=0|sampling.crop_s=0.*train.epochs=-2"):
        load_config(path)


@pytest.mark.parametrize("text, message", [
    ("[1, 2, 3]", "config"),
    ("train: {epochs: !!python/object/apply:os.system [echo hi]}", "not valid YAML"),  # no unsafe YAML tags
    ("train: [", "not valid YAML"),
])
def test_files_that_are_not_configs_are_refused(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_any_config(path)


@pytest.mark.parametrize("override, message", [
    ("embedder=perch", "embedder='perch'"),
    ("template_boxes=all", "template_boxes='all'"),
    ("c=0", "c=0"),
    ("colour=red", "key among"),
])
def test_bad_head_settings_are_refused(override, message):
    with pytest.raises(InputError, match=message):
        with_head_overrides(load_any_config("templates-linear"), [override])


@pytest.mark.parametrize("override, needle", [
    ("model.backbone=resnet9000", "model.backbone 'resnet9000' is not a timm model"),
    ("model.head=xyz", "model.head 'xyz' is unknown; choose from"),
    ("loss.name=hinge", "loss.name 'hinge' is unknown; choose from"),
])
def test_model_and_loss_names_are_refused_before_any_data_is_read(tmp_path, override, needle):
    from dawnchorus.train import train

    config = with_overrides(load_preset("cpu-small"), [override])
    with pytest.raises(InputError, match=re.escape(needle)):
        train(data_dir=tmp_path / "no_such_dataset", out_dir=tmp_path / "run", config=config)  # no dataset needed to say so
    assert not (tmp_path / "run").exists()
