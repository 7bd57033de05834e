"""python benchmarks/shared_memory.py [--mib 400] [--k 1 2 4]

What k concurrent trials cost in memory when they share one dataset through Ray's object store.

For each k a Ray Tune run starts k trials of a function trainable wrapped in
``tune.with_parameters(fn, data=arrays)`` (as the sweep passes its arrays): each trial reads every
page of its read-only arrays and then holds them until the driver has measured. The measure is
the proportional set size (PSS, ``/proc/<pid>/smaps_rollup``) summed over the driver and every
process under it (GCS, raylet with the object store, the trial workers): a page shared by n
processes counts 1/n in each, so the sum counts the shared-memory store once. Its anonymous and
shared-memory parts (``Pss_Anon + Pss_Shmem``) hold the data and any copy of it; file-backed
pages (libraries) are left out of the figure of merit because their share moves with unrelated
processes that map the same files. The same run with a one-cutout dataset is the baseline;
(with data - baseline) / dataset size is the figure of merit (target <= 1.1 for every k).
``--copy-control`` adds a run whose trials copy their arrays, to show the measure sees copies. Linux only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import numpy as np  # noqa: E402
import ray  # noqa: E402
from ray import tune  # noqa: E402

MiB = 2**20
PAGE = 4096


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from /proc/<pid>/stat parent ids."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def rollup(pid: int) -> dict[str, int]:
    """Bytes of one process's ``Pss``, ``Pss_Anon`` and ``Pss_Shmem`` (``/proc/<pid>/smaps_rollup``)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:  # gone meanwhile
        return {}
    fields = (line.split() for line in lines[1:])
    return {f[0].rstrip(":"): int(f[1]) * 1024 for f in fields if f[0] in ("Pss:", "Pss_Anon:", "Pss_Shmem:")}


def name_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def tree_memory(trial_pids: set[int]) -> dict[str, int]:
    """Memory of this process's tree: ``pss`` (all of it) and ``data`` (anonymous + shared memory,
    i.e. without file-backed pages such as libraries, whose share moves with unrelated processes),
    ``data`` split into trials, raylet, driver and the rest, and ``shmem`` (the object store)."""
    parts = {"trials": 0, "raylet": 0, "driver": 0, "other": 0, "shmem": 0, "data": 0, "pss": 0}
    for pid in descendants(os.getpid()):
        memory = rollup(pid)
        data = memory.get("Pss_Anon", 0) + memory.get("Pss_Shmem", 0)
        part = ("trials" if pid in trial_pids else "driver" if pid == os.getpid()
                else "raylet" if name_of(pid) == "raylet" else "other")
        parts[part] += data
        parts["data"] += data
        parts["shmem"] += memory.get("Pss_Shmem", 0)
        parts["pss"] += memory.get("Pss", 0)
    return parts


def hold(config: dict, *, data: dict[str, np.ndarray], signals: str) -> None:
    """A trial: read every page of ``data`` (or copy it), say so, wait until released."""
    arrays = {k: np.array(v) for k, v in data.items()} if config["copy"] else data
    checksum = sum(float(a.reshape(-1)[:: max(1, PAGE // a.itemsize)].sum(dtype=np.float64))
                   for a in arrays.values())
    folder = Path(signals)
    (folder / f"ready-{os.getpid()}").write_text(str(checksum))
    while not (folder / "release").exists():
        time.sleep(0.1)
    tune.report({"checksum": checksum})


def measure(k: int, make_data: Callable[[], dict[str, np.ndarray]], *, copy: bool,
            object_store_bytes: int, timeout_s: float = 300) -> dict[str, int]:
    """Memory of this process tree while ``k`` trials hold the arrays ``make_data()`` returns
    (the driver keeps only the object store's copy, as a sweep's driver does)."""
    # a fresh Ray each time: Tune's registry keeps the parameters of a finished run in the store
    ray.init(address="local", num_cpus=k, object_store_memory=object_store_bytes, include_dashboard=False,
             configure_logging=False, log_to_driver=False)
    signals = Path(tempfile.mkdtemp(prefix="shm-bench-"))
    data = make_data()
    size = sum(a.nbytes for a in data.values())
    trainable = tune.with_resources(tune.with_parameters(hold, data=data, signals=str(signals)), {"cpu": 1})
    del data
    tuner = tune.Tuner(trainable, param_space={"i": tune.grid_search(list(range(k))), "copy": copy},
                       tune_config=tune.TuneConfig(max_concurrent_trials=k),
                       run_config=tune.RunConfig(storage_path=str(signals / "results"), verbose=0))
    runner = threading.Thread(target=tuner.fit)
    runner.start()
    deadline = time.monotonic() + timeout_s
    while len(list(signals.glob("ready-*"))) < k:
        if time.monotonic() > deadline or not runner.is_alive():
            raise RuntimeError(f"Only {len(list(signals.glob('ready-*')))} of {k} trials became ready")
        time.sleep(0.2)
    time.sleep(1.0)  # let the store and the workers settle
    trials = {int(p.name.split("-")[1]) for p in signals.glob("ready-*")}
    memory = tree_memory(trials)
    used = ray.cluster_resources().get("object_store_memory", 0) - ray.available_resources().get(
        "object_store_memory", 0)
    memory["store_used"], memory["dataset"] = int(used), size
    (signals / "release").write_text("")
    runner.join()
    ray.shutdown()
    shutil.rmtree(signals, ignore_errors=True)
    return memory


def dataset(mib: int) -> dict[str, np.ndarray]:
    """``mib`` MiB of float16 cutouts (N, 1, 32, 48, 48) in [0, 1] and int64 labels, as luna16 caches."""
    n = mib * MiB // (32 * 48 * 48 * 2)
    rng = np.random.default_rng(0)
    return {"train/x": rng.random((n, 1, 32, 48, 48), dtype=np.float32).astype(np.float16),
            "train/y": rng.integers(0, 2, size=n)}


def tiny() -> dict[str, np.ndarray]:
    """The baseline's dataset: one cutout."""
    return {"train/x": np.zeros((1, 1, 32, 48, 48), np.float16), "train/y": np.zeros(1, np.int64)}


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--mib", type=int, default=400, help="dataset size, MiB")
    args.add_argument("--k", type=int, nargs="+", default=[1, 2, 4])
    args.add_argument("--copy-control", action="store_true", help="also k=2 trials that copy the data")
    opts = args.parse_args()
    store = max(2 * opts.mib, 1024) * MiB
    runs = [(k, False) for k in opts.k] + ([(2, True)] if opts.copy_control else [])
    rows = ["| k | trials copy? | dataset | anon + shmem: baseline | with data | growth | / dataset | "
            "PSS growth | / dataset | trials | raylet | driver | other | shmem (store, counted once) | "
            "store used (Ray) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, copy in runs:
        base = measure(k, tiny, copy=copy, object_store_bytes=store)
        full = measure(k, lambda: dataset(opts.mib), copy=copy, object_store_bytes=store)
        size = full["dataset"]
        parts = ", ".join(f"{p} {v / MiB:.0f} MiB" for p, v in base.items())
        print(f"baseline k={k}: {parts}", flush=True)
        grown, pss_grown = full["data"] - base["data"], full["pss"] - base["pss"]
        cells = [full[p] / MiB for p in ("trials", "raylet", "driver", "other", "shmem", "store_used")]
        rows.append(f"| {k} | {'yes' if copy else 'no'} | {size / MiB:.0f} MiB | "
                    f"{base['data'] / MiB:.0f} MiB | "
                    f"{full['data'] / MiB:.0f} MiB | {grown / MiB:.0f} MiB | {grown / size:.2f} | "
                    f"{pss_grown / MiB:.0f} MiB | {pss_grown / size:.2f} | "
                    + " | ".join(f"{c:.0f} MiB" for c in cells) + " |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
