"""python benchmarks/gpu_trials.py [--arrays DIR] [--epochs 5] [--trials 2]

EGFR trials per hour on one GPU with 1, 2 and 4 trials sharing it (what ``--gpus-per-trial``
1, 0.5 and 0.25 do: Ray places that many trial processes on the card), in fp32 and bf16 mixed
precision. Each of K long-lived worker processes runs ``--trials`` trials of ``core.train.train``
back to back; trials/hour = K * trials / wall. Two input sizes: the phantom's preprocessed
arrays (32^3, from ``--arrays``) and a synthetic real-scale set (64x128x128).
Also prints the GPU memory each worker still holds after a trial ends (should be ~0).
"""
from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

SIZES = {"phantom": None, "real-scale": True}  # the real-scale shape comes from --real-shape


def load_arrays(name: str, folder: Path | None, real_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The phantom's cached train/val arrays, or a synthetic set of the real-scale shape."""
    shape = real_shape
    if SIZES[name] is None:
        return {f"{s}/{k}": np.load(folder / s / f"{k}.npy") for s in ("train", "val") for k in "xy"}
    rng = np.random.default_rng(0)
    out = {}
    for split, n in [("train", 192), ("val", 48)]:
        y = (rng.random(n) < 0.2).astype(np.int64)
        x = rng.random((n, 1, *shape), dtype=np.float32) * 0.5
        centre = tuple(slice(d // 3, 2 * d // 3) for d in shape)
        x[(y == 1), :, centre[0], centre[1], centre[2]] += 0.3
        out[f"{split}/x"], out[f"{split}/y"] = x, y
    return out


def run_trials(data: dict, *, precision: str, epochs: int, trials: int, loaders: int) -> list[float]:
    """Seconds per trial of ``trials`` back-to-back ``core.train.train`` calls."""
    from core.config import TrialConfig
    from core.train import train

    times = []
    for seed in range(trials):
        cfg = TrialConfig.from_dict({"data/shape": data["train/x"].shape[2:],
                                     "train/max_epochs": epochs, "train/patience": 1000,
                                     "train/precision": precision, "train/seed": seed,
                                     "train/batch_size": 32, "train/num_workers": loaders})
        start = time.perf_counter()
        train(cfg, data, metric="val/auroc", mode="max")
        times.append(time.perf_counter() - start)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return times


def worker(rank: int, tasks: mp.Queue, results: mp.Queue, folder: Path | None, threads: int,
           real_shape: tuple[int, ...], loaders: int) -> None:
    from tuning.search.workers import quiet_trial

    torch.set_num_threads(threads)
    quiet_trial().__enter__()  # this worker process stays quiet until it exits
    data = {name: load_arrays(name, folder, real_shape) for name in SIZES}
    for name in SIZES:  # warm-up: CUDA context, cuDNN autotuning, first-call costs
        for precision in ("32-true", "bf16-mixed"):
            run_trials(data[name], precision=precision, epochs=1, trials=1, loaders=loaders)
    results.put(("ready", rank))
    while (task := tasks.get()) is not None:
        name, precision, epochs, trials = task
        times = run_trials(data[name], precision=precision, epochs=epochs, trials=trials,
                           loaders=loaders)
        gpu = torch.cuda.is_available()
        results.put((rank, times, torch.cuda.memory_allocated() / 2**20 if gpu else 0.0,
                     torch.cuda.max_memory_allocated() / 2**20 if gpu else 0.0))
        if gpu:
            torch.cuda.reset_peak_memory_stats()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arrays", type=Path, help="a preprocessed cache folder (train/x.npy, train/y.npy, val/...)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--per-gpu", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--real-shape", type=int, nargs=3, default=[64, 128, 128])
    parser.add_argument("--loaders", type=int, default=0,
                        help="DataLoader workers per trial (medtune sizes them from the trial's CPUs)")
    opts = parser.parse_args()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"device: {device}, torch {torch.__version__}, {opts.loaders} loader workers per trial,"
          f" {opts.epochs} epochs x {opts.trials} trials per process", flush=True)
    ctx = mp.get_context("spawn")
    tasks = [ctx.Queue() for _ in range(max(opts.per_gpu))]
    results = ctx.Queue()
    threads = max(1, (mp.cpu_count() or 4) // max(opts.per_gpu))
    procs = [ctx.Process(target=worker, args=(r, tasks[r], results, opts.arrays, threads,
                                                      tuple(opts.real_shape), opts.loaders))
             for r in range(max(opts.per_gpu))]
    for p in procs:
        p.start()
    for _ in procs:
        results.get()
    print("| input | trials per GPU | precision | trials/hour | s per trial | peak MiB per trial | MiB held after |")
    print("|---|---|---|---|---|---|---|")
    for name in SIZES:
        for precision in ("32-true", "bf16-mixed"):
            for k in opts.per_gpu:
                start = time.perf_counter()
                for r in range(k):
                    tasks[r].put((name, precision, opts.epochs, opts.trials))
                done = [results.get() for _ in range(k)]
                wall = time.perf_counter() - start
                per_trial = np.mean([t for _, times, _, _ in done for t in times])
                held = max(d[2] for d in done)
                peak = max(d[3] for d in done)
                label = ("phantom 32^3" if SIZES[name] is None
                         else "synthetic " + "x".join(map(str, opts.real_shape)))
                print(f"| {label} | {k} | {precision} | {3600 * k * opts.trials / wall:.0f} "
                      f"| {per_trial:.1f} | {peak:.0f} | {held:.0f} |", flush=True)
    for q in tasks:
        q.put(None)
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
