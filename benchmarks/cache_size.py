"""python benchmarks/cache_size.py [--candidates 754975] [--positives 1557] [--ram-gib 24]

Bytes per cached case for each stored type, and the luna16 cache at real LUNA16 scale by
arithmetic: train keeps every positive plus ``--ratio`` negatives per positive, val and test keep
every candidate of their series (``--eval-fraction`` of all candidates). Compares the parts with
the machine's RAM and Ray's default object store (30 % of the memory available at start).
Pure arithmetic from the search spaces' fixed shapes; starts nothing.
"""
from __future__ import annotations

import argparse
import math

import numpy as np

GiB = 2**30
TYPES = {"float32": np.float32, "float16 (stored now)": np.float16, "int16 HU": np.int16, "uint8": np.uint8}
SHAPES = {"luna16": (32, 48, 48), "egfr": (32, 32, 32)}  # the spaces' fixed data/shape, (D, H, W)


def case_bytes(shape: tuple[int, ...], dtype: type) -> int:
    """Bytes of one (1, D, H, W) input plus its int64 label."""
    return math.prod(shape) * np.dtype(dtype).itemsize + 8


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--candidates", type=int, default=754_975, help="rows of candidates_V2.csv")
    args.add_argument("--positives", type=int, default=1_557, help="class-1 rows of candidates_V2.csv")
    args.add_argument("--train-fraction", type=float, default=0.70)
    args.add_argument("--eval-fraction", type=float, default=0.30, help="val + test share of candidates")
    args.add_argument("--ratio", type=float, default=20.0, help="data/negative_pool_ratio")
    args.add_argument("--ram-gib", type=float, default=24.0)
    opts = args.parse_args()

    print("| task | shape | " + " | ".join(TYPES) + " |")
    print("|---|---|" + "---|" * len(TYPES))
    for task, shape in SHAPES.items():
        cells = [f"{case_bytes(shape, t) / 1024:.1f} KiB" for t in TYPES.values()]
        print(f"| {task} | {'x'.join(map(str, shape))} | " + " | ".join(cells) + " |")

    train_pos = round(opts.train_fraction * opts.positives)
    parts = {"train (positives + pool)": round(train_pos * (1 + opts.ratio)),
             "val + test (every candidate)": round(opts.eval_fraction * opts.candidates)}
    val = parts["val + test (every candidate)"] / 2
    parts["total"] = sum(parts.values())
    parts["sweep's object store (train + val)"] = round(parts["train (positives + pool)"] + val)
    store = 0.30 * opts.ram_gib
    print(f"\nluna16 at real scale: {train_pos} train positives, ratio {opts.ratio:g}; RAM "
          f"{opts.ram_gib:g} GiB, default object store ~{store:.1f} GiB")
    print("| part | cutouts | float32 | float16 (stored now) | int16 HU | uint8 |")
    print("|---|---|---|---|---|---|")
    for part, n in parts.items():
        sizes = [n * case_bytes(SHAPES["luna16"], t) / GiB for t in TYPES.values()]
        print(f"| {part} | {n:,} | " + " | ".join(f"{s:.1f} GiB" for s in sizes) + " |")
    eval_gib = parts["val + test (every candidate)"] * case_bytes(SHAPES["luna16"], np.float16) / GiB
    shipped = parts["sweep's object store (train + val)"] * case_bytes(SHAPES["luna16"], np.float16) / GiB
    print(f"\nval + test in float16: {eval_gib:.1f} GiB, {eval_gib - opts.ram_gib:+.1f} GiB against "
          f"{opts.ram_gib:g} GiB of RAM; train + val in the object store: {shipped:.1f} GiB, "
          f"{shipped - store:+.1f} GiB against the default store")


if __name__ == "__main__":
    main()
