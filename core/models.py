"""Networks by registry name, built from ``ModelConfig`` with MONAI's argument names."""
from __future__ import annotations

import importlib
import math
from typing import Callable

import torch
from torch import nn

from core.config import ModelConfig
from core.errors import ConfigError


def conv_padding(kernel_size: int) -> int:
    """Padding 1 as in the seed for kernels 2 and 3; larger kernels get ``k // 2`` so they keep size."""
    return max(1, kernel_size // 2)


def cnn_feature_shape(spatial: tuple[int, ...], *, depth: int, kernel_size: int,
                      pool_size: int) -> tuple[int, ...]:
    """Spatial shape after ``depth`` blocks of conv (stride 1) + max pool (ceil mode).

    The network adapts rather than failing: padding keeps a conv from shrinking its input, and
    a ceil-mode pool never takes a side below 1, so every kernel/pool pair fits any input.
    """
    pad = conv_padding(kernel_size)
    shape = tuple(spatial)
    for _ in range(depth):
        shape = tuple(s + 2 * pad - kernel_size + 1 for s in shape)
        shape = tuple(max(1, math.ceil((s - pool_size) / pool_size) + 1) for s in shape)
    return shape


class CNN3D(nn.Module):
    """The EGFR seed's 3D CNN: blocks of Conv3d -> ReLU -> BatchNorm3d -> MaxPool3d, then 2 FC.

    input: (B, C, D, H, W) float32; output: (B, out_channels) logits.
    """

    def __init__(self, *, spatial_shape: tuple[int, ...], in_channels: int, out_channels: int,
                 channels: tuple[int, ...], kernel_size: int, pool_size: int, dropout: float,
                 hidden: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers += [nn.Conv3d(previous, width, kernel_size, stride=1,
                                 padding=conv_padding(kernel_size)),
                       nn.ReLU(inplace=True), nn.BatchNorm3d(width),
                       nn.MaxPool3d(pool_size, ceil_mode=True)]
            previous = width
        self.features = nn.Sequential(*layers)
        feature_shape = cnn_feature_shape(spatial_shape, depth=len(channels),
                                          kernel_size=kernel_size, pool_size=pool_size)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(previous * math.prod(feature_shape), hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _cnn3d(cfg: ModelConfig, *, spatial_shape: tuple[int, ...], in_channels: int,
           out_channels: int) -> nn.Module:
    return CNN3D(spatial_shape=spatial_shape, in_channels=in_channels, out_channels=out_channels,
                 channels=cfg.channels, kernel_size=cfg.kernel_size, pool_size=cfg.pool_size,
                 dropout=cfg.dropout, hidden=cfg.hidden)


Builder = Callable[..., nn.Module]
# name -> builder ``fn(cfg, *, spatial_shape, in_channels, out_channels)``, or "module:function"
# for one imported on first use (so MONAI loads only for the tasks that need it)
MODELS: dict[str, Builder | str] = {
    "cnn3d": _cnn3d,
    "luna3d": "core.luna_net:build_luna3d",
    "unet": "core.monai_nets:build_unet",
    "densenet121": "core.monai_nets:build_densenet121",
    "efficientnet-b0": "core.monai_nets:build_efficientnet_b0",
}


def _builder(name: str) -> Builder:
    entry = MODELS[name]
    if isinstance(entry, str):
        module, _, function = entry.partition(":")
        entry = MODELS[name] = getattr(importlib.import_module(module), function)
    return entry


def build_model(cfg: ModelConfig, *, spatial_shape: tuple[int, ...], in_channels: int = 1,
                out_channels: int = 1) -> nn.Module:
    """The network named ``cfg.name``, sized for inputs of ``spatial_shape``."""
    if cfg.name not in MODELS:
        raise ConfigError(f"Unknown model {cfg.name!r}; known models: {sorted(MODELS)}")
    return _builder(cfg.name)(cfg, spatial_shape=tuple(spatial_shape), in_channels=in_channels,
                              out_channels=out_channels)
