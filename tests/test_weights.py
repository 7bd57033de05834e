"""Local pretrained weights and EfficientNet-B0's dropout, through MONAI's public API."""
from __future__ import annotations

import logging

import pytest
import torch
from monai.networks.nets import EfficientNetBN
from torch import nn

from core.config import ModelConfig
from core.models import build_model


@pytest.mark.parametrize("dropout", [0.0, 0.37])
def test_efficientnet_b0_takes_the_configured_dropout(dropout):
    net = build_model(ModelConfig(name="efficientnet-b0", dropout=dropout), spatial_shape=(32, 32))
    rates = [m.p for m in net.modules() if isinstance(m, nn.Dropout)]
    assert rates == [dropout]


def test_efficientnet_b0_has_efficientnetbn_b0_tensors():
    ours = build_model(ModelConfig(name="efficientnet-b0"), spatial_shape=(32, 32), out_channels=2)
    theirs = EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=1,
                            num_classes=2)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}


def test_weights_report_loaded_and_skipped(tmp_path, caplog):
    source = build_model(ModelConfig(name="densenet121"), spatial_shape=(32, 32), out_channels=3)
    state = source.state_dict()
    state.pop("features.conv0.weight")  # absent from the file: kept at random init
    torch.save(state, tmp_path / "w.pt")
    with caplog.at_level(logging.INFO, logger="core.monai_nets"):
        net = build_model(ModelConfig(name="densenet121", weights=str(tmp_path / "w.pt")),
                          spatial_shape=(32, 32), out_channels=1)
    total = len(net.state_dict())
    assert f"Loaded {total - 3}/{total} tensors" in caplog.text
    assert "Skipped 2 tensors of another shape" in caplog.text and "class_layers.out.bias" in caplog.text
    assert "1 tensors of the network are not in w.pt" in caplog.text
    assert torch.equal(net.state_dict()["features.denseblock1.denselayer1.layers.conv1.weight"],
                       state["features.denseblock1.denselayer1.layers.conv1.weight"])
    assert not torch.equal(net.state_dict()["features.conv0.weight"],
                           source.state_dict()["features.conv0.weight"])
