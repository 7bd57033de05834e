"""2D MONAI networks (UNet, DenseNet121, EfficientNet-B0) built from ``ModelConfig``.

Random initialisation unless ``cfg.weights`` names a local state-dict file; nothing is ever
downloaded (MONAI's EfficientNetBN would fetch ImageNet weights by default, so B0 is built
through its base class).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from monai.networks.nets import DenseNet121, EfficientNet, UNet
from monai.networks.nets.efficientnet import efficientnet_params
from monai.networks.utils import copy_model_state
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


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"Weights file {path} does not exist; pass --weights with a local .pt/.pth "
                        "state dict (nothing is downloaded).")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise DataError(f"Cannot load weights file {path}: {err}. A torch state dict "
                        "(torch.save(model.state_dict(), path)) is needed.") from err
    return _state_dict_of(loaded, path)


def load_weights(net: nn.Module, path: str | Path) -> nn.Module:
    """Load a local state dict into ``net`` with MONAI's ``copy_model_state``, which skips
    tensors whose shape differs (e.g. a head for another number of classes).

    What was loaded and skipped is logged; a file that fits no tensor at all raises ``DataError``.
    """
    path = Path(path).expanduser()
    state = _read_state(path)
    own = net.state_dict()
    _, loaded, kept = copy_model_state(net, state, inplace=True)
    if not loaded:
        raise DataError(f"Weights file {path} fits none of the {type(net).__name__}'s tensors "
                        f"(file keys e.g. {sorted(state)[:3]}); is it for another architecture?")
    logger.info("Loaded %d/%d tensors from %s", len(loaded), len(own), path)
    mismatched = sorted(k for k in kept if k in state)
    if mismatched:
        logger.warning("Skipped %d tensors of another shape in %s (kept random init): %s",
                       len(mismatched), path.name, ", ".join(mismatched))
    absent = sorted(k for k in kept if k not in state)
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


# EfficientNet-B0's blocks (Tan & Le 2019, table 1), as MONAI's EfficientNetBN defines them
_B0_BLOCKS = ("r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e6_i16_o24_se0.25",
              "r2_k5_s22_e6_i24_o40_se0.25", "r3_k3_s22_e6_i40_o80_se0.25",
              "r3_k5_s11_e6_i80_o112_se0.25", "r4_k5_s22_e6_i112_o192_se0.25",
              "r1_k3_s11_e6_i192_o320_se0.25")


def build_efficientnet_b0(cfg: ModelConfig, *, spatial_shape: tuple[int, ...], in_channels: int,
                          out_channels: int) -> nn.Module:
    """MONAI 2D EfficientNet-B0, random init: (B, C, H, W) -> (B, out_channels) logits.

    Built through MONAI's ``EfficientNet`` with B0's blocks and coefficients, so ``cfg.dropout``
    goes in as its ``dropout_rate`` (``EfficientNetBN`` fixes B0's at 0.2); the tensors are
    EfficientNetBN's, so its weights files load. Batch norm keeps torch's momentum 0.1 (the TF
    port's 0.01 leaves eval statistics lagging for many epochs when training from scratch).
    """
    _check_2d("efficientnet-b0", spatial_shape)
    width, depth, image_size, _, drop_connect = efficientnet_params["efficientnet-b0"]
    net = EfficientNet(list(_B0_BLOCKS), spatial_dims=2, in_channels=in_channels,
                       num_classes=out_channels, width_coefficient=width, depth_coefficient=depth,
                       dropout_rate=cfg.dropout, image_size=image_size,
                       drop_connect_rate=drop_connect, norm=("batch", {"eps": 1e-3, "momentum": 0.1}))
    return _finish(net, cfg)
