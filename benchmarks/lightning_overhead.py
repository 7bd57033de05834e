"""python benchmarks/lightning_overhead.py [--epochs 3] [--repeats 3] [--spaces egfr luna16 ...]

Lightning's cost over raw PyTorch: each space's model trained through ``core.train.train``
against a plain PyTorch loop on the same model, batch size, loaders and data, in one process.
The plain loop does the same work per epoch: a training pass (zero_grad, forward, loss,
backward, Adam step), a validation pass under ``torch.inference_mode``, the same val metrics
and the plateau scheduler step. An epoch is timed from its start to the end of all its hooks
(early stopping, best weights, logging); each run's first epoch is left out as warm-up. The
whole-run ratio adds each run's set-up (model, loaders, Lightning's Trainer). Runs alternate
(Lightning, plain, Lightning, ...) so drift of a busy machine falls on both; figures are medians
of process CPU time (steady when other work shares the machine) and of wall time.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytorch_lightning as pl
import torch

from core.config import TrialConfig
from core.metrics import VAL_LOSS, binary_metrics, segmentation_scores
from core.train import build_datamodule, build_module, train
from search_spaces import get_space
from tuning.search.workers import quiet_trial

# (space, overrides, train samples, val samples): small synthetic arrays of each space's shape
CASES: dict[str, tuple[dict[str, Any], int, int]] = {
    "egfr": ({"data/shape": (32, 32, 32)}, 128, 32),
    "luna16": ({"data/shape": (32, 48, 48)}, 192, 32),
    "segmentation": ({"data/shape": (64, 64)}, 64, 16),
    "xray": ({"data/shape": (64, 64), "model/name": "densenet121"}, 64, 16),
}


def synthetic(cfg: TrialConfig, n_train: int, n_val: int, seed: int = 0) -> dict[str, np.ndarray]:
    """x (N, 1, *shape) float32 in [0, 1]; y 0/1 labels (1 in 4 positive) or (N, *shape) masks."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("val", n_val)):
        x = rng.random((n, 1, *cfg.data.shape), dtype=np.float32)
        if cfg.loss.name == "generalized_dice":
            y = (x[:, 0] > 0.7).astype(np.uint8)
        else:
            y = (np.arange(n) % 4 == 0).astype(np.int64)
        arrays[f"{split}/x"], arrays[f"{split}/y"] = x, y
    return arrays


class Clock:
    """Wall and process CPU seconds of each epoch (training pass + validation + bookkeeping)."""

    def __init__(self) -> None:
        self.epochs: list[tuple[float, float]] = []
        self._start = (0.0, 0.0)

    def start(self) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def stop(self) -> None:
        self.epochs.append((time.perf_counter() - self._start[0],
                            time.process_time() - self._start[1]))


class EpochClock(pl.Callback):
    """``Clock`` around each Lightning epoch: from its start to the end of all its hooks."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.clock.start()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.clock.stop()


def plain_loop(cfg: TrialConfig, arrays: Mapping[str, np.ndarray], *, epochs: int,
               clock: Clock) -> None:
    """The same training as ``core.train.train`` for ``epochs`` epochs, in plain PyTorch."""
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = build_module(cfg, sample_shape=arrays["train/x"].shape[1:],
                          train_labels=np.asarray(arrays["train/y"]))
    net, loss_fn = module.net.to(device), module.loss.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.optim.lr,
                                 weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.optim.plateau_factor,
        patience=cfg.optim.plateau_patience, threshold=cfg.optim.plateau_threshold)
    data = build_datamodule(cfg, arrays)
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
    segmentation = module.segmentation
    for _ in range(epochs):
        clock.start()
        net.train()
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
        net.eval()
        total, probs, targets = 0.0, [], []
        with torch.inference_mode():
            for x, y in val_loader:
                logits = net(x.to(device, non_blocking=True))
                total += float(loss_fn(logits, y.to(device))) * len(x)
                probs.append(loss_fn.probabilities(logits).float().cpu())
                targets.append(y)
        p, t = torch.cat(probs).numpy(), torch.cat(targets).numpy()
        scores = segmentation_scores(t, p) if segmentation else binary_metrics(t, p)
        assert scores is not None
        scheduler.step(total / len(t))
        clock.stop()


def lightning_run(cfg: TrialConfig, arrays: Mapping[str, np.ndarray], *, epochs: int,
                  clock: Clock) -> None:
    result = train(cfg, arrays, metric=VAL_LOSS, mode="min", callbacks=[EpochClock(clock)])
    assert result.epochs_run == epochs, result.epochs_run


def config_for(space_name: str, overrides: dict[str, Any], epochs: int) -> TrialConfig:
    space = get_space(space_name)
    flat = {**space.fixed, **overrides, "train/max_epochs": epochs, "train/patience": epochs + 5,
            "train/num_workers": 0}
    return TrialConfig.from_dict(flat)


def measure(space_name: str, *, epochs: int, repeats: int) -> dict[str, float]:
    overrides, n_train, n_val = CASES[space_name]
    cfg = config_for(space_name, overrides, epochs)
    arrays = synthetic(cfg, n_train, n_val)
    epoch_times: dict[str, list[tuple[float, float]]] = {"lightning": [], "plain": []}
    run_times: dict[str, list[tuple[float, float]]] = {"lightning": [], "plain": []}
    lightning_run(cfg, arrays, epochs=epochs, clock=Clock())  # warm-up: imports, caches
    for _ in range(repeats):
        for name, fn in (("lightning", lightning_run), ("plain", plain_loop)):
            clock = Clock()
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(cfg, arrays, epochs=epochs, clock=clock)
            run_times[name].append((time.perf_counter() - start, time.process_time() - start_cpu))
            epoch_times[name] += clock.epochs[1:]  # the first epoch of a run warms up
    out: dict[str, float] = {"batch": cfg.train.batch_size, "n_train": n_train, "n_val": n_val}
    for clock_name, column in (("wall", 0), ("cpu", 1)):
        for name in ("lightning", "plain"):
            out[f"epoch_{clock_name}_{name}"] = statistics.median(t[column] for t in epoch_times[name])
            out[f"run_{clock_name}_{name}"] = statistics.median(t[column] for t in run_times[name])
        for span in ("epoch", "run"):
            out[f"{span}_{clock_name}_ratio"] = (out[f"{span}_{clock_name}_lightning"]
                                                 / out[f"{span}_{clock_name}_plain"])
    return out


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
             if line.startswith("model name")] if Path("/proc/cpuinfo").exists() else []
    cpu = names[0] if names else platform.processor() or platform.machine()
    return (f"CPU only: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
            f"thread(s), torch {torch.__version__}")


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--epochs", type=int, default=3)
    args.add_argument("--repeats", type=int, default=3)
    args.add_argument("--threads", type=int, default=1, help="torch CPU threads (trials use 1 "
                      "per CPU they hold)")
    args.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                      help="which ratio the verdict reads: process CPU time (steady on a shared "
                           "machine) or wall time (right on a quiet one)")
    args.add_argument("--spaces", nargs="+", default=list(CASES), choices=list(CASES))
    opts = args.parse_args()
    torch.set_num_threads(opts.threads)
    quiet_trial().__enter__()  # this script's process stays quiet until it exits
    print(f"machine: {machine()}; {opts.epochs} epochs per run (the first left out of the epoch "
          f"figures), {opts.repeats} repeats, medians; verdict on the {opts.clock} clock")
    print("| space | model, input | batch | train/val | Lightning s/epoch (CPU) | plain s/epoch (CPU) "
          "| epoch ratio (CPU) | epoch ratio (wall) | whole-run ratio (CPU) | target <= 1.10 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in opts.spaces:
        r = measure(name, epochs=opts.epochs, repeats=opts.repeats)
        cfg = config_for(name, CASES[name][0], opts.epochs)
        shape = "x".join(map(str, cfg.data.shape))
        ratio = r[f"epoch_{opts.clock}_ratio"]
        verdict = "met" if ratio <= 1.10 else f"missed by {ratio - 1.10:.2f}"
        print(f"| {name} | {cfg.model.name} {shape} | {r['batch']} | {r['n_train']}/{r['n_val']} "
              f"| {r['epoch_cpu_lightning']:.3f} | {r['epoch_cpu_plain']:.3f} "
              f"| {r['epoch_cpu_ratio']:.3f} | {r['epoch_wall_ratio']:.3f} "
              f"| {r['run_cpu_ratio']:.3f} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
