"""Losses by registry name; each knows its output channels and how logits become probabilities."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from core.config import LossConfig
from core.errors import ConfigError


def class_weights(labels: np.ndarray) -> tuple[float, float]:
    """Normalised inverse class frequency, ``(w_negative, w_positive)``.

    A 19.66 % positive training split gives (0.1966, 0.8034): the rare class weighs more.
    """
    labels = np.asarray(labels)
    positive = float((labels == 1).mean())
    if positive in (0.0, 1.0):
        raise ConfigError("class weights need both classes in the training split")
    inverse = np.array([1.0 / (1.0 - positive), 1.0 / positive])
    weights = inverse / inverse.sum()
    return float(weights[0]), float(weights[1])


class TaskLoss(nn.Module):
    """What the training module needs of a loss: ``loss(logits, target)`` (a scalar), the
    network's output channels, and how logits become probabilities."""

    out_channels: int

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        """Logits -> probabilities of the positive class (or foreground); each loss has its own."""
        raise NotImplementedError(f"a TaskLoss defines probabilities(logits); got {logits.shape} logits")


class WeightedBCE(TaskLoss):
    """Binary cross-entropy on one logit, each sample weighted by its class weight."""

    out_channels = 1
    weights: torch.Tensor  # (2,) buffer: (w_negative, w_positive)

    def __init__(self, weights: tuple[float, float] = (0.5, 0.5)) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits: (B, 1); target: (B,) 0/1."""
        per_sample = F.binary_cross_entropy_with_logits(
            logits[:, 0].float(), target.float(), reduction="none")
        return (per_sample * self.weights[target.long()]).mean()

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        """(B, 1) logits -> (B,) positive-class probabilities."""
        return torch.sigmoid(logits[:, 0].float())


class CrossEntropy(TaskLoss):
    """Two-class cross-entropy on logits; probabilities from a softmax (the LUNA16 seed's head)."""

    out_channels = 2

    def __init__(self, weights: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.weights = None if weights is None else torch.tensor(weights, dtype=torch.float32)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.weights is None else self.weights.to(logits.device)
        return F.cross_entropy(logits.float(), target.long(), weight=weight)

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=1)[:, 1]


class GeneralizedDice(TaskLoss):
    """MONAI's GeneralizedDiceLoss on one sigmoid channel, for binary masks.

    logits: (B, 1, H, W); target: (B, H, W) masks (0/1, any dtype). Reports val dice/iou.
    """

    out_channels = 1

    def __init__(self) -> None:
        super().__init__()
        from monai.losses import GeneralizedDiceLoss  # MONAI loads only for the tasks that use it

        self.dice = GeneralizedDiceLoss(sigmoid=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice(logits.float(), (target[:, None] > 0).float())

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) logits -> (B, H, W) foreground probabilities."""
        return torch.sigmoid(logits[:, 0].float())


LossBuilder = Callable[[tuple[float, float]], TaskLoss]
LOSSES: dict[str, LossBuilder] = {
    "weighted_bce": lambda weights: WeightedBCE(weights),
    "cross_entropy": lambda weights: CrossEntropy(None),
    "generalized_dice": lambda weights: GeneralizedDice(),
}


def register_loss(name: str) -> Callable[[LossBuilder], LossBuilder]:
    """Decorator adding a loss builder ``fn(class_weights) -> TaskLoss``."""
    def add(fn: LossBuilder) -> LossBuilder:
        LOSSES[name] = fn
        return fn
    return add


def build_loss(cfg: LossConfig, *, weights: tuple[float, float] = (0.5, 0.5)) -> TaskLoss:
    """The loss named ``cfg.name``; ``weights`` are the training split's class weights."""
    if cfg.name not in LOSSES:
        raise ConfigError(f"Unknown loss {cfg.name!r}; known losses: {sorted(LOSSES)}")
    return LOSSES[cfg.name](weights)
