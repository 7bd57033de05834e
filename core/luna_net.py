"""The LUNA16 nodule classifier seed's 3D CNN, built from ``ModelConfig``.

Tail BatchNorm3d on the raw cutout; blocks of two conv + ReLU then a max pool, doubling the
width; dropout; one linear head giving class logits (the cross-entropy loss applies the softmax).
Weights and activations are kept channels-last (NDHWC strides), which oneDNN's CPU convolutions
run much faster than the default layout; the arithmetic and the state dict's shapes are the same.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from core.config import ModelConfig
from core.errors import ConfigError
from core.models import cnn_feature_shape, conv_padding


class LunaBlock(nn.Module):
    """Two Conv3d + ReLU at one width, then MaxPool3d (ceil mode, so small inputs never empty)."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int,
                 pool_size: int) -> None:
        super().__init__()
        pad = conv_padding(kernel_size)
        self.layers = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, kernel_size, padding=pad), nn.ReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, kernel_size, padding=pad), nn.ReLU(inplace=True),
            nn.MaxPool3d(pool_size, ceil_mode=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def luna_feature_shape(spatial: tuple[int, ...], *, depth: int, kernel_size: int,
                       pool_size: int) -> tuple[int, ...]:
    """Spatial shape after ``depth`` blocks: each block is two convs, so two conv steps per pool."""
    shape = tuple(spatial)
    for _ in range(depth):
        # The first conv of a block; cnn_feature_shape then adds the second conv and the pool.
        pad = conv_padding(kernel_size)
        shape = tuple(s + 2 * pad - kernel_size + 1 for s in shape)
        shape = cnn_feature_shape(shape, depth=1, kernel_size=kernel_size, pool_size=pool_size)
    return shape


class Luna3D(nn.Module):
    """input: (B, C, D, H, W) float32 cutout in [0, 1]; output: (B, out_channels) logits.

    Runs channels-last by default; ``use_channels_last(False)`` restores torch's default layout
    (e.g. to measure the difference).
    """

    def __init__(self, *, spatial_shape: tuple[int, ...], in_channels: int, out_channels: int,
                 channels: tuple[int, ...], kernel_size: int, pool_size: int,
                 dropout: float) -> None:
        super().__init__()
        self.tail = nn.BatchNorm3d(in_channels)
        blocks, previous = [], in_channels
        for width in channels:
            blocks.append(LunaBlock(previous, width, kernel_size=kernel_size, pool_size=pool_size))
            previous = width
        self.body = nn.Sequential(*blocks)
        feature_shape = luna_feature_shape(spatial_shape, depth=len(channels),
                                           kernel_size=kernel_size, pool_size=pool_size)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(previous * math.prod(feature_shape), out_channels))
        self.reset_parameters()
        self.use_channels_last(True)

    def use_channels_last(self, on: bool) -> Luna3D:
        """Keep weights and activations channels-last (NDHWC strides) or in torch's default layout."""
        self.channels_last = on
        layout = torch.channels_last_3d if on else torch.contiguous_format
        return self.to(memory_format=layout)  # type: ignore[call-overload]  # torch's stubs omit it

    def reset_parameters(self) -> None:
        """He-normal (fan-out, ReLU) conv weights and zero biases; the head keeps torch's default.

        PyTorch's default conv init shrinks the signal through eight ReLU convs and learning
        crawls; He init on the 2-output head would start with huge logits instead.
        """
        for module in self.body.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:  # always: the convs keep their bias
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last 3D: on CPU a training step of the seed's net ran about 2x faster (6x with
        # kernel 5; benchmarks/luna16_epoch.py). The head's Flatten still reads (C, D, H, W) order.
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return self.head(self.body(self.tail(x)))


def build_luna3d(cfg: ModelConfig, *, spatial_shape: tuple[int, ...], in_channels: int,
                 out_channels: int) -> nn.Module:
    """The seed's network sized for ``spatial_shape`` (D, H, W); seed widths are (8, 16, 32, 64)."""
    if len(spatial_shape) != 3:
        raise ConfigError(f"luna3d needs a 3D cutout shape (D, H, W), got {tuple(spatial_shape)}; "
                          "set data/shape to e.g. (32, 48, 48).")
    if cfg.kernel_size < 1 or cfg.pool_size < 1 or not cfg.channels:
        raise ConfigError(f"luna3d needs kernel_size >= 1, pool_size >= 1 and at least one width in "
                          f"channels; got kernel_size={cfg.kernel_size}, pool_size={cfg.pool_size}, "
                          f"channels={cfg.channels}.")
    return Luna3D(spatial_shape=tuple(spatial_shape), in_channels=in_channels,
                  out_channels=out_channels, channels=tuple(cfg.channels),
                  kernel_size=cfg.kernel_size, pool_size=cfg.pool_size, dropout=cfg.dropout)
