"""2D binary segmentation (images/ + masks/) with a MONAI UNet.

Defaults follow the seed project: MONAI UNet (channels 16-32-64-128-256, stride 2, two residual
units, 3x3 kernels) on 256x256 images, MONAI GeneralizedDiceLoss, Adam lr 1e-3, batch 8,
60/20/20 split, seed 42. Selection: val Dice (mean per image, threshold 0.5).
"""
from core.metrics import VAL_DICE
from search_spaces.types import SearchSpace, choice, loguniform, randint, uniform

FIXED = {
    "data/task": "segmentation",
    "data/shape": (256, 256),
    "data/split": (0.60, 0.20, 0.20),
    "data/augment": True,  # flips, offsets, scaling, rotation, noise; masks follow (nearest)
    "model/name": "unet",
    "model/channels": (16, 32, 64, 128, 256),
    "model/kernel_size": 3,
    "model/num_res_units": 2,
    "model/dropout": 0.0,
    "loss/name": "generalized_dice",
    "optim/lr": 1e-3,
    "optim/weight_decay": 0.0,
    "train/batch_size": 8,
    "train/max_epochs": 100,
    "train/patience": 20,
}

SEARCH = {
    "optim/lr": loguniform(1e-4, 1e-2),
    "optim/weight_decay": loguniform(1e-7, 1e-3),
    "train/batch_size": choice(4, 8, 16),
    "model/dropout": uniform(0.0, 0.3),
    "model/channels": choice((16, 32, 64, 128, 256), (16, 32, 64, 128), (8, 16, 32, 64),
                             (32, 64, 128, 256)),
    "model/kernel_size": choice(3, 5),
    "train/patience": randint(5, 30),
}

# 64x64 images and a short budget: a few minutes on two CPUs (every channel choice fits 64).
QUICK = {"data/shape": (64, 64), "train/max_epochs": 40}

SPACE = SearchSpace("segmentation", FIXED, SEARCH, metric=VAL_DICE, mode="max", quick=QUICK)
