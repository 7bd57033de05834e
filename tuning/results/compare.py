"""python -m tuning.compare results/A results/B ... [--out DIR]

Finished runs side by side: one table (printed, and saved as compare.md and compare.csv) and
one plot, compare.png, of each sweep's best val metric against cumulative trial-epochs.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from tuning.results import plots
from tuning.results.analysis import (best_so_far, number, read_histories, read_trials, search_methods,
                             with_ci)
from tuning.config.options import OPTIONS_FILE

log = logging.getLogger(__name__)

REQUIRED = ("summary.json", "trials.csv")


class NotARun(ValueError):
    """A folder that is not a finished medtune run (names what is missing)."""


def check_run(folder: Path) -> None:
    """Raise ``NotARun`` naming the first missing file of a finished run."""
    if not folder.is_dir():
        raise NotARun(f"{folder} is not a folder; give results/<name> folders of finished runs")
    for name in REQUIRED:
        if not (folder / name).is_file():
            raise NotARun(f"{folder} is not a finished run: missing {folder / name} "
                          "(a run writes it when it ends; an unfinished run can be --resume'd)")


def run_row(folder: Path) -> dict[str, Any]:
    """One run as a flat row: counts, wall time, best sweep score and final test metrics + CIs."""
    check_run(folder)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    options_path = folder / OPTIONS_FILE
    options = json.loads(options_path.read_text(encoding="utf-8")) if options_path.is_file() else {}
    search, scheduler = search_methods(options)
    metric, mode = summary["selection_metric"], summary["mode"]
    scores = pd.to_numeric(read_trials(folder)[f"best_{metric}"], errors="coerce")
    row: dict[str, Any] = {
        "name": folder.name, "space": summary["space"], "search": search, "scheduler": scheduler,
        "trials": summary["trials"]["total"], "trial_epochs": summary["trials"]["trial_epochs"],
        "wall_time_min": summary["wall_time_s"] / 60, "metric": metric, "mode": mode,
        "best_sweep_val": scores.max() if mode == "max" else scores.min(),
        "final_val": summary["val"][metric]}
    for name, stat in summary["test"].items():
        for key in ("value", "ci_low", "ci_high"):
            row[f"test/{name}" + ("" if key == "value" else f"_{key}")] = stat[key]
    return row


def markdown(table: pd.DataFrame) -> str:
    """The comparison as a markdown table, test metrics as ``value [low, high]``."""
    tests = [c for c in table if c.startswith("test/") and not c.endswith(("_ci_low", "_ci_high"))]
    header = ["run", "space", "search", "scheduler", "trials", "trial-epochs", "wall time (min)",
              "metric", "best val (sweep)", "final val", *[f"{c} [95 % CI]" for c in tests]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [row["name"], row["space"], row["search"], row["scheduler"], int(row["trials"]),
                 int(row["trial_epochs"]), f"{row['wall_time_min']:.1f}", row["metric"],
                 number(row["best_sweep_val"], 4), number(row["final_val"], 4)]
        stats = [{"value": row[c], "ci_low": row[f"{c}_ci_low"], "ci_high": row[f"{c}_ci_high"]}
                 for c in tests]
        cells += [with_ci(s) if pd.notna(list(s.values())).any() else "" for s in stats]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def compare_runs(folders: list[Path], out: Path) -> pd.DataFrame:
    """Write compare.md, compare.csv and compare.png for ``folders`` into ``out``; the table.

    Every folder is checked first, so a bad one stops the comparison before anything is written.
    """
    folders = [Path(f) for f in folders]
    for folder in folders:
        check_run(folder)
    table = pd.DataFrame([run_row(folder) for folder in folders])
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "compare.csv", index=False)
    curves, missing = {}, []
    for folder, row in zip(folders, table.itertuples()):
        curve = best_so_far(read_histories(folder / "sweep"), metric=row.metric, mode=row.mode)
        if curve.empty:
            missing.append(folder.name)
        else:
            curves[f"{folder.name} ({row.metric})"] = curve
    text = [f"# Comparison of {len(folders)} runs", "", markdown(table)]
    if curves:
        metrics = sorted(set(table["metric"]))
        plots.plot_best_so_far(curves, out / "compare.png", metric=" / ".join(metrics),
                               mode=str(table["mode"].iloc[0]),
                               title="Best val metric so far, per sweep")
        text += ["![best val metric so far against cumulative trial-epochs](compare.png)", ""]
    if missing:
        text += [f"No per-trial histories under sweep/ for: {', '.join(missing)} "
                 "(not in the plot).", ""]
    (out / "compare.md").write_text("\n".join(text), encoding="utf-8")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tuning.compare", description=__doc__.split("\n\n")[1])
    p.add_argument("runs", nargs="+", type=Path, help="results/<name> folders of finished runs")
    p.add_argument("--out", type=Path,
                   help="where to write compare.md/.csv/.png (default: results/compare-<timestamp>)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    out = args.out or Path("results") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        table = compare_runs(args.runs, out)
    except NotARun as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(table))
    written = [str(out / n) for n in ("compare.md", "compare.csv", "compare.png") if (out / n).is_file()]
    print("wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
