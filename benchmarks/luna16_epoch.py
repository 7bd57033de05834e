"""python benchmarks/luna16_epoch.py [--n-series 32] [--difficulty hard] [--epochs 2]

Seconds per luna16 epoch (training and validation apart, one CPU thread as a one-CPU trial has;
wall and this process's CPU time, which a busy shared machine leaves close to the unshared wall)
on a phantom of ``--n-series`` scans, for: the seed's defaults in torch's default memory layout
(as before channels-last), the defaults channels-last (now), and the space's ``--quick``
overrides. Validation scores every val candidate every epoch, as the LUNA16 protocol asks.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pandas as pd  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from core.config import TrialConfig  # noqa: E402
from core.data.phantoms.luna16 import luna16_phantom  # noqa: E402
from core.data.prepared import DataOptions, default_cache_dir  # noqa: E402
from core.tasks import get_task, prepare  # noqa: E402
from core.train import train  # noqa: E402
from search_spaces import get_space  # noqa: E402


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class SplitClock(pl.Callback):
    """Wall and CPU seconds of each epoch's training part and validation part."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._start = self._val = (0.0, 0.0)

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = _now()

    def on_validation_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._val = _now()

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        end = _now()
        self.rows.append({"train_cpu_s": self._val[1] - self._start[1], "val_cpu_s": end[1] - self._val[1],
                          "train_wall_s": self._val[0] - self._start[0], "val_wall_s": end[0] - self._val[0]})


class DefaultLayout(pl.Callback):
    """Puts the network back in torch's default layout before training (the earlier code path)."""

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        module.net.use_channels_last(False)


def measure(name: str, flat: dict[str, Any], arrays: dict, *, epochs: int,
            extra: list[pl.Callback]) -> pd.DataFrame:
    clock = SplitClock()
    cfg = TrialConfig.from_dict({**flat, "train/max_epochs": epochs, "train/patience": epochs + 1})
    train(cfg, arrays, metric="val/auroc", mode="max", callbacks=[clock, *extra])
    rows = pd.DataFrame(clock.rows).assign(variant=name, epoch=range(1, len(clock.rows) + 1))
    print(rows.to_string(index=False), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-series", type=int, default=32)
    p.add_argument("--difficulty", default="hard")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a one-CPU trial: 1)")
    opts = p.parse_args()
    torch.set_num_threads(opts.threads)
    space = get_space("luna16")
    cache = default_cache_dir()
    root = luna16_phantom(cache, n_series=opts.n_series, difficulty=opts.difficulty)

    def arrays(flat: dict[str, Any]) -> dict:
        """A variant's train and val cutouts (the quick preset cuts a smaller shape); cached on disk."""
        data = prepare(get_task("luna16"), TrialConfig.from_dict(flat).data,
                       DataOptions(root=root, cache_dir=cache), seed=42)
        print(f"{root.name}, cutouts {flat['data/shape']}: pool {data.info['pool']}")
        return data.without_test().arrays

    quick = {**space.fixed, **space.quick}
    seed_arrays = arrays(space.fixed)
    variants = [("defaults, default layout", space.fixed, seed_arrays, [DefaultLayout()]),
                ("defaults, channels-last", space.fixed, seed_arrays, []),
                ("--quick overrides", quick, arrays(quick), [])]
    table = pd.concat([measure(name, flat, cutouts, epochs=opts.epochs, extra=extra)
                       for name, flat, cutouts, extra in variants])
    last = table[table["epoch"] > 1] if opts.epochs > 1 else table  # the first epoch warms up
    summary = last.groupby("variant", sort=False)[list(table.columns[:4])].mean()
    summary["epoch_cpu_s"] = summary["train_cpu_s"] + summary["val_cpu_s"]
    summary["epoch_wall_s"] = summary["train_wall_s"] + summary["val_wall_s"]
    print(f"\nseconds per epoch (mean of epochs 2..{opts.epochs}; {opts.threads} thread)")
    print(summary.round(2).to_string())


if __name__ == "__main__":
    main()
