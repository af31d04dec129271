import pytest

from dawnchorus.config import RunConfig, from_dict, load_config, load_preset, preset_names, save_config, with_overrides
from dawnchorus.errors import InputError


def test_presets_load_and_roundtrip(tmp_path):
    assert {"cpu-small", "gpu"} <= set(preset_names())
    for name in ("cpu-small", "gpu"):
        config = load_preset(name)
        assert isinstance(config, RunConfig)
        assert load_config(save_config(config, tmp_path / f"{name}.yaml")) == config
    assert load_preset("gpu").features.n_mels >= 128


def test_overrides_are_typed():
    config = with_overrides(load_preset("cpu-small"), ["train.epochs=3", "features.extra_channels=[freq, pcen]",
                                                      "model.weights=null", "train.lr=1e-3", "train.train_folds=[0, 2]"])
    assert config.train.epochs == 3 and config.features.extra_channels == ("freq", "pcen")
    assert config.train.lr == 0.001 and config.train.train_folds == (0, 2)
    with pytest.raises(InputError, match="unknown key 'epoch' in train"):
        with_overrides(config, ["train.epoch=3"])
    with pytest.raises(InputError, match="expected int"):
        with_overrides(config, ["train.epochs=three"])
    with pytest.raises(InputError, match="section.key=value"):
        with_overrides(config, ["epochs=3"])
    with pytest.raises(InputError, match="unknown preset"):
        load_preset("huge")


def test_bad_yaml_sections_are_named():
    with pytest.raises(InputError, match="unknown section 'trainer'"):
        from_dict({"trainer": {}}, source="x.yaml")
    with pytest.raises(InputError, match="x.yaml: features.n_mels: expected int"):
        from_dict({"features": {"n_mels": "many"}}, source="x.yaml")


def test_configs_saved_with_a_renamed_key_still_load():
    config = from_dict({"augment": {"time_shift_s": 0.25}}, source="old run")
    assert config.augment.time_shift_fraction == 0.25
