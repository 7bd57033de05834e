"""Test-split figures drawn by scikit-learn's displays on Agg figures, never through pyplot."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from tuning.results import plots


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40, int), np.ones(20, int)]
    p = np.clip(0.35 * y + rng.normal(0.35, 0.2, len(y)), 0, 1)
    return y, p


@pytest.fixture
def drawn(monkeypatch):
    figures = []
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or real_save(fig, path))
    return figures


def _no_pyplot_figures() -> bool:
    pyplot = sys.modules.get("matplotlib.pyplot")
    return pyplot is None or pyplot.get_fignums() == []


def test_roc_pr_figure_shows_the_curves_and_the_threshold(tmp_path, scores, drawn):
    y, p = scores
    path = plots.plot_test_curves(y, p, 0.5, tmp_path / "plots" / "test_roc_pr.png")
    assert path.name == "test_roc_pr.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    left, right = drawn[0].axes
    roc_legend = " ".join(t.get_text() for t in left.get_legend().get_texts())
    pr_legend = " ".join(t.get_text() for t in right.get_legend().get_texts())
    assert f"{roc_auc_score(y, p):.2f}" in roc_legend and "threshold 0.500" in roc_legend
    assert f"{average_precision_score(y, p):.2f}" in pr_legend
    marked = left.collections[-1].get_offsets()[0]
    pred = p >= 0.5
    assert marked[0] == pytest.approx((pred & (y == 0)).sum() / 40)
    assert marked[1] == pytest.approx((pred & (y == 1)).sum() / 20)
    assert _no_pyplot_figures()


def test_confusion_figure_counts_at_the_threshold(tmp_path, scores, drawn):
    y, p = scores
    plots.plot_confusion(y, p, 0.5, tmp_path / "test_confusion.png")
    assert (tmp_path / "test_confusion.png").stat().st_size > 1000
    texts = {t.get_text().split()[0]: int(t.get_text().split()[1]) for t in drawn[0].axes[0].texts}
    pred = p >= 0.5
    assert texts == {"TN": int((~pred & (y == 0)).sum()), "FP": int((pred & (y == 0)).sum()),
                     "FN": int((~pred & (y == 1)).sum()), "TP": int((pred & (y == 1)).sum())}
    assert _no_pyplot_figures()
