"""The GPU data path, checked on the CPU: which runs keep their arrays on the device, that the
device-resident batches are the host path's batches, loader workers from a trial's CPUs, and the
GPU benchmark's table."""
import csv
import sys

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import core.train
from core.config import TrialConfig
from core.data.datamodule import ArrayDataModule
from core.data.resident import data_device, device_budget, keep_on_device, loader_workers, resident_bytes
from core.data.sampling import sampler_for
from core.train import train

GiB = 2**30


def arrays(seed=0, *, mask=False):
    """train/val/test in the cache's dtypes: x float16 (N, 1, 8, 8, 8), y int64 or uint8 masks."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in [("train", 40), ("val", 16), ("test", 8)]:
        y = np.array([0, 1, 0, 0] * (n // 4))
        x = (rng.random((n, 1, 8, 8, 8)) * 0.5 + 0.3 * y[:, None, None, None, None]).astype(np.float16)
        out[f"{split}/x"] = x
        out[f"{split}/y"] = (x[:, 0] > 0.5).astype(np.uint8) if mask else y
    return out


@pytest.mark.parametrize("nbytes, free, fraction, share, augment, expected", [
    (1 * GiB, 100 * GiB, 0.25, 1.0, False, True),     # 1 GiB under a 25 GiB budget
    (1 * GiB, 100 * GiB, 0.25, 0.25, False, True),    # four trials: 6.25 GiB each
    (8 * GiB, 100 * GiB, 0.25, 0.25, False, False),   # over a quarter of the budget
    (8 * GiB, 100 * GiB, 0.25, 1.0, False, True),     # the same set, a whole GPU
    (25 * GiB, 100 * GiB, 0.25, 1.0, False, True),    # exactly the budget
    (25 * GiB + 1, 100 * GiB, 0.25, 1.0, False, False),
    (1 * GiB, 100 * GiB, 0.25, 1.0, True, False),     # augmentation runs on the CPU
    (1 * GiB, 100 * GiB, 0.0, 1.0, False, False),     # fraction 0: never
    (1 * GiB, None, 0.25, 1.0, False, False),         # no device
    (1 * GiB, 2 * GiB, 0.25, 1.0, False, False),      # a nearly full device
])
def test_keep_on_device_follows_the_budget(nbytes, free, fraction, share, augment, expected):
    assert keep_on_device(nbytes=nbytes, free_bytes=free, fraction=fraction, share=share,
                          augment=augment) is expected


@pytest.mark.parametrize("fraction, share", [(-0.1, 1.0), (1.5, 1.0), (0.25, 0.0), (0.25, 2.0)])
def test_device_budget_rejects_bad_settings(fraction, share):
    with pytest.raises(ValueError, match=repr(fraction) if fraction < 0 or fraction > 1 else repr(share)):
        device_budget(GiB, fraction=fraction, share=share)


def test_data_device_reads_free_memory_and_names_the_device(monkeypatch):
    data = arrays()
    nbytes = resident_bytes(data)
    assert nbytes == sum(data[f"{s}/{p}"].nbytes for s in ("train", "val") for p in "xy")
    assert data_device(data, fraction=0.25, share=1.0, augment=False) is None  # this machine: no GPU
    free = {"bytes": 4 * nbytes}  # a 25 % budget of exactly nbytes
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 10 * free["bytes"]))
    assert data_device(data, fraction=0.25, share=1.0, augment=False) == torch.device("cuda", 0)
    assert data_device(data, fraction=0.25, share=0.5, augment=False) is None
    assert data_device(data, fraction=0.25, share=1.0, augment=True) is None
    free["bytes"] = 3 * nbytes  # another trial took most of the card
    assert data_device(data, fraction=0.25, share=1.0, augment=False) is None


@pytest.mark.parametrize("cpus, workers", [(0.5, 0), (1, 0), (2, 1), (4, 3), (8, 4), (16, 4)])
def test_loader_workers_keep_one_cpu_for_the_loop(cpus, workers):
    assert loader_workers(cpus) == workers


def test_a_trial_sizes_its_workers_and_device_share_from_its_resources():
    from tuning.search.trainable import trial_config

    cfg = trial_config({"train": {"batch_size": 8}}, threads=4, gpus=0.25)
    assert (cfg.train.num_workers, cfg.train.device_share) == (3, 0.25)
    cfg = trial_config({"train": {"num_workers": 2}}, threads=1)
    assert (cfg.train.num_workers, cfg.train.device_share) == (2, 1.0)  # no GPU: share unused


def batches(loader, epochs=2):
    return [(x.clone(), y.clone()) for _ in range(epochs) for x, y in loader]


@pytest.mark.parametrize("mask, negative_ratio", [(False, 0.0), (False, 1.0), (True, 0.0)])
def test_resident_batches_equal_the_host_batches(mask, negative_ratio):
    data = arrays(mask=mask)
    factory = sampler_for(TrialConfig.from_dict({"data/negative_ratio": negative_ratio}).data)
    host = ArrayDataModule(data, batch_size=6, seed=3, sampler_factory=factory)
    device = ArrayDataModule(data, batch_size=6, seed=3, sampler_factory=factory, device="cpu")
    assert set(device.resident) == {"train", "val"}
    for make in ("train_dataloader", "val_dataloader"):
        expected, got = batches(getattr(host, make)()), batches(getattr(device, make)())
        assert len(got) == len(expected) > 2
        for (hx, hy), (dx, dy) in zip(expected, got):
            assert dx.dtype == hx.dtype == torch.float32 and dy.dtype == hy.dtype
            assert torch.equal(dx, hx) and torch.equal(dy, hy)


def test_resident_loaders_use_no_workers_or_pinning_and_test_stays_on_the_host():
    data = ArrayDataModule(arrays(), batch_size=6, num_workers=2, pin_memory=True, device="cpu")
    for loader in (data.train_dataloader(), data.val_dataloader()):
        assert (loader.num_workers, loader.pin_memory, loader.persistent_workers) == (0, False, False)
    test = data.test_dataloader()
    assert (test.num_workers, test.pin_memory, test.persistent_workers) == (2, True, True)
    # forked, so workers share the arrays, also inside a spawned process (benchmarks/gpu_trials.py)
    assert test.multiprocessing_context.get_start_method() == "fork"


def test_an_augmented_run_is_refused_the_device():
    with pytest.raises(ValueError, match="augment"):
        ArrayDataModule(arrays(), batch_size=6, augment=lambda x, y, epoch: (x, y), device="cpu")


class FirstBatches(pl.Callback):
    """Keeps the first training batches and whether the datamodule held its arrays resident."""

    def __init__(self, count=3):
        self.count, self.batches, self.resident, self.data = count, [], None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.resident, self.data = bool(trainer.datamodule.resident), trainer.datamodule
        if len(self.batches) < self.count:
            self.batches.append((batch[0].clone(), batch[1].clone()))


def test_a_run_on_resident_arrays_trains_as_the_host_path_does(monkeypatch):
    cfg = TrialConfig.from_dict({"train/max_epochs": 2, "train/batch_size": 8, "train/patience": 50,
                                 "data/shape": (8, 8, 8)})
    data = arrays()
    host = FirstBatches()
    on_host = train(cfg, data, metric="val/auroc", mode="max", callbacks=[host])
    monkeypatch.setattr(core.train, "data_device", lambda arrays, **kw: torch.device("cpu"))
    resident = FirstBatches()
    on_device = train(cfg, data, metric="val/auroc", mode="max", callbacks=[resident])
    assert (host.resident, resident.resident) == (False, True)
    assert resident.data.resident == {}  # the device copies were freed when the fit ended
    for (hx, hy), (dx, dy) in zip(host.batches, resident.batches, strict=True):
        assert torch.equal(hx, dx) and torch.equal(hy, dy)
    keys = ("train/loss", "val/loss", "val/auroc")
    assert [[h[k] for k in keys] for h in on_device.history] == [[h[k] for k in keys] for h in on_host.history]
    assert len(on_host.history) == 2


def test_gpu_benchmark_refuses_a_machine_without_gpu(monkeypatch, capsys):
    from benchmarks import gpu_trials

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["gpu_trials.py"])
    with pytest.raises(SystemExit, match="no CUDA GPU"):
        gpu_trials.main()


def test_gpu_benchmark_dry_run_writes_its_table(monkeypatch, tmp_path, capsys):
    from benchmarks import gpu_trials

    monkeypatch.setattr(sys, "argv", ["gpu_trials.py", "--dry-run", "--out", str(tmp_path)])
    gpu_trials.main()
    with open(tmp_path / "gpu_trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["feed"] == "host" and float(rows[0]["trials_per_hour"]) > 0
    assert rows[0]["gpu_util_mean_pct"] == "n/a"
    table = (tmp_path / "gpu_trials.md").read_text()
    assert "DRY RUN" in table and "| trials_per_hour |" not in table.splitlines()[0]
    assert table.count("\n| synthetic 8^3") == 1
    assert "1 cells in" in capsys.readouterr().out
