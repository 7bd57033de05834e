"""Per-epoch TensorBoard events from ``core.train.train``, and the loop's per-epoch bookkeeping."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.config import TrialConfig
from core.metrics import TRAIN_LOSS, VAL_AUROC, VAL_LOSS
from core.train import BestWeights, train
from search_spaces import get_space


def _arrays(seed: int = 0, n_train: int = 32, n_val: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("val", n_val)):
        y = np.array([0, 1] * (n // 2))
        out[f"{split}/x"] = (rng.normal(0, 1, (n, 1, 8, 8, 8)) + y[:, None, None, None, None]
                             ).astype(np.float32)
        out[f"{split}/y"] = y
    return out


def _config(**overrides) -> TrialConfig:
    fixed = {**get_space("egfr").fixed, "data/shape": (8, 8, 8), "train/batch_size": 8,
             "train/max_epochs": 2, **overrides}
    return TrialConfig.from_dict(fixed)


def test_two_epochs_leave_one_val_loss_event_per_epoch(tmp_path):
    log_dir = tmp_path / "trial" / "tensorboard"
    result = train(_config(), _arrays(), metric=VAL_AUROC, mode="max", log_dir=log_dir)
    assert list(log_dir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(log_dir))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {VAL_LOSS, TRAIN_LOSS, VAL_AUROC} <= set(tags)
    val_loss = events.Scalars(VAL_LOSS)
    assert len(val_loss) == 2  # one per epoch, not one per step
    assert val_loss[1].step - val_loss[0].step == 4  # an epoch apart: 32 samples / batch 8
    logged = [e.value for e in val_loss]
    kept = [h[VAL_LOSS] for h in result.history]
    np.testing.assert_allclose(logged, kept, rtol=1e-6)
    assert len(events.Scalars(TRAIN_LOSS)) == 2


def test_no_log_dir_writes_no_events(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(_config(**{"train/max_epochs": 1}), _arrays(), metric=VAL_AUROC, mode="max")
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_a_diverging_loss_stops_the_run_with_its_epoch():
    with pytest.raises(FloatingPointError, match="training loss became nan in epoch 0"):
        train(_config(**{"optim/lr": 1e15}), _arrays(), metric=VAL_AUROC, mode="max")


def test_best_weights_stay_on_their_device_and_checkpoint_on_the_cpu():
    keeper = BestWeights(VAL_AUROC, "max")
    net = torch.nn.Linear(3, 2)
    keeper._keep(net.state_dict())
    first = keeper.best_state["weight"]
    with torch.no_grad():
        net.weight.add_(1.0)
    keeper._keep(net.state_dict())
    assert keeper.best_state["weight"] is first  # copied into the same buffer
    assert torch.equal(first, net.weight) and first.data_ptr() != net.weight.data_ptr()
    saved = keeper.state_dict()["best_state"]
    assert all(v.device.type == "cpu" for v in saved.values())


def test_best_weights_follow_the_model_to_another_device():
    # a resumed run's best weights come from the checkpoint on the CPU; the model may be elsewhere
    keeper = BestWeights(VAL_AUROC, "max")
    keeper._keep(torch.nn.Linear(3, 2).state_dict())
    keeper._keep(torch.nn.Linear(3, 2, device="meta").state_dict())
    assert all(v.device.type == "meta" for v in keeper.best_state.values())
