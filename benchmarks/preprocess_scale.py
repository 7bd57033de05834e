"""python benchmarks/preprocess_scale.py [--data /tmp/medtune-realsize] [--runs 2] [--cpus 2]

Wall time and the driver's peak RSS of ``core.tasks.prepare`` on the real-size sets of
``benchmarks/realsize_data.py`` (generated there first if absent): serial (``mapper=map``) against
parallel (``mapper=tuning.parallel.ray_map`` on ``ray.init(num_cpus=--cpus)``), for luna16 and
egfr with their search spaces' fixed data settings. Every variant runs in its own child process
with a fresh cache folder (deleted after), ``--runs`` times, alternating serial and parallel; the
peak RSS is the child's ``ru_maxrss`` (Ray's workers are other processes, not counted).

A machine check first times a CPU-bound and a memory-bound job on ``--cpus`` processes against
one: the speed-up the machine can give at all while the benchmark runs.

The yardstick for the driver's memory is "2 scans + the output arrays": the two largest scans of
the set as ``read_volume`` holds them (float32) plus the bytes of the cached arrays.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

MiB = 2**20


def scan_bytes(folder: Path) -> list[int]:
    """In-memory float32 bytes of every scan of a real-size set (from headers only), largest first."""
    import SimpleITK as sitk

    sizes = []
    for path in sorted(folder.rglob("*.mhd")):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        sizes.append(4 * math.prod(reader.GetSize()))
    for series in (p for p in folder.iterdir() if p.is_dir() and any(p.glob("*.dcm"))):
        slices = sorted(series.glob("*.dcm"))
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(slices[0]))
        reader.ReadImageInformation()
        width, height = reader.GetSize()[:2]
        sizes.append(4 * width * height * len(slices))
    return sorted(sizes, reverse=True)


def current_rss() -> int:
    """This process's resident set now, bytes (Linux)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(task_name: str, variant: str, root: Path, cache: Path, cpus: int) -> dict:
    """Prepare ``task_name`` once in this process; wall time, RSS figures and sizes."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from core.config import TrialConfig
    from core.data.prepared import DataOptions
    from core.tasks import get_task, prepare
    from search_spaces import get_space

    cfg = TrialConfig.from_dict(get_space(task_name).fixed).data
    options = DataOptions(root=root, cache_dir=cache)
    mapper, ray_init_s = map, 0.0
    if variant == "parallel":
        import ray

        from tuning.parallel import ray_map

        started = time.perf_counter()
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, configure_logging=False,
                 log_to_driver=False)  # a new local instance, never a cluster found running
        ray_init_s, mapper = time.perf_counter() - started, ray_map
    task = get_task(task_name)  # imports the task's module (and torch) before the clock starts
    before, cpu_before = current_rss(), cpu_seconds()
    started = time.perf_counter()
    data = prepare(task, cfg, options, seed=42, mapper=mapper)
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    warm = None
    if variant == "parallel":  # again, with Ray's workers started and their imports done
        started = time.perf_counter()
        prepare(task, cfg, replace(options, cache_dir=cache / "warm"), seed=42, mapper=mapper)
        warm = time.perf_counter() - started
    out = {"task": task_name, "variant": variant, "wall_s": wall, "driver_cpu_s": cpu, "warm_wall_s": warm,
           "ray_init_s": ray_init_s, "rss_before_prepare": before, "peak_rss": peak,
           "output_bytes": sum(a.nbytes for a in data.arrays.values()),
           "n_cases": {k: int(v.shape[0]) for k, v in data.arrays.items() if k.endswith("/x")},
           "case_shape": list(data.arrays["train/x"].shape[1:])}
    if variant == "parallel":
        import ray

        ray.shutdown()
    return out


def _spin(_: int) -> None:
    """CPU-bound pure Python, ~2 s on one core of the development machine."""
    total = 0
    for i in range(30_000_000):
        total += i * i


def _convert(_: int) -> None:
    """Memory-bound: int16 -> float32 -> copy of a 76 MiB array, 25 times (a scan read's pattern)."""
    import numpy as np

    scan = np.ones(40_000_000, np.int16)
    for _ in range(25):
        np.copy(scan.astype(np.float32))


def machine_scaling(cpus: int) -> dict[str, float]:
    """Speed-up this machine gives right now to ``cpus`` processes over one, for a CPU-bound and a
    memory-bound job (the same jobs run ``cpus`` times one after another, then all at once)."""
    from multiprocessing import Pool

    out = {}
    with Pool(cpus) as pool:
        for name, job in (("cpu-bound", _spin), ("memory-bound", _convert)):
            started = time.perf_counter()
            for k in range(cpus):
                job(k)
            serial = time.perf_counter() - started
            started = time.perf_counter()
            pool.map(job, range(cpus))
            out[name] = serial / (time.perf_counter() - started)
    return out


def run_child(task_name: str, variant: str, root: Path, cpus: int, scratch: Path) -> dict:
    cache = Path(tempfile.mkdtemp(prefix=f"{task_name}-{variant}-", dir=scratch))
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", task_name, variant, str(root),
                               str(cache), "--cpus", str(cpus)], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{task_name} {variant} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


COLUMNS = ("task", "variant", "run", "wall s", "driver CPU s", "warm workers s", "ray.init s",
           "driver RSS before", "driver peak RSS", "peak - before", "2 scans + outputs",
           "(peak - before) / yardstick")


def row(r: dict, scans: list[int]) -> list[str]:
    """One result as table cells, in ``COLUMNS`` order."""
    yard = sum(scans[:2]) + r["output_bytes"]
    grown = r["peak_rss"] - r["rss_before_prepare"]
    warm = "-" if r["warm_wall_s"] is None else f"{r['warm_wall_s']:.1f}"
    return [r["task"], r["variant"], str(r["run"]), f"{r['wall_s']:.1f}", f"{r['driver_cpu_s']:.1f}",
            warm, f"{r['ray_init_s']:.1f}", f"{r['rss_before_prepare'] / MiB:.0f} MiB",
            f"{r['peak_rss'] / MiB:.0f} MiB", f"{grown / MiB:.0f} MiB", f"{yard / MiB:.0f} MiB",
            f"{grown / yard:.2f}"]


def summary(task: str, results: list[dict], scans: list[int]) -> str:
    """Speed-ups per run (cold and warm workers), best of each, and the sizes behind the yardstick."""
    mine = [r for r in results if r["task"] == task]
    serial = [r["wall_s"] for r in mine if r["variant"] == "serial"]
    cold = [r["wall_s"] for r in mine if r["variant"] == "parallel"]
    warm = [r["warm_wall_s"] for r in mine if r["variant"] == "parallel"]
    per_run = [round(s / p, 2) for s, p in zip(serial, cold)]
    per_run_warm = [round(s / w, 2) for s, w in zip(serial, warm)]
    return (f"{task}: speed-up serial/parallel per run {per_run} (warm workers {per_run_warm}); "
            f"best of each: {min(serial) / min(cold):.2f} (warm {min(serial) / min(warm):.2f}); "
            f"cases {mine[0]['n_cases']} of shape {mine[0]['case_shape']}, "
            f"outputs {mine[0]['output_bytes'] / MiB:.0f} MiB, "
            f"largest two scans {sum(scans[:2]) / MiB:.0f} MiB (float32)")


def report(results: list[dict], scans: dict[str, list[int]]) -> None:
    print("\n| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for r in results:
        print("| " + " | ".join(row(r, scans[r["task"]])) + " |")
    for task in dict.fromkeys(r["task"] for r in results):
        print(summary(task, results, scans[task]))


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--data", type=Path, default=Path("/tmp/medtune-realsize"))
    args.add_argument("--runs", type=int, default=2)
    args.add_argument("--cpus", type=int, default=2)
    args.add_argument("--tasks", nargs="+", default=["luna16", "egfr"])
    args.add_argument("--child", nargs=4, metavar=("TASK", "VARIANT", "ROOT", "CACHE"),
                      help=argparse.SUPPRESS)  # one variant in this process (run by the parent)
    opts = args.parse_args()
    if opts.child:
        task_name, variant, root, cache = opts.child
        print(json.dumps(child(task_name, variant, Path(root), Path(cache), opts.cpus)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from realsize_data import realsize_sets

    sets = realsize_sets(opts.data)
    scans = {task: scan_bytes(folder) for task, folder in sets.items()}
    scratch = Path(os.environ.get("MEDTUNE_CACHE_DIR", tempfile.gettempdir())) / "preprocess-scale"
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {loadavg()} on {os.cpu_count()} CPUs", flush=True)
    scaling = machine_scaling(opts.cpus)
    print(f"machine check, {opts.cpus} processes over 1: "
          + ", ".join(f"{name} {x:.2f}x" for name, x in scaling.items()), flush=True)
    results = []
    for run in range(1, opts.runs + 1):
        for task in opts.tasks:
            for variant in ("serial", "parallel"):
                result = {**run_child(task, variant, sets[task], opts.cpus, scratch), "run": run}
                print(f"run {run} {task} {variant}: {result['wall_s']:.1f} s, peak RSS "
                      f"{result['peak_rss'] / MiB:.0f} MiB, load {loadavg()}", flush=True)
                results.append(result)
    print(f"load average after: {loadavg()}")
    scaling = machine_scaling(opts.cpus)
    print("machine check after: " + ", ".join(f"{name} {x:.2f}x" for name, x in scaling.items()))
    report(results, scans)


if __name__ == "__main__":
    main()
