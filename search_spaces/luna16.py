"""LUNA16 nodule candidate classification (nodule vs not) with the seed's small 3D CNN.

Defaults follow the LUNA16 nodule classifier seed: cutouts of 32x48x48 voxels (z, y, x) around
each candidate, HU clipped to [-1000, 1000]; a tail BatchNorm, 4 blocks of two 3x3x3 conv + ReLU
then MaxPool 2, widths 8-16-32-64, a linear head with softmax, cross-entropy; Adam lr 1e-3,
batch 64; 1 positive : 5 negatives drawn afresh each epoch; flip/offset/scale/rotate/noise
augmentation. Splits 70/15/15 by series (patient). Cached pool: every positive plus 20 seeded
negatives per positive and split (LUNA16 has ~550k candidates for ~1.3k nodules). Selection: val AUROC.
"""
from core.metrics import VAL_AUROC
from search_spaces.types import SearchSpace, choice, loguniform, randint, uniform

FIXED = {
    "data/task": "luna16",
    "data/shape": (32, 48, 48),
    "data/hu_window": (-1000.0, 1000.0),
    "data/split": (0.70, 0.15, 0.15),
    "data/negative_ratio": 5.0,
    "data/negative_pool_ratio": 20.0,
    "data/augment": True,
    "model/name": "luna3d",
    "model/channels": (8, 16, 32, 64),
    "model/kernel_size": 3,
    "model/pool_size": 2,
    "model/dropout": 0.0,
    "loss/name": "cross_entropy",
    "optim/lr": 1e-3,
    "optim/weight_decay": 0.0,
    "train/batch_size": 64,
    "train/max_epochs": 40,
    "train/patience": 10,
}

SEARCH = {
    "optim/lr": loguniform(5e-5, 5e-3),
    "optim/weight_decay": loguniform(1e-6, 1e-2),
    "train/batch_size": choice(8, 16, 32, 64),
    "model/dropout": uniform(0.0, 0.5),
    "model/kernel_size": choice(3, 5),
    "model/pool_size": choice(2, 3),
    "train/patience": randint(5, 20),
}

# A few-minute CPU run: 6 epochs, the seed's kernel 3, 2 negatives per positive per epoch instead
# of 5, and cutouts of 16x32x32 voxels instead of 32x48x48 (1/4.5 of the voxels and of an epoch's
# time). At 0.7 mm pixels and 2 mm slices that is 32 x 22 x 22 mm, wide enough for the phantom's
# nodules (at most 15.5 mm); a real scan's largest nodules (up to 30 mm) need the seed's size.
# Validation still scores every val candidate.
QUICK = {"train/max_epochs": 6, "model/kernel_size": 3, "data/negative_ratio": 2.0,
         "data/shape": (16, 32, 32)}

SPACE = SearchSpace("luna16", FIXED, SEARCH, metric=VAL_AUROC, mode="max", quick=QUICK)
