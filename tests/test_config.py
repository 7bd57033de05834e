import pytest

from core.config import TrialConfig
from core.errors import ConfigError


def test_from_dict_round_trips_and_coerces_lists():
    cfg = TrialConfig.from_dict({"optim/lr": 1e-3, "data/shape": [16, 16, 16]})
    assert cfg.optim.lr == 1e-3
    assert cfg.data.shape == (16, 16, 16)
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("key", ["optim/lrr", "optimizer/lr", "lr", "model/"])
def test_unknown_keys_fail_loudly(key):
    with pytest.raises(ConfigError, match="Unknown config key"):
        TrialConfig.from_dict({key: 1})
