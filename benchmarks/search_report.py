"""The search-method comparison from the epoch logs of ``search_sim.run_method``: a markdown table
(median [IQR] over seeds) and anytime curves (best val so far against trial-epochs and wall time,
median and inter-quartile band over seeds, one column per space)."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def slug(name: str) -> str:
    """A method's name as a file name: ``TPE + ASHA (default)`` -> ``tpe-asha-default``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def read_logs(folder: Path, methods: list[str]) -> dict[str, dict[int, pd.DataFrame]]:
    """{method: {seed: epoch log}} of the runs saved under ``folder`` (``<slug>-s<seed>.csv``)."""
    logs: dict[str, dict[int, pd.DataFrame]] = {}
    for method in methods:
        for path in sorted(folder.glob(f"{slug(method)}-s*.csv")):
            seed = int(path.stem.rsplit("-s", 1)[1])
            logs.setdefault(method, {})[seed] = pd.read_csv(path)
    return logs


def first_reach(log: pd.DataFrame, target: float, column: str) -> float:
    """``column`` (trial_epochs or wall_s) at the first report whose best so far reaches
    ``target``; inf if the run never does."""
    hit = log.loc[log["best"] >= target, column]
    return float(hit.iloc[0]) if len(hit) else float("inf")


def _mid(values: list[float], digits: int = 0) -> str:
    """Median [q1, q3]; "never" where the median is infinite."""
    q1, med, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return f"{_num(med, digits)} [{_num(q1, digits)}, {_num(q3, digits)}]"


def _num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if np.isfinite(value) else "never"


def best_at(log: pd.DataFrame, budget: float) -> float:
    """The best val so far after ``budget`` trial-epochs (nan before the first report)."""
    seen = log.loc[log["trial_epochs"] <= budget, "best"]
    return float(seen.iloc[-1]) if len(seen) else float("nan")


def method_rows(logs: dict[str, dict[int, pd.DataFrame]], target: float,
                real_s: dict[tuple[str, int], float] | None = None,
                budget: float | None = None) -> pd.DataFrame:
    """Per method: best val found, trial-epochs and simulated wall seconds to ``target``, the
    budget used, and the seeds that never reached it (medians and IQRs over seeds); with
    ``budget``, also the best val found within that many trial-epochs."""
    rows = []
    for method, runs in logs.items():
        best = [log["best"].iloc[-1] for log in runs.values()]
        early = {f"best val within {budget:.0f} trial-epochs": _mid(
            [best_at(log, budget) for log in runs.values()], 4)} if budget else {}
        epochs = [first_reach(log, target, "trial_epochs") for log in runs.values()]
        wall = [first_reach(log, target, "wall_s") for log in runs.values()]
        used = [len(log) for log in runs.values()]
        real = [real_s[(method, seed)] for seed in runs if real_s and (method, seed) in real_s]
        rows.append({"method": method, "seeds": len(runs), "best val found": _mid(best, 4),
                     "trial-epochs to target": _mid(epochs), "sim. wall s to target": _mid(wall),
                     "never reached": sum(not np.isfinite(e) for e in epochs),
                     **early, "trial-epochs used": _mid(used),
                     "real s per run": _mid(real) if real else "",
                     "_median_epochs": float(np.median(epochs))})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """The table as markdown, without the helper columns (``_``-prefixed)."""
    shown = table[[c for c in table.columns if not c.startswith("_")]]
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines)


def band(runs: dict[int, pd.DataFrame], column: str, grid: np.ndarray) -> np.ndarray:
    """(3, len(grid)): q1, median, q3 over seeds of the best val so far at each ``grid`` point
    (a run's best holds after it ends; NaN before its first report)."""
    curves = []
    for log in runs.values():
        at = np.searchsorted(log[column].to_numpy(), grid, side="right") - 1
        values = log["best"].to_numpy()[np.clip(at, 0, None)]
        curves.append(np.where(at >= 0, values, np.nan))
    return np.nanpercentile(np.array(curves), [25, 50, 75], axis=0)


def plot_anytime(spaces: dict[str, dict[str, dict[int, pd.DataFrame]]], targets: dict[str, float],
                 path: Path, *, metric: str = "val metric") -> Path:
    """Best val so far against trial-epochs (top row) and simulated wall seconds (bottom row),
    one column per space; lines are medians over seeds, bands their inter-quartile range."""
    fig, axes = plt.subplots(2, len(spaces), figsize=(6.5 * len(spaces), 8), squeeze=False)
    for col, (space, logs) in enumerate(spaces.items()):
        for row, column in enumerate(("trial_epochs", "wall_s")):
            ax = axes[row, col]
            top = max(log[column].max() for runs in logs.values() for log in runs.values())
            grid = np.geomspace(1, top, 400)
            for method, runs in logs.items():
                q1, med, q3 = band(runs, column, grid)
                line, = ax.plot(grid, med, label=f"{method} ({len(runs)} seeds)")
                ax.fill_between(grid, q1, q3, color=line.get_color(), alpha=0.15)
            ax.axhline(targets[space], color="grey", ls=":", lw=1, label="target")
            ax.set_xlabel("cumulative trial-epochs" if row == 0 else "simulated wall s (2 slots)")
            ax.set_ylabel(f"best {metric} so far")
            ax.set_title(f"{space}: best val vs {'trial-epochs' if row == 0 else 'wall time'}")
            ax.set_ylim(bottom=max(0.0, targets[space] - 0.15))
            ax.set_xscale("log")
            ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
