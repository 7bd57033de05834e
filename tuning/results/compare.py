"""python -m tuning.compare results/A results/B ... [--out DIR]

Finished runs side by side: one table (printed, and saved as compare.md and compare.csv), a note
on whether the runs had the same budget (naming what differs), and compare.png, each sweep's best
val metric so far against cumulative trial-epochs and against wall time. Test metrics are shown
for information, never to rank runs.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tuning.config.options import OPTIONS_FILE
from tuning.results import plots
from tuning.results.analysis import best_so_far, number, read_histories, read_trials, with_ci
from tuning.results.budgets import footing_notes, run_settings

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


def read_run(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished run's ``summary.json`` and ``run_options.json`` ({} when the run saved none)."""
    check_run(folder)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    options_path = folder / OPTIONS_FILE
    options = json.loads(options_path.read_text(encoding="utf-8")) if options_path.is_file() else {}
    return summary, options


def run_row(folder: Path, summary: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """One run as a flat row: counts, wall time, best sweep score and final test metrics + CIs.

    summary: the run's ``summary.json``; settings: its ``run_settings`` (search and scheduler).
    """
    search, scheduler = settings["search"], settings["scheduler"]
    metric, mode = summary["selection_metric"], summary["mode"]
    scores = pd.to_numeric(read_trials(folder)[f"best_{metric}"], errors="coerce")
    row: dict[str, Any] = {
        "name": folder.name, "path": str(folder), "space": summary["space"], "search": search, "scheduler": scheduler,
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


TEST_NOTE = ("Test metrics are shown for information only: val chose every config, epoch, seed "
             "and threshold, and test must not be used to choose between these runs or search "
             "methods. Compare methods by the val curves on the same budget, over several seeds.")
ORDERS = ("given", "val")


@dataclass
class Comparison:
    """The table (one row per run, in the order shown) and the text of compare.md."""

    table: pd.DataFrame
    text: str


def ordered(table: pd.DataFrame, order: str) -> tuple[pd.DataFrame, str]:
    """The rows in the given order, or by best sweep val (best first); never by a test metric.
    Returns the table and a sentence saying which order it is in."""
    if order not in ORDERS:
        raise ValueError(f"order {order!r} is not one of {ORDERS}")
    if order == "given":
        return table, "Rows are in the order the runs were given."
    if table["metric"].nunique() > 1 or table["mode"].nunique() > 1:
        return table, ("Rows are in the order given: the runs select by different metrics, so "
                       "their val scores do not rank.")
    best_first = table.sort_values("best_sweep_val", ascending=table["mode"].iloc[0] == "min",
                                   kind="stable", na_position="last")
    return best_first.reset_index(drop=True), "Rows are ordered by best sweep val, best first."


def anytime_curves(table: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Per run (labelled ``name (metric)``, or by path when names repeat), its ``best_so_far``
    curve; and the runs without per-trial histories."""
    curves, missing = {}, []
    unique = table["name"].nunique() == len(table)
    for row in table.itertuples():
        label = row.name if unique else row.path
        curve = best_so_far(read_histories(Path(row.path) / "sweep"), metric=row.metric,
                            mode=row.mode)
        if curve.empty:
            missing.append(label)
        else:
            curves[f"{label} ({row.metric})"] = curve
    return curves, missing


def compare_runs(folders: list[Path], out: Path, *, order: str = "given") -> Comparison:
    """Write compare.md, compare.csv and compare.png for ``folders`` into ``out``.

    Every folder is checked first, so a bad one stops the comparison before anything is written.
    """
    folders = [Path(f) for f in folders]
    runs = [read_run(folder) for folder in folders]  # checks every folder, reads each once
    settings = [run_settings(options, summary) for summary, options in runs]
    rows = [run_row(folder, summary, s) for folder, (summary, _), s in zip(folders, runs, settings)]
    table, order_note = ordered(pd.DataFrame(rows), order)
    names = [folder.name for folder in folders]
    if len(set(names)) < len(names):
        names = [str(folder) for folder in folders]
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "compare.csv", index=False)
    curves, missing = anytime_curves(table)
    text = [f"# Comparison of {len(folders)} runs", "", order_note, "", markdown(table)]
    if any(c.startswith("test/") for c in table):
        text += [TEST_NOTE, ""]
    text += ["## Same budget?", "", *footing_notes(names, settings), ""]
    if curves:
        metrics = sorted(set(table["metric"]))
        plots.plot_compare(curves, out / "compare.png", metric=" / ".join(metrics),
                           mode=str(table["mode"].iloc[0]),
                           title="Anytime curves: best val metric so far, per sweep")
        text += ["## Anytime curves", "",
                 "![best val metric so far against cumulative trial-epochs and wall time](compare.png)",
                 "", "Wall time depends on the machine and on how many trials ran at once; "
                 "trial-epochs do not.", ""]
    if missing:
        text += [f"No per-trial histories under sweep/ for: {', '.join(missing)} "
                 "(not in the plot).", ""]
    (out / "compare.md").write_text("\n".join(text), encoding="utf-8")
    return Comparison(table, "\n".join(text))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tuning.compare", description=__doc__.split("\n\n")[1])
    p.add_argument("runs", nargs="+", type=Path, help="results/<name> folders of finished runs")
    p.add_argument("--out", type=Path,
                   help="where to write compare.md/.csv/.png (default: results/compare-<timestamp>)")
    p.add_argument("--order", choices=ORDERS, default="given",
                   help="row order: as given, or by best sweep val (never by test metrics)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    out = args.out or Path("results") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        comparison = compare_runs(args.runs, out, order=args.order)
    except NotARun as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(comparison.text)
    written = [str(out / n) for n in ("compare.md", "compare.csv", "compare.png") if (out / n).is_file()]
    print("wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
