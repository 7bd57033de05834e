"""The report's figures, one PNG each: sweep progress, parameters, ASHA, learning curves, test.

Figures are plain ``matplotlib.figure.Figure`` objects saved with the Agg renderer; pyplot (and
its global state and backend choice) is never touched.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

from core.metrics import VAL_LOSS, confusion, segmentation_scores
from search_spaces.types import Choice, Distribution, LogUniform
from tuning.results.analysis import choice_label

STATUS_COLOURS = {"completed": "tab:green", "early_stopped": "tab:blue",
                  "scheduler_stopped": "tab:orange", "errored": "tab:red", "infeasible": "tab:purple"}
DPI = 110


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def plot_best_so_far(curves: Mapping[str, pd.DataFrame], path: Path, *, metric: str, mode: str,
                     title: str, show_points: bool = True) -> Path:
    """Best val metric so far against cumulative trial-epochs, one line per sweep.

    curves: per sweep, ``best_so_far`` output (columns trial_epoch, value, best).
    """
    fig = _figure(7.5, 4.5)
    ax = fig.subplots()
    for i, (label, curve) in enumerate(curves.items()):
        colour = f"C{i}"
        if show_points and len(curves) == 1:
            ax.scatter(curve["trial_epoch"], curve["value"], s=10, color="0.6", alpha=0.6,
                       label=f"{metric} of each trial-epoch")
        ax.step(curve["trial_epoch"], curve["best"], where="post", color=colour, linewidth=2,
                label=label if len(curves) > 1 else f"best {metric} so far")
    ax.set_xlabel("cumulative trial-epochs (every epoch of every trial, in time order)")
    ax.set_ylabel(f"{metric} ({'higher' if mode == 'max' else 'lower'} is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if mode == "max" else "upper right", fontsize=8)
    return _save(fig, path)


def plot_compare(curves: Mapping[str, pd.DataFrame], path: Path, *, metric: str, mode: str,
                 title: str) -> Path:
    """Anytime curves of several sweeps, one line each: best val metric so far against cumulative
    trial-epochs (left) and against wall time since the sweep started, in minutes (right).

    curves: per sweep, ``best_so_far`` output (columns trial_epoch, best, wall_s). Wall time
    depends on the machine and on trials run at once; trial-epochs do not.
    """
    fig = _figure(12.0, 4.6)
    left, right = fig.subplots(1, 2, sharey=True)
    untimed = []
    for i, (label, curve) in enumerate(curves.items()):
        style = {"where": "post", "color": f"C{i}", "linewidth": 2, "label": label}
        left.step(curve["trial_epoch"], curve["best"], **style)
        wall = pd.to_numeric(curve["wall_s"], errors="coerce") / 60
        if wall.notna().any():
            right.step(wall, curve["best"], **style)
        else:
            untimed.append(label)
    left.set_xlabel("cumulative trial-epochs (every epoch of every trial, in time order)")
    right.set_xlabel("wall time since the sweep started (min)")
    right.set_xlim(left=0)
    if untimed:
        right.text(0.02, 0.02, "no timestamps: " + ", ".join(untimed), transform=right.transAxes,
                   fontsize=8, color="0.4")
    left.set_ylabel(f"best {metric} so far ({'higher' if mode == 'max' else 'lower'} is better)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(loc="lower right" if mode == "max" else "upper right", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def _category_positions(values: pd.Series, dist: Choice) -> tuple[np.ndarray, list[str]]:
    """x positions (index of the choice) of saved values, and the choices' labels."""
    labels = [choice_label(v) for v in dist.values]
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index.get(choice_label(v), np.nan) for v in values], dtype=float), labels


def plot_parameters(trials: pd.DataFrame, distributions: Mapping[str, Distribution], path: Path, *,
                    metric: str, seed: int = 0) -> Path:
    """One scatter panel per searched parameter: its value against the trial's best val metric.

    Log x for log-uniform parameters; categorical ones as a jittered strip; colour = trial status.
    """
    score = f"best_{metric}"
    shown = trials[pd.to_numeric(trials[score], errors="coerce").notna()]
    ncols = min(3, len(distributions))
    nrows = math.ceil(len(distributions) / ncols)
    fig = _figure(4.2 * ncols, 3.3 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    rng = np.random.default_rng(seed)
    for ax, (key, dist) in zip(axes, distributions.items()):
        colours = [STATUS_COLOURS.get(s, "0.5") for s in shown["status"]]
        y = shown[score].astype(float)
        if isinstance(dist, Choice):
            x, labels = _category_positions(shown[key], dist)
            ax.scatter(x + rng.uniform(-0.15, 0.15, len(x)), y, c=colours, s=22, alpha=0.8)
            long = sum(map(len, labels)) > 24
            ax.set_xticks(range(len(labels)), labels, rotation=20 if long else 0, fontsize=8)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        else:
            ax.scatter(pd.to_numeric(shown[key], errors="coerce"), y, c=colours, s=22, alpha=0.8)
            _searched_range(ax, dist)
        ax.set_xlabel(key + (" (log scale)" if isinstance(dist, LogUniform) else ""))
        ax.set_ylabel(f"best {metric}")
        ax.grid(alpha=0.3)
    for ax in axes[len(distributions):]:
        ax.set_axis_off()
    _status_legend(fig, set(shown["status"]))
    unscored = len(trials) - len(shown)
    fig.suptitle(f"Searched parameters against each trial's best {metric} ({len(shown)} trials"
                 + (f"; {unscored} without a score not shown)" if unscored else ")"))
    return _save(fig, path)


def _searched_range(ax: Any, dist: Distribution) -> None:
    """x axis over the whole searched range (a little wider), log for log-uniform."""
    if isinstance(dist, LogUniform):
        ax.set_xscale("log")
        ax.set_xlim(dist.low / 1.6, dist.high * 1.6)
    else:
        pad = 0.04 * (dist.high - dist.low) or 0.5
        ax.set_xlim(dist.low - pad, dist.high + pad)


def _status_legend(fig: Figure, statuses: set[str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=colour, label=status)
               for status, colour in STATUS_COLOURS.items() if status in statuses]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8,
                   title="trial status", title_fontsize=8)


def plot_importance(importances: Mapping[str, float], path: Path, *, metric: str,
                    n_trials: int) -> Path:
    """Horizontal bars of fANOVA importances (fractions of the metric's variance, sum 1)."""
    names = list(importances)[::-1]
    values = [importances[name] for name in names]
    fig = _figure(7.0, 0.45 * len(names) + 1.6)
    ax = fig.subplots()
    bars = ax.barh(names, values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3, fontsize=8)
    ax.set_xlim(0, max(max(values, default=0) * 1.2, 0.1))
    ax.set_xlabel(f"fANOVA importance (share of the variance of best {metric})")
    ax.set_title(f"Parameter importance over {n_trials} finished trials")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_stopping(trials: pd.DataFrame, path: Path, *, max_epochs: int) -> Path:
    """Left: epochs reached by the trials ASHA stopped (its rungs); right: trials per status."""
    fig = _figure(10.0, 4.0)
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    stopped = trials.loc[trials["status"] == "scheduler_stopped", "epochs"].astype(int)
    if stopped.empty:
        left.text(0.5, 0.5, "ASHA stopped no trial", ha="center", va="center",
                  transform=left.transAxes, fontsize=11)
        left.set_xlim(0, max_epochs)
    else:
        counts = stopped.value_counts().sort_index()
        bars = left.bar(counts.index, counts.values, width=0.8, color=STATUS_COLOURS["scheduler_stopped"])
        left.bar_label(bars, fontsize=8)
        left.set_xticks(counts.index)
        left.set_xlim(0, max_epochs + 1)
    left.set_xlabel(f"epochs reached when stopped (budget {max_epochs} epochs)")
    left.set_ylabel("trials stopped by ASHA")
    left.set_title("Where ASHA stopped trials")
    statuses = [s for s in STATUS_COLOURS if s in set(trials["status"])] or ["completed"]
    totals = [int((trials["status"] == s).sum()) for s in statuses]
    bars = right.bar(statuses, totals, color=[STATUS_COLOURS[s] for s in statuses])
    right.bar_label(bars, fontsize=8)
    right.set_ylabel("trials")
    right.set_title(f"Trial outcomes ({len(trials)} trials)")
    right.tick_params(axis="x", labelsize=8, rotation=15)
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
        ax.yaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def plot_learning_curves(histories: Mapping[str, pd.DataFrame], trial_ids: Sequence[str],
                         path: Path, *, metric: str, mode: str) -> Path:
    """Val metric (left) and val loss (right) per epoch of the given trials, best first."""
    fig = _figure(11.0, 4.2)
    left, right = fig.subplots(1, 2)
    for i, trial_id in enumerate(trial_ids):
        history = histories[trial_id]
        epoch = history["epoch"] if "epoch" in history else history["training_iteration"]
        score = pd.to_numeric(history.get(metric, pd.Series(dtype=float)), errors="coerce")
        label = f"#{i + 1} {trial_id} (best {score.max() if mode == 'max' else score.min():.3f})"
        for ax, column in ((left, metric), (right, VAL_LOSS)):
            if column in history:
                ax.plot(epoch, pd.to_numeric(history[column], errors="coerce"), marker="o",
                        markersize=3, color=f"C{i}", label=label)
    left.set_ylabel(metric)
    right.set_ylabel(VAL_LOSS)
    for ax, title in ((left, f"{metric} per epoch"), (right, "validation loss per epoch")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    left.legend(fontsize=8, title=f"trial (rank by best {metric})", title_fontsize=8)
    fig.suptitle(f"Learning curves of the top {len(trial_ids)} sweep trials")
    return _save(fig, path)


def _operating_point(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, false positive rate and precision at ``threshold`` (from ``confusion``)."""
    c = confusion(y, p, threshold)
    return {"tpr": c["tp"] / max(c["tp"] + c["fn"], 1), "fpr": c["fp"] / max(c["fp"] + c["tn"], 1),
            "precision": c["tp"] / max(c["tp"] + c["fp"], 1)}


def plot_test_curves(y: np.ndarray, p: np.ndarray, threshold: float, path: Path) -> Path:
    """Test ROC (left) and precision-recall (right) of the final model, threshold marked.

    Drawn by scikit-learn's RocCurveDisplay and PrecisionRecallDisplay on our own axes.
    """
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    point = _operating_point(y, p, threshold)
    fig = _figure(11.0, 4.6)
    left, right = fig.subplots(1, 2)
    curve = {"color": "C0", "linewidth": 2}
    chance = {"linestyle": "--", "color": "0.6"}
    RocCurveDisplay.from_predictions(y, p, ax=left, name="final model", curve_kwargs=curve,
                                     plot_chance_level=True, chance_level_kw=chance)
    left.set_xlabel("false positive rate (1 - specificity)")
    left.set_ylabel("true positive rate (sensitivity)")
    left.set_title(f"Test ROC ({len(y)} cases, {int(y.sum())} positive)")
    PrecisionRecallDisplay.from_predictions(y, p, ax=right, name="final model", curve_kwargs=curve,
                                            plot_chance_level=True, chance_level_kw=chance)
    right.set_xlabel("recall (sensitivity)")
    right.set_ylabel("precision (PPV)")
    right.set_title("Test precision-recall")
    marker = f"threshold {threshold:.3f} (chosen on val)"
    left.scatter([point["fpr"]], [point["tpr"]], s=70, color="tab:red", zorder=3, label=marker)
    right.scatter([point["tpr"]], [point["precision"]], s=70, color="tab:red", zorder=3,
                  label=marker)
    for ax in (left, right):
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("auto")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if ax is left else "lower left")
    return _save(fig, path)


def plot_confusion(y: np.ndarray, p: np.ndarray, threshold: float, path: Path) -> Path:
    """The test confusion matrix at the val-chosen threshold, counts and row percentages.

    Drawn by scikit-learn's ConfusionMatrixDisplay; counts come from ``core.metrics.confusion``.
    """
    counts = confusion(y, p, threshold)
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    fig = _figure(5.0, 4.2)
    ax = fig.subplots()
    display = ConfusionMatrixDisplay(matrix, display_labels=["negative (0)", "positive (1)"])
    display.plot(ax=ax, cmap="Blues", colorbar=False, im_kw={"vmin": 0}, text_kw={"fontsize": 11})
    names = [["TN", "FP"], ["FN", "TP"]]
    for t in (0, 1):
        for q in (0, 1):
            share = matrix[t, q] / max(matrix[t].sum(), 1)
            display.text_[t, q].set_text(f"{names[t][q]} {matrix[t, q]}\n({share:.0%} of row)")
    ax.set_yticks([0, 1], ["negative (0)", "positive (1)"], rotation=90, va="center")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("actual class (test label)")
    ax.set_title(f"Test confusion matrix at threshold {threshold:.3f}")
    fig.colorbar(display.im_, ax=ax, label="cases", shrink=0.8)
    return _save(fig, path)


def plot_dice_histogram(masks: np.ndarray, probs: np.ndarray, path: Path, *,
                        threshold: float = 0.5) -> Path:
    """Histogram of per-image test Dice of the final model (masks/probs (N, H, W))."""
    dice = segmentation_scores(masks, probs, threshold=threshold)["dice"]
    fig = _figure(7.0, 4.2)
    ax = fig.subplots()
    ax.hist(dice, bins=np.linspace(0, 1, 21), color="tab:blue", edgecolor="white")
    ax.axvline(dice.mean(), color="tab:red", linestyle="--", label=f"mean {dice.mean():.3f}")
    ax.axvline(np.median(dice), color="0.3", linestyle=":", label=f"median {np.median(dice):.3f}")
    ax.set_xlabel(f"Dice per test image (prediction = probability >= {threshold:g})")
    ax.set_ylabel("test images")
    ax.set_title(f"Per-image test Dice of the final model ({len(dice)} images)")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8, loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
