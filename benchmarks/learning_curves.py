"""python benchmarks/learning_curves.py --space egfr [--configs 40] [--difficulty hard] [--out CSV] [--shard 0/2]

Per-epoch learning curves of a space's seed defaults and of seeded random configs drawn from its
search space, each trained to the space's full epoch budget (its own early stopping included),
on the phantom of the given difficulty. Writes one row per config and epoch (params, val metric,
val loss, seconds) to ``--out``, appending, so an interrupted run continues where it stopped.
``--shard K/N`` trains only configs i with i % N == K, so N processes (one torch thread each)
can fill one CSV together; each appends a finished config under a file lock.

Prints the phantom's difficulty: the defaults' best val metric against the spread of random
configs (min, quartiles, max). The table is also the input of the search-method surrogate.
"""
from __future__ import annotations

import argparse
import fcntl
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from core.config import TrialConfig  # noqa: E402
from core.data.prepared import DataOptions  # noqa: E402
from core.metrics import VAL_LOSS  # noqa: E402
from core.tasks import get_task, prepare  # noqa: E402
from core.train import train  # noqa: E402
from search_spaces import get_space  # noqa: E402
from search_spaces.types import Choice, IntUniform, LogUniform, SearchSpace  # noqa: E402

QUIET_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda",
                 "lightning.pytorch.utilities.rank_zero", "lightning_fabric.utilities.seed")


class EpochClock(pl.Callback):
    """Wall seconds of each epoch, training and validation together."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.seconds.append(time.perf_counter() - self._start)


def draw(dist: Any, rng: np.random.Generator) -> Any:
    """One value of a search-space distribution."""
    if isinstance(dist, Choice):
        return dist.values[rng.integers(len(dist.values))]
    if isinstance(dist, LogUniform):
        return float(np.exp(rng.uniform(np.log(dist.low), np.log(dist.high))))
    if isinstance(dist, IntUniform):
        return int(rng.integers(dist.low, dist.high + 1))
    return float(rng.uniform(dist.low, dist.high))


def configs(space: SearchSpace, n: int, seed: int) -> list[dict[str, Any]]:
    """The seed defaults (config 0), then ``n`` random configs of the searched keys."""
    rng = np.random.default_rng(seed)
    drawn = [{key: draw(dist, rng) for key, dist in space.search.items()} for _ in range(n)]
    return [{key: space.fixed.get(key) for key in space.search}, *drawn]


def curve(space: SearchSpace, params: dict[str, Any], arrays: dict, overrides: dict,
          seed: int) -> pd.DataFrame:
    """Train one config; its per-epoch val metric, val loss and seconds."""
    flat = {**space.fixed, **overrides, **params, "train/seed": seed}
    clock = EpochClock()
    result = train(TrialConfig.from_dict(flat), arrays, metric=space.metric, mode=space.mode,
                   callbacks=[clock])
    history = pd.DataFrame(result.history)
    return pd.DataFrame({"epoch": history["epoch"].astype(int), "metric": history[space.metric],
                         "val_loss": history[VAL_LOSS], "seconds": clock.seconds[:len(history)]})


def append(rows: pd.DataFrame, out: Path) -> None:
    """Append one config's rows to ``out`` under an exclusive lock (header only into a new file)."""
    with open(out, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        rows.to_csv(handle, header=handle.seek(0, os.SEEK_END) == 0, index=False)
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)


def summary(table: pd.DataFrame) -> pd.Series:
    """Best val metric per config, the defaults first."""
    return table.groupby("config")["metric"].max()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default="egfr")
    p.add_argument("--configs", type=int, default=40, help="random configs beside the defaults")
    p.add_argument("--difficulty", default="hard")
    p.add_argument("--seed", type=int, default=0, help="draws the configs")
    p.add_argument("--train-seed", type=int, default=42)
    p.add_argument("--split-seed", type=int, default=42, help="the train/val split's seed (the seed's 42)")
    p.add_argument("--max-epochs", type=int, help="default: the space's full budget")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="fixed config overrides, e.g. data/shape=[64,64]")
    p.add_argument("--out", type=Path)
    p.add_argument("--shard", default="0/1", metavar="K/N", help="train only configs i %% N == K")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    opts = p.parse_args()
    shard, shards = (int(v) for v in opts.shard.split("/"))
    if opts.threads:
        torch.set_num_threads(opts.threads)
    for name in QUIET_LOGGERS:  # Lightning's tips and device banners, once per config
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    space = get_space(opts.space)
    overrides: dict[str, Any] = {k: __import__("yaml").safe_load(v)
                                 for k, v in (item.split("=", 1) for item in opts.set)}
    if opts.max_epochs:
        overrides["train/max_epochs"] = opts.max_epochs
    out = opts.out or Path(f"benchmarks/curves/{opts.space}-{opts.difficulty}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = TrialConfig.from_dict({**space.fixed, **overrides}).data
    data = prepare(get_task(cfg.task), cfg, DataOptions(phantom_difficulty=opts.difficulty),
                   seed=opts.split_seed)
    arrays = data.without_test().arrays
    done = set(pd.read_csv(out)["config"]) if out.is_file() else set()
    for i, params in enumerate(configs(space, opts.configs, opts.seed)):
        if i in done or i % shards != shard:
            continue
        rows = curve(space, params, arrays, overrides, opts.train_seed)
        rows = rows.assign(config=i, kind="defaults" if i == 0 else "random",
                           **{f"param/{k}": str(v) if isinstance(v, (tuple, list)) else v
                              for k, v in params.items()})
        append(rows, out)
        print(f"config {i:3d}: best {space.metric} {rows['metric'].max():.4f} after "
              f"{len(rows)} epochs, {rows['seconds'].sum():.0f} s  {params}", flush=True)
    best = summary(pd.read_csv(out))
    random = best.drop(index=0, errors="ignore")
    q = random.quantile([0.0, 0.25, 0.5, 0.75, 1.0]).to_numpy()
    print(f"\n{opts.space} phantom ({opts.difficulty}), best val {space.metric} per config "
          f"({len(random)} random configs, seed {opts.seed}; training seed {opts.train_seed})")
    print(f"defaults {best.get(0, float('nan')):.4f} | random min {q[0]:.4f}, q1 {q[1]:.4f}, "
          f"median {q[2]:.4f}, q3 {q[3]:.4f}, max {q[4]:.4f}")


if __name__ == "__main__":
    main()
