import numpy as np
import pytest
import torch

from core.losses import WeightedBCE, class_weights
from core.metrics import binary_metrics, binary_metrics_with_ci, pick_threshold, segmentation_scores


def test_class_weights_match_the_seed_for_a_1966_percent_positive_split():
    labels = np.array([1] * 1966 + [0] * 8034)
    assert class_weights(labels) == pytest.approx((0.1966, 0.8034))


def test_weighted_bce_weighs_each_sample_by_its_class():
    loss = WeightedBCE((0.2, 0.8))
    logits = torch.zeros(2, 1)
    per_sample = torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(1), torch.ones(1))
    assert loss(logits, torch.tensor([0, 1])).item() == pytest.approx(per_sample.item() * 0.5)
    assert loss(logits, torch.tensor([1, 1])).item() == pytest.approx(per_sample.item() * 0.8)


def test_binary_metrics_on_a_known_confusion():
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.2, 0.8, 0.1, 0.1])
    m = binary_metrics(y, p, 0.5)
    assert m["sensitivity"] == 0.5 and m["specificity"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(0.6) and m["auroc"] == pytest.approx(5 / 6)


def test_ci_brackets_the_point_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    out = binary_metrics_with_ci(y, p, 0.5, n_boot=200)
    for stat in out.values():
        assert stat["ci_low"] <= stat["value"] <= stat["ci_high"]


def test_threshold_is_picked_from_the_data_given():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.5, 0.9])
    assert 0.3 < pick_threshold(y, p) <= 0.35
    assert 0.3 < pick_threshold(y, p, rule="f1") <= 0.35


def test_segmentation_scores_per_image():
    masks = np.zeros((2, 4, 4)); masks[0, :2] = 1
    probs = np.zeros((2, 4, 4)); probs[0, :1] = 1
    scores = segmentation_scores(masks, probs)
    assert scores["dice"][0] == pytest.approx(2 * 4 / (8 + 4))
    assert scores["iou"][0] == pytest.approx(0.5)
    assert scores["dice"][1] == 1.0  # empty mask, empty prediction
