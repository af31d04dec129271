import math

import pytest
import torch

from dawnchorus.config import LossConfig
from dawnchorus.losses import LOSSES, known_mask, loss_from_config, masked_bce


def batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 5, generator=generator, requires_grad=True)
    targets = torch.tensor([[1, 0, float("nan"), float("nan"), 0]] * 6, dtype=torch.float32)
    return logits, targets


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_masked_targets_change_neither_loss_nor_gradients(name):
    logits, targets = batch()
    mask = known_mask(targets)
    results = []
    for fill in (0.0, 1.0, 0.37, float("nan"), 1e6):
        candidate = torch.where(mask, targets, torch.full_like(targets, fill))
        logits.grad = None
        loss = LOSSES[name](logits, candidate, mask)
        loss.backward()
        results.append((loss.item(), logits.grad.clone()))
    for value, grad in results[1:]:
        assert value == pytest.approx(results[0][0], abs=1e-7)
        torch.testing.assert_close(grad, results[0][1])
    assert math.isfinite(results[0][0])


def test_masked_bce_equals_plain_bce_over_known_entries():
    logits, targets = batch()
    known = known_mask(targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], targets[known])
    assert masked_bce(logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)
    masked_bce(logits, targets).backward()
    assert torch.all(logits.grad[~known] == 0) and torch.all(logits.grad[known] != 0)


def test_all_unknown_gives_zero_loss_not_nan():
    logits = torch.randn(2, 3, requires_grad=True)
    assert masked_bce(logits, torch.full((2, 3), float("nan"))).item() == 0.0


def test_pos_weight_and_focal_and_lsoft_behave():
    logits = torch.zeros(1, 2)
    targets = torch.tensor([[1.0, 0.0]])
    plain, weighted = float(masked_bce(logits, targets)), float(masked_bce(logits, targets, pos_weight=3.0))
    assert weighted == pytest.approx(plain * 2, rel=1e-6)  # (3 + 1) / 2 = 2x
    confident = torch.tensor([[6.0, -6.0]])
    assert float(LOSSES["focal"](confident, targets)) < 1e-3 * float(masked_bce(confident, targets))
    # L_soft: an unknown entry the model is sure about is punished less than "unknown = 0" would.
    sure = torch.tensor([[4.0]])
    assert float(LOSSES["lsoft"](sure, torch.tensor([[float("nan")]]), unknown_weight=1.0)) < float(masked_bce(sure, torch.zeros(1, 1)))


def test_loss_from_config_rejects_unknown_names():
    assert float(loss_from_config(LossConfig(name="focal"))(torch.zeros(1, 1), torch.ones(1, 1))) > 0
    with pytest.raises(ValueError, match="unknown"):
        loss_from_config(LossConfig(name="nope"))
