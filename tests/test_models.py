import pytest
import torch

from dawnchorus.config import FeatureConfig, ModelConfig
from dawnchorus.errors import InputError
from dawnchorus.models import HEADS, SLIM_BACKBONES, ClassLayout, build_model, geometric_mean_logit, resolve_device

FEATURES = FeatureConfig(sample_rate_hz=16000, n_fft=512, hop_length=160, n_mels=32, f_max_hz=8000.0)


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("backbone", ["mobilenetv3_small_050", "resnet18"])
def test_models_map_waves_to_logits(head, backbone):
    model = build_model(features=FEATURES, model=ModelConfig(backbone=backbone, head=head), n_classes=5).eval()
    out = model(torch.randn(2, 16000))
    assert out["clip"].shape == (2, 5)
    if head in ("sed", "frame", "clip_frame"):
        assert out["frame"].shape[:2] == (2, 5) and out["frame"].shape[2] >= 3


def test_frame_head_clip_is_the_strongest_frame():
    model = build_model(features=FEATURES, model=ModelConfig(backbone="resnet18", head="frame"), n_classes=3).eval()
    out = model(torch.randn(2, 24000))
    torch.testing.assert_close(out["clip"], out["frame"].amax(dim=-1))


def test_clip_frame_head_scores_the_geometric_mean_of_its_branches():
    model = build_model(features=FEATURES, model=ModelConfig(backbone="resnet18", head="clip_frame"), n_classes=3).eval()
    out = model(torch.randn(2, 24000))
    clip_branch, frame_branch = out["branches"]
    torch.testing.assert_close(frame_branch, out["frame"].amax(dim=-1))
    expected = torch.sqrt(torch.sigmoid(clip_branch) * torch.sigmoid(frame_branch))
    torch.testing.assert_close(torch.sigmoid(out["clip"]), expected)


def test_geometric_mean_logit_stays_finite_at_the_extremes():
    logits = torch.tensor([[30.0, -30.0, 0.0], [40.0, -5.0, 0.0]])
    combined = geometric_mean_logit(logits)
    assert torch.isfinite(combined).all()
    assert combined[0] > 10 and combined[1] < -5 and abs(float(combined[2])) < 1e-6


def test_gem_pool_and_input_channels():
    features = FeatureConfig(sample_rate_hz=16000, n_fft=512, hop_length=160, n_mels=32, f_max_hz=8000.0,
                             extra_channels=("freq", "pcen", "delta"))
    model = build_model(features=features, model=ModelConfig(backbone="resnet18", pool="gem"), n_classes=3)
    assert model.backbone.conv1.in_channels == 4
    assert model(torch.randn(1, 8000))["clip"].shape == (1, 3)


@pytest.mark.parametrize("name", sorted(SLIM_BACKBONES))
def test_slim_backbones_are_narrower_versions_of_their_base(name):
    slim = build_model(features=FEATURES, model=ModelConfig(backbone=name), n_classes=3)
    base = build_model(features=FEATURES, model=ModelConfig(backbone=SLIM_BACKBONES[name][0]), n_classes=3)
    assert type(slim.backbone) is type(base.backbone)
    assert slim.backbone.num_features < base.backbone.num_features
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in base.parameters()) / 3
    assert slim(torch.randn(2, 16000))["clip"].shape == (2, 3)


def test_unknown_choices_and_missing_weights_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not a timm model"):
        build_model(features=FEATURES, model=ModelConfig(backbone="no_such_net"), n_classes=2)
    with pytest.raises(InputError, match="head 'rnn' is unknown"):
        build_model(features=FEATURES, model=ModelConfig(head="rnn"), n_classes=2)
    with pytest.raises(InputError, match="never downloads"):
        build_model(features=FEATURES, model=ModelConfig(weights=str(tmp_path / "w.pth")), n_classes=2)


def test_local_backbone_weights_are_loaded(tmp_path):
    from safetensors.torch import save_file

    source = build_model(features=FEATURES, model=ModelConfig(backbone="resnet18"), n_classes=2)
    save_file(source.backbone.state_dict(), str(tmp_path / "bb.safetensors"))
    loaded = build_model(features=FEATURES, model=ModelConfig(backbone="resnet18", weights=str(tmp_path / "bb.safetensors")), n_classes=2)
    torch.testing.assert_close(loaded.backbone.conv1.weight, source.backbone.conv1.weight)


def test_songtype_layout_folds_back_to_species():
    layout = ClassLayout.for_songtypes([0, 17, 23], [(0, 1), (17, 1), (17, 4), (23, 4)])
    assert layout.classes == ((0, None), (17, 1), (17, 4), (23, None))
    assert layout.class_index(17, 4) == 2 and layout.class_index(23, 1) == 3
    scores = torch.tensor([[0.1, 0.2, 0.9, 0.4]])
    torch.testing.assert_close(layout.fold(scores), torch.tensor([[0.1, 0.9, 0.4]]))
    assert ClassLayout.from_dict(layout.to_dict()) == layout


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda")
