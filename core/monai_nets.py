"""2D MONAI networks (UNet, DenseNet121, EfficientNet-B0) built from ``ModelConfig``.

Random initialisation unless ``cfg.weights`` names a local state-dict file; nothing is ever
downloaded (MONAI's EfficientNetBN would fetch ImageNet weights by default).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from monai.networks.nets import DenseNet121, EfficientNetBN, UNet
from torch import nn

from core.config import ModelConfig
from core.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

_PREFIXES = ("net.", "module.", "model.")  # wrappers: our TaskModule, DataParallel, others


def _state_dict_of(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a plain state dict or of a checkpoint holding one (``state_dict``/``model``)."""
    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not any(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise DataError(f"Weights file {path} holds no state dict (found {type(loaded).__name__}); "
                        "save one with torch.save(model.state_dict(), path).")
    state = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_weights(net: nn.Module, path: str | Path) -> nn.Module:
    """Load a local state dict into ``net``, skipping tensors whose shape differs (e.g. the head).

    Skipped and missing keys are logged; a file that fits no tensor at all raises ``DataError``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"Weights file {path} does not exist; pass --weights with a local .pt/.pth "
                        "state dict (nothing is downloaded).")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise DataError(f"Cannot load weights file {path}: {err}. A torch state dict "
                        "(torch.save(model.state_dict(), path)) is needed.") from err
    state = _state_dict_of(loaded, path)
    own = net.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatched = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    if not fitting:
        raise DataError(f"Weights file {path} fits none of the {type(net).__name__}'s tensors "
                          f"(file keys e.g. {sorted(state)[:3]}); is it for another architecture?")
    net.load_state_dict(fitting, strict=False)
    logger.info("Loaded %d/%d tensors from %s", len(fitting), len(own), path)
    if mismatched:
        logger.warning("Skipped %d tensors of another shape in %s (kept random init): %s",
                       len(mismatched), path.name, ", ".join(mismatched))
    absent = sorted(set(own) - set(state))
    if absent:
        listed = ", ".join(absent[:10]) + (" ..." if len(absent) > 10 else "")
        logger.warning("%d tensors of the network are not in %s (kept random init): %s",
                       len(absent), path.name, listed)
    return net


def _finish(net: nn.Module, cfg: ModelConfig) -> nn.Module:
    return load_weights(net, cfg.weights) if cfg.weights else net


def _check_2d(name: str, spatial_shape: tuple[int, ...]) -> None:
    if len(spatial_shape) != 2:
        raise ConfigError(f"{name} is a 2D network; data/shape must be (H, W), got {spatial_shape}")


def build_unet(cfg: ModelConfig, *, spatial_shape: tuple[int, ...], in_channels: int,
               out_channels: int) -> nn.Module:
    """MONAI 2D UNet: one level per ``cfg.channels`` entry, stride 2 between levels.

    input (B, C, H, W) -> logits (B, out_channels, H, W); H and W must divide by 2 ** (levels - 1).
    """
    _check_2d("unet", spatial_shape)
    if len(cfg.channels) < 2:
        raise ConfigError(f"unet needs at least 2 model/channels levels, got {cfg.channels}")
    factor = 2 ** (len(cfg.channels) - 1)
    if any(s % factor for s in spatial_shape):
        fits = tuple(factor * max(1, s // factor) for s in spatial_shape)
        raise ConfigError(f"unet with model/channels={cfg.channels} halves the image "
                          f"{len(cfg.channels) - 1} times: data/shape {tuple(spatial_shape)} must be a "
                          f"multiple of {factor} on each side (e.g. {fits}).")
    kernel = cfg.kernel_size
    if kernel % 2 == 0:
        logger.info("unet: even model/kernel_size=%d cannot keep sizes; using 3", kernel)
        kernel = 3
    net = UNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
               channels=tuple(cfg.channels), strides=(2,) * (len(cfg.channels) - 1),
               kernel_size=kernel, up_kernel_size=kernel, num_res_units=cfg.num_res_units,
               dropout=cfg.dropout)
    return _finish(net, cfg)


def build_densenet121(cfg: ModelConfig, *, spatial_shape: tuple[int, ...], in_channels: int,
                      out_channels: int) -> nn.Module:
    """MONAI 2D DenseNet121, random init: (B, C, H, W) -> (B, out_channels) logits."""
    _check_2d("densenet121", spatial_shape)
    net = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
                      dropout_prob=cfg.dropout, pretrained=False)
    return _finish(net, cfg)


def build_efficientnet_b0(cfg: ModelConfig, *, spatial_shape: tuple[int, ...], in_channels: int,
                          out_channels: int) -> nn.Module:
    """MONAI 2D EfficientNet-B0, random init: (B, C, H, W) -> (B, out_channels) logits.

    ``cfg.dropout`` replaces B0's fixed 0.2 dropout before the classifier; batch norm keeps
    torch's momentum 0.1 (the TF port's 0.01 leaves eval statistics lagging for many epochs
    when training from scratch).
    """
    _check_2d("efficientnet-b0", spatial_shape)
    net = EfficientNetBN("efficientnet-b0", pretrained=False, progress=False, spatial_dims=2,
                         in_channels=in_channels, num_classes=out_channels,
                         norm=("batch", {"eps": 1e-3, "momentum": 0.1}))
    net._dropout = nn.Dropout(cfg.dropout)  # MONAI takes B0's dropout from a table, not an argument
    return _finish(net, cfg)
