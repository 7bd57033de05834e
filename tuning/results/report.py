"""``report.md`` of a finished run: summary numbers, selection protocol, leaderboard and plots.

Written last, from the results files already in the folder (summary.json, trials.csv,
leaderboard.csv, best/, overlays/) plus the test labels and the sweep's per-trial histories.
A plot that fails is logged and noted in the report; it never stops the report.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from core.intervals import plural
from core.tasks import get_task
from search_spaces.types import Choice, Distribution, IntUniform, LogUniform, SearchSpace
from tuning.config.options import RunOptions, load_options
from tuning.results import plots
from tuning.results.analysis import (
    Skipped,
    best_so_far,
    number,
    param_importance,
    read_histories,
    read_trials,
    search_methods,
)
from tuning.search.retrain import retrain_seeds

log = logging.getLogger(__name__)

TOP_CURVES = 5
SEARCHES = {"tpe": "Optuna TPE", "random": "random search", "wandb-bayes": "W&B's bayes search"}
RULES = {"youden": "Youden's J (sensitivity + specificity - 1, maximised) on the val ROC curve",
         "f1": "the best F1 on the val precision-recall curve"}


def searched(space: SearchSpace, options: RunOptions) -> dict[str, Distribution]:
    """The distributions this run searched: the space's, minus keys its overrides fixed."""
    return {k: d for k, d in space.search.items() if k not in options.overrides}


def describe(dist: Distribution) -> str:
    if isinstance(dist, LogUniform):
        return f"log-uniform on [{dist.low:g}, {dist.high:g}]"
    if isinstance(dist, IntUniform):
        return f"integer, uniform on [{dist.low}, {dist.high}]"
    if isinstance(dist, Choice):
        return "one of " + ", ".join(f"`{plots.choice_label(v)}`" for v in dist.values)
    return f"uniform on [{dist.low:g}, {dist.high:g}]"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return plots.choice_label(value) if isinstance(value, (list, tuple)) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows] + [""]


def summary_lines(summary: dict[str, Any], *, space: SearchSpace, options: RunOptions,
                  segmentation: bool) -> list[str]:
    """Trial counts, trial-epochs, wall time, the final model and its test metrics with CIs."""
    counts = summary["trials"]
    outcome = ", ".join(f"{k} {v}" for k, v in counts.items() if k not in ("total", "trial_epochs"))
    search, scheduler = search_methods(options.to_json())
    better = "higher" if space.mode == "max" else "lower"
    lines = ["## Summary", "",
             f"- **Task**: space `{space.name}`; selection metric `{space.metric}` on the val "
             f"split ({better} is better).",
             f"- **Sweep**: {counts['total']} trials ({outcome}), {counts['trial_epochs']} "
             f"trial-epochs; search `{search}`, scheduler `{scheduler}`.",
             f"- **Wall time**: {summary['wall_time_s'] / 60:.1f} min for the whole run "
             "(data, sweep, retrains, test).",
             f"- **Final model** (`best/`): seed {summary['chosen_seed']}, {space.metric} "
             f"{number(summary['val'][space.metric], 4)}, decision threshold "
             f"{number(summary['threshold'])} "
             + ("(fixed)." if segmentation else "(chosen on val)."), ""]
    chosen = summary["chosen_config"]
    lines += _table(["searched parameter", "final value"],
                    [[f"`{k}`", _fmt(chosen.get(k))] for k in searched(space, options)])
    lines += [f"Test metrics of the final model (seed {summary['chosen_seed']}; test read once). "
              "The 95 % interval is this model's; beside it, its config's mean ± sd over its "
              "retrain seeds (seed-to-seed spread, not an interval):", ""]
    rows = [test_row(name, stat) for name, stat in summary["test"].items()]
    if summary.get("froc"):  # the LUNA16 challenge's own metric, over test scans
        rows.append(test_row("CPM (FROC)", summary["froc"]["cpm"]))
    lines += _table(["test metric", "value", "95 % CI", "over seeds: mean ± sd", "interval method",
                     "unit", "groups (neg/pos)", "few positives"], rows)
    if summary.get("test_prevalence") is not None:
        lines += [f"Test prevalence: {summary['test_prevalence']:.1%} positive; precision, F1 and "
                  "accuracy hold at this prevalence only.", ""]
    return lines + meaning_lines(summary)


def test_row(name: str, stat: dict[str, Any]) -> list[Any]:
    """One metric of the final model as table cells."""
    seeds = stat.get("over_seeds") or {}
    spread = (f"{number(seeds.get('mean'))} ± {number(seeds.get('sd'))} ({seeds.get('n_seeds')})"
              if seeds else "")
    groups = stat.get("n_groups") or {}
    return [name, number(stat["value"]), f"[{number(stat['ci_low'])}, {number(stat['ci_high'])}]",
            spread, stat.get("method", ""), stat.get("unit", ""),
            "/".join(str(v) for v in groups.values()), "yes" if stat.get("few_positives") else "no"]


def meaning_lines(summary: dict[str, Any]) -> list[str]:
    """What the test numbers mean, in a paragraph: method, unit, groups per class, flags."""
    stats = [s for s in summary["test"].values() if isinstance(s, dict)]
    units = sorted({str(s.get("unit")) for s in stats if s.get("unit")}) or ["case"]
    groups = next((s.get("n_groups") for s in stats if s.get("n_groups")), {}) or {}
    count = ", ".join(f"{v} {'with a positive' if k == '1' else 'with a negative' if k == '0' else 'in all'}"
                      for k, v in groups.items())
    few = any(s.get("few_positives") for s in stats)
    return ["### What these numbers mean", "",
            f"Each interval is a 95 % confidence interval for the final model's performance on "
            f"new {' / '.join(map(plural, units))} like the test ones, from the test split alone (test "
            f"{' / '.join(map(plural, units))}: {count}). The resampling unit is the {' / '.join(units)}, not the "
            "row: rows of one patient or series move together, and each class keeps its count of "
            "groups. AUROC: a t interval on the logit scale from a stratified bootstrap's "
            "variance (Wilson with a Hanley-McNeil n at 0 or 1); proportions: Wilson or "
            "Clopper-Pearson (with an effective n when a group holds several rows); coverage is "
            "measured in BENCHMARKS.md. The interval covers test-set sampling only: not "
            "seed-to-seed training variation (the ± sd column), not the choice among finalists, "
            "not a shift to another hospital or scanner."
            + (" **Few positives** (fewer than 10 positive groups): the interval is wide and "
               "its coverage less certain; an undefined interval (n/a) means a class had fewer "
               "than 2 groups." if few else ""), ""]


def _methods_text(options: RunOptions) -> tuple[str, str]:
    """How configs were proposed and how trials were stopped, in words."""
    search, scheduler = search_methods(options.to_json())
    stopper = {"asha": f"ASHA (reduction factor {options.sweep.reduction_factor}) stopped trials "
                       "whose val metric lagged behind the others at the same epoch",
               "none": "no scheduler stopped trials early (only their own early stopping)"}
    return (SEARCHES.get(search, f"the `{search}` search"),
            stopper.get(scheduler, f"the `{scheduler}` scheduler stopped lagging trials early"))


def protocol_lines(summary: dict[str, Any], *, space: SearchSpace, options: RunOptions,
                   segmentation: bool) -> list[str]:
    """How the final model was chosen, step by step, with this run's numbers."""
    sweep, metric = options.sweep, space.metric
    proposer, stopper = _methods_text(options)
    seeds = retrain_seeds(sweep.seed, options.retrain_seeds)
    fixed = [f"`{k}` = {_fmt(v)}" for k, v in options.overrides.items() if k in space.search]
    rule = RULES.get(space.threshold_rule, space.threshold_rule)
    threshold = ("fixed at 0.5 on the foreground probability (segmentation)" if segmentation
                 else f"chosen on the final model's val predictions by {rule}")
    lines = ["## Selection protocol", "",
             f"1. **Searched** (distributions of the `{space.name}` space):", ""]
    lines += ["   " + line for line in _table(
        ["parameter", "distribution"],
        [[f"`{k}`", describe(d)] for k, d in searched(space, options).items()])]
    if fixed:
        lines += ["   Fixed for this run, not searched: " + ", ".join(fixed) + ".", ""]
    lines += [
        f"2. **Sweep on train/val only**: {proposer} proposed {sweep.num_samples} configs "
        f"(seed {sweep.seed}, also every trial's training seed); each trained on the train split "
        f"for at most {sweep.max_epochs} epochs and reported `{metric}` on the **val** split "
        f"after every epoch; {stopper}. A trial's score is its best `{metric}` over its epochs "
        "so far: the number the search learned from, the scheduler compared and the top-k "
        "ranked. The test split never entered the sweep.",
        f"3. **Retrain**: the top {options.top_k} distinct configs by that score were retrained "
        f"with {len(seeds)} seed(s) each ({', '.join(map(str, seeds))}; none is the sweep's, so "
        "no retrain replays a trial), with the same training code as the sweep.",
        f"4. **Final model**: the config with the best mean `{metric}` over its seeds "
        "(leaderboard row 1), and of its seeds the one with the best val score "
        f"(seed {summary['chosen_seed']}).",
        f"5. **Threshold**: {threshold}.",
        "6. **Test read once**: each retrained model predicted the test split once, after its "
        "training; those predictions played no part in any choice above. The test metrics are "
        "the final model's; the other finalists' are kept only for audit.", ""]
    return lines


def leaderboard_lines(path: Path, *, space: SearchSpace) -> list[str]:
    """The retrained configs by val (mean ± sd over seeds), then the other finalists' test
    numbers apart, for audit only."""
    board = pd.read_csv(path)
    metric = space.metric
    names = [c[len("test/"):-len("_mean_over_seeds")] for c in board
             if c.startswith("test/") and c.endswith("_mean_over_seeds")]
    rows = [["final" if i == 0 else "", int(row["rank"]) + 1, int(row["seeds"]),
             f"{number(row[f'{metric}_mean'])} ± {number(row[f'{metric}_sd'])}"]
            for i, row in board.iterrows()]
    audit = [[int(row["rank"]) + 1, int(row["seeds"]),
              *[f"{number(row[f'test/{n}_mean_over_seeds'])} ± {number(row[f'test/{n}_sd_over_seeds'])}"
                for n in names]] for i, row in board.iterrows() if i > 0]
    lines = (["## Leaderboard", "",
              "Each retrained config (its rank in the sweep, 1 = best trial), mean ± sd over seeds "
              f"of `{metric}` on val, sorted by that mean; the first row is the final model's "
              "config.", ""]
             + _table(["", "sweep rank", "seeds", metric], rows))
    if audit:
        lines += ["### Other finalists on test (audit only: choosing on these invalidates the "
                  "intervals)", "",
                  "Mean ± sd over seeds. The final model was chosen on val before these were read; "
                  "picking a config by them would make the test split a selection set and its "
                  "intervals optimistic.", ""]
        lines += _table(["sweep rank", "seeds", *[f"test {n}" for n in names]], audit)
    return lines


def _attempt(notes: list[str], name: str, make: Callable[[], Any]) -> Any:
    """Run one plot: its result, or (as ``str``) the reason it was skipped or failed."""
    try:
        return make()
    except Skipped as reason:
        return str(reason)
    except Exception as err:  # noqa: BLE001 - one broken plot must not lose the report
        log.warning("report: the %s plot failed", name, exc_info=True)
        notes.append(f"The {name} plot failed: {type(err).__name__}: {err}")
        return f"failed ({type(err).__name__}); see Notes"


def _section(title: str, caption: str, outcome: Any, folder: Path) -> list[str]:
    """A markdown section embedding the PNG(s), or saying why there is none."""
    lines = [f"### {title}", "", caption, ""]
    if isinstance(outcome, str) or not outcome:
        return lines + [f"_Not drawn: {outcome or 'nothing to show'}._", ""]
    for path in outcome if isinstance(outcome, list) else [outcome]:
        lines += [f"![{title}]({Path(path).relative_to(folder).as_posix()})", ""]
    return lines


def sweep_sections(folder: Path, *, space: SearchSpace, options: RunOptions,
                   trials: pd.DataFrame, histories: Mapping[str, pd.DataFrame],
                   notes: list[str]) -> list[str]:
    """Best-so-far, parameters, importance, ASHA outcomes and the top trials' learning curves."""
    out, metric, mode = folder / "plots", space.metric, space.mode
    dists = searched(space, options)

    def progress() -> Path:
        curve = best_so_far(histories, metric=metric, mode=mode)
        if curve.empty:
            raise Skipped(f"no per-trial histories with {metric} under {folder / 'sweep'}")
        return plots.plot_best_so_far({folder.name: curve}, out / "best_so_far.png", metric=metric,
                                      mode=mode, title=f"Sweep progress: best {metric} so far")

    def importance() -> Path:
        scores = param_importance(trials, dists, metric=metric, mode=mode)
        n = int(pd.to_numeric(trials[f"best_{metric}"], errors="coerce").notna().sum())
        return plots.plot_importance(scores, out / "importance.png", metric=metric, n_trials=n)

    def curves() -> Path:
        top = [t for t in dict.fromkeys(trials["trial_id"]) if t in histories][:TOP_CURVES]
        if not top:
            raise Skipped("no per-trial histories")
        return plots.plot_learning_curves(histories, top, out / "learning_curves.png",
                                          metric=metric, mode=mode)

    items = [
        ("Best val metric so far", "Every epoch of every trial, in the order they finished "
         "(x: cumulative trial-epochs, the sweep's cost).", "best-so-far", progress),
        ("Searched parameters", f"Each trial's best `{metric}` against its parameter values.",
         "parameters", lambda: plots.plot_parameters(trials, dists, out / "parameters.png",
                                                     metric=metric)),
        ("Parameter importance", "Optuna's fANOVA on an in-memory study of the finished trials "
         "(ASHA-stopped ones scored by their best epoch so far); with few trials, a rough guide.",
         "importance", importance),
        ("Early stopping", "Epochs each ASHA-stopped trial reached, and every trial's outcome.",
         "stopping", lambda: plots.plot_stopping(trials, out / "stopping.png",
                                                 max_epochs=options.sweep.max_epochs)),
        (f"Learning curves of the top {TOP_CURVES} trials", f"`{metric}` and val loss per epoch "
         "of the best sweep trials.", "learning-curves", curves)]
    lines = ["## Sweep", ""]
    for title, caption, name, make in items:
        lines += _section(title, caption, _attempt(notes, name, make), folder)
    return lines


def final_sections(folder: Path, *, test_labels: np.ndarray, segmentation: bool,
                   notes: list[str]) -> list[str]:
    """The final model on test: ROC/PR and confusion matrix, or overlays and a Dice histogram."""
    out, best = folder / "plots", folder / "best"
    lines = ["## Final model on test", ""]
    try:
        threshold = float(json.loads((best / "threshold.json").read_text(encoding="utf-8"))["threshold"])
        with np.load(best / "predictions.npz") as saved:
            test_p = saved["test"]
    except (OSError, KeyError, ValueError) as err:
        notes.append(f"best/ could not be read: {type(err).__name__}: {err}")
        return lines + ["_Not drawn: best/threshold.json or best/predictions.npz unreadable._", ""]
    if segmentation:
        overlays = sorted((folder / "overlays").glob("*.png"))
        items = [("Test overlays", "Test images, true outline green, predicted red, Dice in the "
                  "title.", "overlays", lambda: overlays or "no overlay PNGs in overlays/"),
                 ("Per-image Dice", "Dice of each test image at the 0.5 threshold.", "dice",
                  lambda: plots.plot_dice_histogram(test_labels, test_p, out / "dice_hist.png",
                                                    threshold=threshold))]
    else:
        items = [("ROC and precision-recall", "Test curves of the final model; the red dot is the "
                  "threshold chosen on val.", "roc-pr",
                  lambda: plots.plot_test_curves(test_labels, test_p, threshold,
                                                 out / "test_roc_pr.png")),
                 ("Confusion matrix", f"Test cases at threshold {threshold:.3f}.", "confusion",
                  lambda: plots.plot_confusion(test_labels, test_p, threshold,
                                               out / "test_confusion.png"))]
    for title, caption, name, make in items:
        lines += _section(title, caption, _attempt(notes, name, make), folder)
    return lines


def write_report(folder: Path, *, space: SearchSpace, test_labels: np.ndarray,
                 options: RunOptions | None = None,
                 histories: Mapping[str, pd.DataFrame] | None = None) -> Path:
    """Write ``report.md`` and ``plots/*.png`` into a finished run's folder; returns the report.

    test_labels: (N,) 0/1 or (N, H, W) masks, row i matching ``best/predictions.npz``'s test.
    histories: per-trial epoch results by trial id (default: read from ``folder/sweep``).
    """
    folder = Path(folder)
    options = options or load_options(folder)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    trials = read_trials(folder)
    histories = read_histories(folder / "sweep") if histories is None else histories
    labels = np.asarray(test_labels)
    notes: list[str] = []
    plots_md = sweep_sections(folder, space=space, options=options, trials=trials,
                              histories=histories, notes=notes)
    segmentation = get_task(space.fixed["data/task"]).kind == "segmentation"
    plots_md += final_sections(folder, test_labels=labels, segmentation=segmentation, notes=notes)
    text = [f"# Run report: {folder.name}", "",
            *summary_lines(summary, space=space, options=options, segmentation=segmentation),
            *protocol_lines(summary, space=space, options=options, segmentation=segmentation),
            *leaderboard_lines(folder / "leaderboard.csv", space=space), *plots_md]
    if notes:
        text += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    path = folder / "report.md"
    path.write_text("\n".join(text), encoding="utf-8")
    log.info("report: %s (%d plot problem(s))", path, len(notes))
    return path
