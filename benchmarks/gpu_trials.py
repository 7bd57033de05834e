"""python -m benchmarks.gpu_trials [--arrays DIR] [--epochs 3] [--trials 1] [--out DIR] [--dry-run]

EGFR trials per hour on one GPU with 1, 2 and 4 trials sharing it (what ``--gpus-per-trial``
1, 0.5 and 0.25 do: Ray places that many trial processes on the card), in fp32 and bf16 mixed
precision, for three data feeds: ``device`` (train+val copied to the GPU once, batches indexed
there: medtune's default when they fit), ``host`` with 0 loader workers and ``host`` with 3
(pinned memory, persistent workers). Each of K long-lived worker processes runs ``--trials``
trials of ``core.train.train`` back to back; trials/hour = K * trials / wall. GPU utilisation
is sampled during each cell (pynvml, else nvidia-smi, else "n/a"). Two inputs: 32^3 crops (the
phantom's cache with ``--arrays``, else a synthetic set of its size) and a synthetic real-scale
set (64x128x128). Cells stop being started once ``--time-limit`` would be passed; the table
(markdown and csv in ``--out``) is rewritten after every cell, so a cut-short run keeps its rows.
Without a GPU it exits at once; ``--dry-run`` runs one tiny cell on the CPU, in this process.
"""
from __future__ import annotations

import argparse
import csv
import gc
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.multiprocessing as mp

PRECISIONS = ("32-true", "bf16-mixed")
FEEDS = (("device", 0), ("host", 0), ("host", 3))  # (data path asked for, loader workers)
CELL_TIMEOUT_S = 150  # a cell still running after this is reported and the run ends


@dataclass(frozen=True)
class Input:
    """What one row's arrays are: a cache folder's train/val, or a synthetic set of ``shape``."""

    label: str
    shape: tuple[int, ...]
    n_train: int
    n_val: int
    folder: str | None = None


def load_arrays(spec: Input) -> dict[str, np.ndarray]:
    """train/val arrays: x (N, 1, *shape) float16 as the cache stores them, y (N,) int64."""
    if spec.folder is not None:
        return {f"{s}/{k}": np.load(Path(spec.folder) / s / f"{k}.npy") for s in ("train", "val") for k in "xy"}
    rng = np.random.default_rng(0)
    out = {}
    for split, n in [("train", spec.n_train), ("val", spec.n_val)]:
        y = (np.arange(n) % 5 == 0).astype(np.int64)  # 20 % positive, both classes in every split
        x = np.empty((n, 1, *spec.shape), dtype=np.float16)
        centre = (slice(None),) + tuple(slice(d // 3, 2 * d // 3) for d in spec.shape)
        for i in range(n):
            x[i] = rng.random((1, *spec.shape), dtype=np.float32) * 0.5
            if y[i]:
                x[i][centre] += 0.3
        out[f"{split}/x"], out[f"{split}/y"] = x, y
    return out


def trial_cfg(data: dict, *, precision: str, epochs: int, seed: int, feed: str, loaders: int,
              share: float) -> Any:
    from core.config import TrialConfig

    return TrialConfig.from_dict({
        "data/shape": data["train/x"].shape[2:], "train/max_epochs": epochs, "train/patience": 1000,
        "train/precision": precision, "train/seed": seed, "train/batch_size": 32,
        "train/num_workers": loaders, "train/device_share": share,
        "train/device_data_fraction": 0.25 if feed == "device" else 0.0})


def resident(data: dict, cfg: Any) -> str:
    """Whether ``core.train`` will keep this run's arrays on the device (its own rule, now)."""
    from core.data.resident import keep_on_device, resident_bytes

    free = torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
    return "yes" if keep_on_device(nbytes=resident_bytes(data), free_bytes=free, augment=False,
                                   fraction=cfg.train.device_data_fraction,
                                   share=cfg.train.device_share) else "no"


def run_trials(data: dict, *, precision: str, epochs: int, trials: int, feed: str, loaders: int,
               share: float) -> dict[str, Any]:
    """``trials`` back-to-back ``core.train.train`` calls: seconds each, memory, data path."""
    from core.train import train

    times, path = [], "n/a"
    gpu = torch.cuda.is_available()
    for seed in range(trials):
        cfg = trial_cfg(data, precision=precision, epochs=epochs, seed=seed, feed=feed,
                        loaders=loaders, share=share)
        path = resident(data, cfg)
        start = time.perf_counter()
        train(cfg, data, metric="val/auroc", mode="max")
        times.append(time.perf_counter() - start)
        gc.collect()
        if gpu:
            torch.cuda.empty_cache()
    out = {"times": times, "resident": path,
           "held": torch.cuda.memory_allocated() / 2**20 if gpu else 0.0,
           "peak": torch.cuda.max_memory_allocated() / 2**20 if gpu else 0.0}
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    return out


def worker(rank: int, tasks: Any, results: Any, inputs: list[Input], threads: int) -> None:
    """A long-lived trial process: warms up CUDA/cuDNN on every input and precision, then runs cells."""
    from tuning.search.workers import quiet_trial

    torch.set_num_threads(threads)
    with quiet_trial():  # no Lightning banners or tips per trial
        data = [load_arrays(spec) for spec in inputs]
        for arrays in data:
            for precision in PRECISIONS:
                run_trials(arrays, precision=precision, epochs=1, trials=1, feed="device", loaders=0,
                           share=0.25)
        results.put(("ready", rank))
        while (task := tasks.get()) is not None:
            index, kwargs = task
            results.put(run_trials(data[index], **kwargs))


class UtilSampler:
    """GPU 0's utilisation (%), sampled every ``period`` seconds in a thread between start and stop."""

    def __init__(self, period: float = 0.25) -> None:
        self.period, self.samples = period, []
        self._stop = threading.Event()
        self._read = self._reader()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _reader() -> Any:
        if not torch.cuda.is_available():
            return None
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:  # not installed or no NVML: try the command line tool
            pass
        if shutil.which("nvidia-smi") is None:
            return None
        command = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"]
        return lambda: float(subprocess.run(command, capture_output=True, text=True, timeout=5).stdout.split()[0])

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.samples.append(self._read())
            except Exception:  # a failed read drops one sample, not the cell
                pass

    def __enter__(self) -> UtilSampler:
        if self._read is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> tuple[str, str]:
        """(mean, max) utilisation in %, or "n/a" when nothing could be sampled."""
        if not self.samples:
            return "n/a", "n/a"
        return f"{np.mean(self.samples):.0f}", f"{np.max(self.samples):.0f}"


class Workers:
    """K spawned trial processes (one per trial sharing the GPU), or none: cells run inline."""

    def __init__(self, count: int, inputs: list[Input], *, inline: bool) -> None:
        self.inputs, self.inline, self.procs = inputs, inline, []
        if inline:
            self.data = [load_arrays(spec) for spec in inputs]
            return
        ctx = mp.get_context("spawn")
        self.tasks = [ctx.Queue() for _ in range(count)]
        self.results = ctx.Queue()
        threads = max(1, (mp.cpu_count() or 4) // count)
        self.procs = [ctx.Process(target=worker, args=(r, self.tasks[r], self.results, inputs, threads))
                      for r in range(count)]  # not daemons: their data loaders start processes
        for p in self.procs:
            p.start()
        for _ in self.procs:
            print(f"  worker ready: {self._get(timeout=300)[1]}", flush=True)

    def _get(self, *, timeout: float) -> Any:
        """The next result; raises ``queue.Empty`` after ``timeout`` s, RuntimeError if a worker died."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.results.get(timeout=2)
            except queue.Empty as empty:
                dead = [p.exitcode for p in self.procs if p.exitcode is not None]
                if dead:
                    raise RuntimeError(f"a trial process exited (codes {dead}); see its "
                                       "traceback above") from empty
                if time.monotonic() > deadline:
                    raise

    def run(self, k: int, index: int, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        if self.inline:
            return [run_trials(self.data[index], **kwargs)]
        for r in range(k):
            self.tasks[r].put((index, kwargs))
        return [self._get(timeout=CELL_TIMEOUT_S) for _ in range(k)]

    def close(self, *, grace_s: float = 20.0) -> None:
        """Ask every process to stop; any still running after ``grace_s`` in all is terminated."""
        for p, q in zip(self.procs, getattr(self, "tasks", [])):
            if p.is_alive():
                q.put(None)
        deadline = time.monotonic() + grace_s
        for p in self.procs:
            p.join(timeout=max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()


COLUMNS = ["input", "trials_per_gpu", "precision", "feed", "loader_workers", "resident",
           "trials_per_hour", "s_per_trial", "gpu_util_mean_pct", "gpu_util_max_pct",
           "peak_mib_per_trial", "mib_held_after"]


def write_table(rows: list[dict[str, Any]], out: Path, header: str, skipped: Sequence[str] = ()) -> None:
    """``out``/gpu_trials.md (a header line, a markdown table, the cells not run) and
    ``out``/gpu_trials.csv (the table)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gpu_trials.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = [header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    if skipped:
        lines += ["", "Not run: " + "; ".join(skipped)]
    (out / "gpu_trials.md").write_text("\n".join(lines) + "\n")


def cell_row(spec: Input, k: int, precision: str, feed: str, loaders: int, done: list[dict],
             wall: float, util: tuple[str, str], trials: int) -> dict[str, Any]:
    per_trial = float(np.mean([t for d in done for t in d["times"]]))
    return {"input": spec.label, "trials_per_gpu": k, "precision": precision, "feed": feed,
            "loader_workers": loaders, "resident": "/".join(sorted({d["resident"] for d in done})),
            "trials_per_hour": f"{3600 * k * trials / wall:.0f}", "s_per_trial": f"{per_trial:.2f}",
            "gpu_util_mean_pct": util[0], "gpu_util_max_pct": util[1],
            "peak_mib_per_trial": f"{max(d['peak'] for d in done):.0f}",
            "mib_held_after": f"{max(d['held'] for d in done):.0f}"}


def cells(opts: argparse.Namespace, inputs: list[Input]) -> list[tuple[int, int, str, str, int]]:
    """(input index, trials per GPU, precision, feed, loader workers), most telling first."""
    if opts.dry_run:
        return [(0, 1, "32-true", "host", 0)]
    return [(i, k, precision, feed, loaders) for i in range(len(inputs)) for precision in PRECISIONS
            for feed, loaders in FEEDS for k in opts.per_gpu]


def measure(opts: argparse.Namespace, inputs: list[Input], header: str, start: float) -> list[dict]:
    """Runs every cell that fits the time limit, printing and rewriting the table after each."""
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    walls: dict[tuple[int, int], float] = {}
    pool = Workers(max(opts.per_gpu), inputs, inline=opts.dry_run)
    print(f"workers ready after {time.monotonic() - start:.0f} s", flush=True)
    try:
        for index, k, precision, feed, loaders in cells(opts, inputs):
            name = f"{inputs[index].label} x{k} {precision} {feed}/{loaders} workers"
            expected = walls.get((index, k), max(walls.values(), default=0.0))
            if time.monotonic() - start + expected > opts.time_limit:
                skipped.append(f"{name} (time limit)")
                print(f"  skipped: {skipped[-1]}", flush=True)
                continue
            kwargs = dict(precision=precision, epochs=opts.epochs, trials=opts.trials, feed=feed,
                          loaders=loaders, share=1.0 / k)
            with UtilSampler() as util:
                t0 = time.perf_counter()
                try:
                    done = pool.run(k, index, kwargs)
                except queue.Empty:
                    skipped.append(f"{name} (no result after {CELL_TIMEOUT_S} s; the run stopped there)")
                    print(f"  TIMEOUT: {skipped[-1]}", flush=True)
                    write_table(rows, opts.out, header, skipped)
                    break
                wall = time.perf_counter() - t0
            walls[(index, k)] = max(walls.get((index, k), 0.0), wall)
            rows.append(cell_row(inputs[index], k, precision, feed, loaders, done, wall,
                                 util.summary(), opts.trials))
            write_table(rows, opts.out, header, skipped)
            print("  " + " | ".join(str(v) for v in rows[-1].values()), flush=True)
    finally:
        pool.close()
    write_table(rows, opts.out, header, skipped)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", type=Path, help="a preprocessed cache folder (train/x.npy, train/y.npy, val/...)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=1, help="trials per process per cell")
    parser.add_argument("--per-gpu", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--real-shape", type=int, nargs=3, default=[64, 128, 128])
    parser.add_argument("--time-limit", type=float, default=260.0,
                        help="seconds from the start after which no new cell starts")
    parser.add_argument("--out", type=Path, default=Path("/tmp/medtune-gpu-trials"))
    parser.add_argument("--dry-run", action="store_true",
                        help="one tiny cell on the CPU in this process: checks the script, measures nothing")
    opts = parser.parse_args()
    start = time.monotonic()
    if not opts.dry_run and not torch.cuda.is_available():
        sys.exit("gpu_trials: no CUDA GPU visible (torch.cuda.is_available() is False); this benchmark "
                 "measures GPU throughput. Run it on a GPU machine, or --dry-run for a CPU smoke run.")
    if opts.dry_run:
        opts.epochs, opts.trials, opts.per_gpu = 1, 1, [1]
        inputs = [Input("synthetic 8^3 (dry run)", (8, 8, 8), 16, 8)]
    else:
        small = (Input("phantom 32^3", (32, 32, 32), 0, 0, folder=str(opts.arrays)) if opts.arrays
                 else Input("synthetic 32^3", (32, 32, 32), 106, 23))
        inputs = [small, Input("synthetic " + "x".join(map(str, opts.real_shape)),
                               tuple(opts.real_shape), 192, 48)]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    header = (f"device: {device}; torch {torch.__version__}; {opts.epochs} epochs x {opts.trials} trials "
              f"per process per cell; batch 32; time limit {opts.time_limit:.0f} s"
              + ("; DRY RUN on the CPU, not a measurement" if opts.dry_run else ""))
    print(header, flush=True)
    print(" | ".join(COLUMNS), flush=True)
    from tuning.search.workers import quiet_trial

    with quiet_trial():  # the inline (dry) run's trials; spawned workers quiet themselves
        rows = measure(opts, inputs, header, start)
    print(f"{len(rows)} cells in {time.monotonic() - start:.0f} s; table: {opts.out / 'gpu_trials.md'} "
          f"and .csv", flush=True)


if __name__ == "__main__":
    main()
