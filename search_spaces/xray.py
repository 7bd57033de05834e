"""Pneumonia from chest X-rays (Kermany layout) with a MONAI 2D classifier trained from scratch.

Defaults follow the seed project and CheXNet-style practice: MONAI DenseNet121 (or
EfficientNet-B0), random init, 224x224 grey input, weighted BCE (inverse class frequency of
the training split), Adam lr 1e-3, batch 16, seed 42; the dataset's own test/ is the test
split, val is split from train by patient when val/ is missing or tiny. Selection: val AUROC;
the decision threshold is the best F1 on the val precision-recall curve.
"""
from core.metrics import VAL_AUROC
from search_spaces.types import SearchSpace, choice, loguniform, randint, uniform

FIXED = {
    "data/task": "xray",
    "data/shape": (224, 224),
    "data/split": (0.80, 0.20, 0.0),  # train / val shares when val is split from train; test: test/
    "model/name": "densenet121",
    "model/dropout": 0.0,
    "loss/name": "weighted_bce",
    "optim/lr": 1e-3,
    "optim/weight_decay": 0.0,
    "train/batch_size": 16,
    "train/max_epochs": 40,
    "train/patience": 10,
}

SEARCH = {
    "optim/lr": loguniform(1e-5, 1e-2),
    "optim/weight_decay": loguniform(1e-6, 1e-2),
    "train/batch_size": choice(8, 16, 32),
    "model/dropout": uniform(0.0, 0.5),
    "model/name": choice("densenet121", "efficientnet-b0"),
    "train/patience": randint(3, 15),
}

# 64x64 films and a short budget: a few minutes on two CPUs.
QUICK = {"data/shape": (64, 64), "train/max_epochs": 8}

SPACE = SearchSpace("xray", FIXED, SEARCH, metric=VAL_AUROC, mode="max", quick=QUICK,
                    threshold_rule="f1")
