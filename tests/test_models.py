import itertools

import pytest
import torch

from core.config import ModelConfig
from core.errors import ConfigError
from core.models import build_model, cnn_feature_shape
from search_spaces import get_space

EGFR = get_space("egfr")
KERNELS = EGFR.search["model/kernel_size"].values
POOLS = EGFR.search["model/pool_size"].values


@pytest.mark.parametrize("kernel,pool", list(itertools.product(KERNELS, POOLS)))
@pytest.mark.parametrize("shape", [(32, 32, 32), (16, 24, 24), (8, 8, 8)])
def test_cnn3d_output_shape_for_every_searched_kernel_and_pool(kernel, pool, shape):
    net = build_model(ModelConfig(kernel_size=kernel, pool_size=pool), spatial_shape=shape,
                      out_channels=1)
    assert net(torch.zeros(2, 1, *shape)).shape == (2, 1)


@pytest.mark.parametrize("kernel,pool", [(2, 3), (5, 3), (7, 4), (3, 5)])
def test_the_network_adapts_instead_of_emptying_the_feature_map(kernel, pool):
    assert cnn_feature_shape((2, 3, 4), depth=4, kernel_size=kernel, pool_size=pool) == (1, 1, 1)
    net = build_model(ModelConfig(channels=(4, 4, 4, 4), kernel_size=kernel, pool_size=pool),
                      spatial_shape=(2, 3, 4))
    assert net(torch.zeros(2, 1, 2, 3, 4)).shape == (2, 1)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ConfigError, match="cnn3d"):
        build_model(ModelConfig(name="resnet999"), spatial_shape=(8, 8, 8))
