"""python benchmarks/surrogate.py --space egfr [--curves benchmarks/curves/egfr-hard.csv] [--folds 5]

A surrogate of a space's training (as HPOBench and LCBench build them), fitted on the learning
curves ``benchmarks/learning_curves.py`` records: for any config of the space, its per-epoch val
metric and val loss, the epoch its own early stopping (val loss, the config's patience) ends it,
and its seconds per epoch. A random forest over normalised params (log scale for log-uniform
ones, choices one-hot) predicts the whole curve at once; a seeded draw adds the out-of-fold
residual curve of one recorded config, so two seeds of a benchmark differ as two trainings would.

Run as a script it validates the surrogate on held-out configs (k-fold over configs): rank
correlation and mean absolute error of the predicted against the recorded best val metric.
"""
from __future__ import annotations

import argparse
import ast
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import KFold

from search_spaces.types import Choice, Distribution, LogUniform, SearchSpace

PARAM = "param/"


def default_curves(space: str) -> Path:
    """Where a space's recorded curves live: ``benchmarks/curves/<space>-hard.csv``."""
    return Path(__file__).resolve().parent / "curves" / f"{space}-hard.csv"


def read_curves(path: Path) -> pd.DataFrame:
    """A curves table (one row per config and epoch), checked for the columns the surrogate reads."""
    table = pd.read_csv(path)
    missing = {"config", "epoch", "metric", "val_loss", "seconds"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}; expected the output of "
                         "benchmarks/learning_curves.py")
    return table.sort_values(["config", "epoch"]).reset_index(drop=True)


def _plain(value: Any) -> Any:
    """A choice value as read from a CSV ("(16, 32)" -> (16, 32)) or proposed (list -> tuple)."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return tuple(value) if isinstance(value, list) else value


def _index(value: Any, options: tuple) -> int:
    """Which of a choice's options ``value`` is (numbers compare as floats: 8 == 8.0)."""
    value = _plain(value)
    for i, option in enumerate(options):
        if value == option or (isinstance(value, (int, float)) and isinstance(option, (int, float))
                               and float(value) == float(option)):
            return i
    raise ValueError(f"{value!r} is none of the choices {options}")


def encode(dist: Distribution, value: Any) -> list[float]:
    """One param as features in [0, 1]: log scale for log-uniform, one-hot for a choice."""
    if isinstance(dist, Choice):
        hot = [0.0] * len(dist.values)
        hot[_index(value, dist.values)] = 1.0
        return hot
    low, high, x = float(dist.low), float(dist.high), min(max(float(value), dist.low), dist.high)
    if isinstance(dist, LogUniform):
        low, high, x = np.log(low), np.log(high), np.log(x)
    return [(x - low) / (high - low)]


def features(space: SearchSpace, params: list[Mapping[str, Any]]) -> np.ndarray:
    """(n_configs, n_features) of flat ``group/key`` params; a value outside its range is clipped
    into it (the seed's zero weight decay sits at the log range's low end)."""
    return np.array([[f for key, dist in space.search.items() for f in encode(dist, p[key])]
                     for p in params], dtype=float)


def config_params(table: pd.DataFrame) -> pd.DataFrame:
    """One row of searched params per config, index = config id."""
    columns = [c for c in table.columns if c.startswith(PARAM)]
    first = table.groupby("config")[columns].first()
    return first.rename(columns=lambda c: c[len(PARAM):])


def curve_targets(table: pd.DataFrame, epochs: int) -> dict[str, np.ndarray]:
    """Per config: metric and val loss (n, epochs), held at their last value after the run
    stopped; ``stop`` (n,) the epochs it ran; ``seconds`` (n,) its mean seconds per epoch."""
    metric, loss, stop, seconds = [], [], [], []
    for _, rows in table.groupby("config"):
        rows = rows[rows["epoch"] <= epochs]
        held = len(rows)
        metric.append(np.pad(rows["metric"].ffill().bfill().to_numpy(float), (0, epochs - held), mode="edge"))
        loss.append(np.pad(rows["val_loss"].ffill().bfill().to_numpy(float), (0, epochs - held), mode="edge"))
        stop.append(held)
        seconds.append(float(rows["seconds"].mean()))
    return {"metric": np.array(metric), "val_loss": np.array(loss),
            "stop": np.array(stop, dtype=float), "seconds": np.array(seconds)}


@dataclass
class Curve:
    """One simulated training run: per-epoch val metric and val loss for ``stop`` epochs."""

    metric: np.ndarray  # (stop,) in [0, 1]
    val_loss: np.ndarray  # (stop,)
    stop: int
    seconds: float  # per epoch


class CurveSurrogate:
    """Predicts a config's learning curve from recorded ones; ``sample`` adds seeded noise."""

    def __init__(self, space: SearchSpace, table: pd.DataFrame, *, epochs: int | None = None,
                 seed: int = 0, noise: float = 1.0, folds: int = 5, trees: int = 200) -> None:
        self.space, self.seed, self.noise, self.trees = space, seed, noise, trees
        self.epochs = int(epochs or table["epoch"].max())
        params = config_params(table)
        self.x = features(space, params.to_dict("records"))
        raw = curve_targets(table, self.epochs)
        self.scale = np.array([raw["metric"].std() or 1.0, raw["val_loss"].std() or 1.0])
        self.y = self._targets(raw)
        self.model = self._forest(self.x, self.y)
        self.residuals = self.y - self._out_of_fold(folds)

    def _targets(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        """(n, 2 * epochs + 2): scaled metric curve, scaled loss curve, stop / epochs, log seconds."""
        return np.hstack([raw["metric"] / self.scale[0], raw["val_loss"] / self.scale[1],
                          (raw["stop"] / self.epochs)[:, None], np.log(raw["seconds"])[:, None]])

    def _forest(self, x: np.ndarray, y: np.ndarray) -> RandomForestRegressor:
        forest = RandomForestRegressor(n_estimators=self.trees, min_samples_leaf=2,
                                       max_features=0.5, random_state=self.seed, n_jobs=1)
        return forest.fit(x, y)

    def _out_of_fold(self, folds: int) -> np.ndarray:
        """Each config's prediction by a forest that never saw it (k-fold over configs)."""
        predicted = np.empty_like(self.y)
        splitter = KFold(n_splits=min(folds, len(self.x)), shuffle=True, random_state=self.seed)
        for train, held in splitter.split(self.x):
            predicted[held] = self._forest(self.x[train], self.y[train]).predict(self.x[held])
        return predicted

    def _decode(self, row: np.ndarray) -> Curve:
        e = self.epochs
        stop = int(np.clip(round(row[2 * e] * e), 1, e))
        metric = np.clip(row[:e] * self.scale[0], 0.0, 1.0)[:stop]
        loss = np.clip(row[e:2 * e] * self.scale[1], 0.0, None)[:stop]
        return Curve(metric=metric, val_loss=loss, stop=stop, seconds=float(np.exp(row[2 * e + 1])))

    def predict(self, params: list[Mapping[str, Any]]) -> list[Curve]:
        """The noise-free curves of ``params`` (flat ``group/key`` dicts of the searched keys)."""
        return [self._decode(row) for row in self.model.predict(features(self.space, params))]

    def sample(self, params: Mapping[str, Any], *, seed: int) -> Curve:
        """The curve of one training run of ``params``: the prediction plus the residual curve of
        a recorded config drawn by (seed, params), so a config gets one curve per seed and the
        methods of one seed see the same draw for the same config."""
        row = self.model.predict(features(self.space, [params]))[0]
        rng = np.random.default_rng([seed, zlib.crc32(repr(sorted(params.items())).encode())])
        return self._decode(row + self.noise * self.residuals[rng.integers(len(self.residuals))])


def best_of(curve: Curve) -> float:
    """The best val metric a run reaches before it stops."""
    return float(curve.metric.max())


def validate(space: SearchSpace, table: pd.DataFrame, *, folds: int = 5, seed: int = 0,
             draws: int = 5, trees: int = 200) -> dict[str, float]:
    """Held-out configs (k-fold over configs): Spearman rank correlation and MAE of the predicted
    against the recorded best val metric, the MAE of always predicting the training mean, the
    MAE of the stop epoch, and the rank correlation of single noisy draws (what a search sees)."""
    params = config_params(table)
    recorded = table.groupby("config")["metric"].max().loc[params.index].to_numpy()
    stops = table.groupby("config")["epoch"].max().loc[params.index].to_numpy()
    predicted, pred_stop, baseline = (np.empty(len(params)) for _ in range(3))
    drawn = np.empty((draws, len(params)))
    splitter = KFold(n_splits=min(folds, len(params)), shuffle=True, random_state=seed)
    for train, held in splitter.split(params):
        part = table[table["config"].isin(params.index[train])]
        model = CurveSurrogate(space, part, epochs=int(table["epoch"].max()), seed=seed, trees=trees)
        held_params = params.iloc[held].to_dict("records")
        curves = model.predict(held_params)
        predicted[held] = [best_of(c) for c in curves]
        pred_stop[held] = [c.stop for c in curves]
        baseline[held] = recorded[train].mean()
        for d in range(draws):
            drawn[d, held] = [best_of(model.sample(p, seed=d)) for p in held_params]
    return {"configs": len(params), "spearman": float(spearmanr(predicted, recorded).statistic),
            "mae": float(np.abs(predicted - recorded).mean()),
            "mae_mean_baseline": float(np.abs(baseline - recorded).mean()),
            "stop_mae_epochs": float(np.abs(pred_stop - stops).mean()),
            "spearman_noisy_draw": float(np.mean([spearmanr(d, recorded).statistic for d in drawn])),
            "recorded_best_iqr": float(np.subtract(*np.percentile(recorded, [75, 25])))}


def reach(table: pd.DataFrame, target: float) -> dict[str, float]:
    """How hard ``target`` is for a search, from the recorded curves: the share of configs whose
    run reaches it, the median epoch they first do, and the median epoch the others stop at (what
    a miss costs without early termination)."""
    first, stops = [], []
    for _, curve in table.groupby("config"):
        hit = curve.loc[curve["metric"] >= target, "epoch"]
        if len(hit):
            first.append(hit.min())
        else:
            stops.append(curve["epoch"].max())
    n = len(first) + len(stops)
    return {"target": target, "configs_reaching": f"{len(first)} of {n}", "share": len(first) / n,
            "median_first_epoch": float(np.median(first)) if first else float("nan"),
            "median_stop_epoch_of_misses": float(np.median(stops)) if stops else float("nan")}


def main() -> None:
    from search_spaces import get_space

    p = argparse.ArgumentParser()
    p.add_argument("--space", default="egfr")
    p.add_argument("--curves", type=Path, help="default: benchmarks/curves/<space>-hard.csv")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target-frac", type=float, nargs="*", default=[0.95, 0.99],
                   help="targets as fractions of the best recorded val, for the reach profile")
    opts = p.parse_args()
    space = get_space(opts.space)
    path = opts.curves or default_curves(opts.space)
    table = read_curves(path)
    result = validate(space, table, folds=opts.folds, seed=opts.seed)
    print(f"{opts.space} surrogate from {path}, {opts.folds}-fold over configs:")
    _show(result)
    for frac in opts.target_frac:
        print(f"{opts.space}: recorded configs against the target {frac:g} x the best recorded:")
        _show(reach(table, frac * float(table["metric"].max())))


def _show(result: dict[str, Any]) -> None:
    for key, value in result.items():
        print(f"  {key:28s} {value:.4f}" if isinstance(value, float) else f"  {key:28s} {value}")


if __name__ == "__main__":
    main()
