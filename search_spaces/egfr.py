"""EGFR mutation status from CT with a small 3D CNN.

Defaults follow the seed project: 3 conv layers (kernel 2, stride 1, pad 1) each
ReLU -> BatchNorm -> MaxPool(3), dropout 0.3, two FC layers; weighted BCE; Adam lr 3e-4;
batch 32; early-stopping patience 20; 70/15/15 split; seed 42. Selection: val AUROC.
Scans are resampled to 1.25 mm before the crop (the seed resized a margin box, which stretches
anisotropic voxels).
"""
from core.metrics import VAL_AUROC
from search_spaces.types import SearchSpace, choice, loguniform, randint, uniform

FIXED = {
    "data/task": "egfr",
    "data/shape": (32, 32, 32),
    "data/spacing": (1.25, 1.25, 1.25),  # (z, y, x) mm: a 40 mm box around the tumour, unstretched
    "data/hu_window": (-1000.0, 400.0),
    "data/split": (0.70, 0.15, 0.15),
    "model/name": "cnn3d",
    "model/channels": (16, 32, 64),
    "model/kernel_size": 2,
    "model/pool_size": 3,
    "model/dropout": 0.3,
    "loss/name": "weighted_bce",
    "optim/lr": 3e-4,
    "optim/weight_decay": 0.0,
    "train/batch_size": 32,
    "train/max_epochs": 60,
    "train/patience": 20,
}

SEARCH = {
    "optim/lr": loguniform(1e-5, 1e-2),
    "optim/weight_decay": loguniform(1e-6, 1e-2),
    "train/batch_size": choice(8, 16, 32, 64),
    "model/dropout": uniform(0.0, 0.6),
    "model/kernel_size": choice(2, 3, 5),
    "model/pool_size": choice(2, 3),
    "train/patience": randint(5, 30),
}

# --quick: 10 epochs a trial; with the shared quick preset about 3 minutes on 2 CPU cores
QUICK = {"train/max_epochs": 10}

SPACE = SearchSpace("egfr", FIXED, SEARCH, metric=VAL_AUROC, mode="max", quick=QUICK)
