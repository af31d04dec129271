"""Losses for partial labels. Targets are {1, 0, NaN}; NaN means unknown and is masked.

Every loss here reads a target only where the mask is set (masked targets are replaced by 0
before any arithmetic and their terms multiplied by 0), so a masked entry can hold anything
without changing the loss or its gradients: the property the host paper's masked loss and
the 10th place's "agnostic loss" rely on.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .config import LossConfig
from .errors import InputError
from .registry import registrar

LOSSES: dict[str, Callable[..., torch.Tensor]] = {}

register_loss = registrar(LOSSES)


def known_mask(targets: torch.Tensor) -> torch.Tensor:
    return ~torch.isnan(targets)


def _prepare(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None):
    if mask is None:
        mask = known_mask(targets)
    mask = mask.to(dtype=torch.bool)
    safe_targets = torch.where(mask, torch.nan_to_num(targets, nan=0.0), torch.zeros_like(targets))
    return logits.float(), safe_targets.float(), mask.float()


def _masked_mean(terms: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    if weight is not None:
        mask = mask * weight
    return (terms * mask).sum() / mask.sum().clamp_min(1.0)


@register_loss("masked_bce")
def masked_bce(logits, targets, mask=None, *, pos_weight: float | torch.Tensor = 1.0, weight=None, **_):
    """Binary cross-entropy over known entries only."""
    logits, targets, mask = _prepare(logits, targets, mask)
    pos = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    terms = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos, reduction="none")
    return _masked_mean(terms, mask, weight)


@register_loss("focal")
def masked_focal(logits, targets, mask=None, *, gamma: float = 2.0, pos_weight=1.0, weight=None, **_):
    """Focal loss (Lin et al.) over known entries: down-weights easy, confident examples."""
    logits, targets, mask = _prepare(logits, targets, mask)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_true = targets * p + (1 - targets) * (1 - p)
    scale = torch.where(targets > 0.5, torch.as_tensor(float(pos_weight), device=logits.device), torch.ones_like(p))
    return _masked_mean(scale * (1 - p_true).pow(gamma) * bce, mask, weight)


@register_loss("lsoft")
def masked_lsoft(logits, targets, mask=None, *, beta: float = 0.7, unknown_weight: float = 0.1, pos_weight=1.0, weight=None, **_):
    """Masked BCE on known entries plus, on unknown ones, a weak soft-bootstrapped negative.

    For an unknown entry the target is ``(1 - beta) * p`` with ``p`` the model's own (detached)
    probability (Fonseca et al.'s L_soft with a prior of absence): most unknowns are absent,
    but a confident prediction is not punished hard, which is what the 3rd and 32nd places
    used to exploit unlabelled species without trusting "unknown = 0".
    """
    logits_f, safe_targets, known = _prepare(logits, targets, mask)
    known_term = F.binary_cross_entropy_with_logits(logits_f, safe_targets, reduction="none")
    soft = (1.0 - beta) * torch.sigmoid(logits_f).detach()
    unknown_term = F.binary_cross_entropy_with_logits(logits_f, soft, reduction="none")
    unknown = 1.0 - known
    if weight is not None:
        known, unknown = known * weight, unknown * weight
    pos = torch.where(safe_targets > 0.5, torch.as_tensor(float(pos_weight), device=logits_f.device), torch.ones_like(known_term))
    total = (pos * known_term * known).sum() + unknown_weight * (unknown_term * unknown).sum()
    return total / (known.sum() + unknown_weight * unknown.sum()).clamp_min(1.0)


def check_loss_choice(config: LossConfig) -> None:
    if config.name not in LOSSES:
        raise InputError(f"loss.name '{config.name}' is unknown; choose from {', '.join(LOSSES)}")


def loss_from_config(config: LossConfig) -> Callable[..., torch.Tensor]:
    check_loss_choice(config)
    function = LOSSES[config.name]

    def loss(logits, targets, mask=None, weight=None):
        return function(logits, targets, mask, gamma=config.focal_gamma, beta=config.lsoft_beta,
                        pos_weight=config.pos_weight, weight=weight)

    return loss
