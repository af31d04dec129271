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


def test_embedding_presets_load_override_and_roundtrip(tmp_path):
    from dawnchorus.config import HeadConfig, load_any_config, save_head_config, with_head_overrides

    assert {"embed-linear", "embed-mlp"} <= set(preset_names())
    linear, mlp = load_any_config("embed-linear"), load_any_config("embed-mlp")
    assert isinstance(linear, HeadConfig) and (linear.head, mlp.head) == ("linear", "mlp")
    assert linear.pseudo_thresholds == (0.1, 0.9) and mlp.pseudo_thresholds is None
    assert isinstance(load_any_config("cpu-small"), RunConfig)
    changed = with_head_overrides(linear, ["c=0.05", "top_k=3", "pseudo_thresholds=[0.2, 0.8]", "aggregate=max"])
    assert (changed.c, changed.top_k, changed.pseudo_thresholds, changed.aggregate) == (0.05, 3, (0.2, 0.8), "max")
    assert load_any_config(save_head_config(changed, tmp_path / "run" / "config.yaml")) == changed
    with pytest.raises(InputError, match="embedding-head configs take key=value"):
        with_head_overrides(linear, ["head.c=0.05"])
    with pytest.raises(InputError, match="expected float"):
        with_head_overrides(linear, ["c=strong"])
    with pytest.raises(InputError, match=r"invalid head='forest'"):
        with_head_overrides(linear, ["head=forest"])
    with pytest.raises(InputError, match="invalid pseudo_thresholds"):
        with_head_overrides(linear, ["pseudo_thresholds=[0.9, 0.1]"])
    with pytest.raises(InputError, match="invalid pseudo_thresholds"):
        with_head_overrides(linear, ["pseudo_thresholds=[0.1, 0.5, 0.9]"])
    with pytest.raises(InputError, match="embedding-head config, not a CNN run config"):
        load_preset("embed-linear")
