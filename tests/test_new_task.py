"""A fifth task added the way the README's recipe says, in this file only, and run end to end.

The task ("spheres": is there a bright ball in a small CT-like volume?) has its reader,
preprocessing, input loader and phantom here, its search space below, and is registered in the
test process and, through Ray's worker setup hook, in every trial process.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.data.cache import dataset_fingerprint
from core.data.phantoms.staging import generate_once
from core.data.prepared import DataOptions
from core.imageio import Geometry, read_volume, resize, write_volume
from core.metrics import VAL_AUROC
from core.tasks import get_task, register, task_names, unregister
from core.tasks.task import Task
from search_spaces.types import SearchSpace, loguniform

pytestmark = pytest.mark.slow

CLASSES = ("absent", "present")


def spheres_phantom(cache_dir: Path, *, n_cases: int = 24, seed: int = 0,
                    difficulty: str = "hard") -> Path:
    """``<root>/{absent,present}/<case>.nii.gz``: 12^3 noise volumes, half with a bright ball."""
    def generate(folder: Path) -> None:
        rng = np.random.default_rng(seed)
        grid = np.indices((12, 12, 12)).transpose(1, 2, 3, 0)
        for i in range(n_cases):
            label = i % 2
            volume = rng.normal(-800.0, 60.0, (12, 12, 12))
            if label:
                centre = rng.uniform(4, 8, 3)
                volume[np.linalg.norm(grid - centre, axis=-1) < 3] = 100.0
            write_volume(volume.astype(np.int16), Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                                                           (1, 0, 0, 0, 1, 0, 0, 0, 1)),
                         folder / CLASSES[label] / f"case{i:03d}.nii.gz")
    return generate_once(Path(cache_dir) / "phantoms" / f"spheres-{n_cases}-{seed}", generate,
                         meta={"seed": seed})


def read_manifest(root: Path, options: DataOptions) -> pd.DataFrame:
    rows = [{"id": p.name.split(".")[0], "group": p.name.split(".")[0], "label": label, "image": str(p)}
            for label, name in enumerate(CLASSES) for p in sorted((root / name).glob("*.nii.gz"))]
    return pd.DataFrame(rows)


def load_volume(path: Path, cfg: DataConfig) -> np.ndarray:
    volume, _ = read_volume(path)
    lo, hi = cfg.hu_window
    return resize((np.clip(volume, lo, hi) - lo) / (hi - lo), tuple(cfg.shape), mode="trilinear")


def preprocess(rows: pd.DataFrame, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    x = load_volume(Path(rows["image"].iat[0]), cfg)
    return x[None, None].astype(np.float32), rows["label"].to_numpy(np.int64)


def load_input(case, cfg: DataConfig, cache: dict):
    return load_volume(case.path, cfg)[None].astype(np.float32), None


TASK = Task(
    name="spheres", kind="classification", spatial_dims=3, class_names=CLASSES, group_unit="patient",
    read_manifest=read_manifest, preprocess=preprocess, load_input=load_input,
    phantom=spheres_phantom, cache_settings=lambda cfg, options, seed: {"shape": cfg.shape, "seed": seed},
    fingerprint=lambda root, selected, options: dataset_fingerprint(selected["image"]))

SPACE = SearchSpace(
    "spheres",
    fixed={"data/task": "spheres", "data/shape": (8, 8, 8), "model/name": "cnn3d",
           "model/channels": (4, 8), "model/kernel_size": 3, "model/pool_size": 2,
           "loss/name": "weighted_bce", "optim/lr": 3e-3, "train/batch_size": 8,
           "train/max_epochs": 2, "train/patience": 5},
    search={"optim/lr": loguniform(1e-3, 1e-2)}, metric=VAL_AUROC, mode="max")


def register_spheres() -> None:
    """Ray's worker setup hook: every trial process learns the task, as the test process does."""
    register(TASK)


@pytest.fixture
def spheres_registered():
    import ray

    ray.shutdown()
    register(TASK)
    root = str(Path(__file__).resolve().parents[1])  # the hook runs before Ray adds it to sys.path
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
             runtime_env={"worker_process_setup_hook": f"{__name__}.register_spheres",
                          "env_vars": {"PYTHONPATH": root}})
    yield
    ray.shutdown()
    unregister(TASK.name)


def test_a_registered_task_runs_end_to_end(spheres_registered, tmp_path):
    from tuning.config.options import RunOptions
    from tuning.pipeline import run_pipeline
    from tuning.search.settings import SweepSettings

    assert "spheres" in task_names() and get_task("spheres") is TASK
    options = RunOptions(
        space=SPACE, data=DataOptions(cache_dir=tmp_path / "cache"),
        sweep=SweepSettings(num_samples=2, max_epochs=2, max_concurrent=2, seed=1),
        name="spheres", results_dir=tmp_path / "results", top_k=1, retrain_seeds=1, wandb=False)
    payload = run_pipeline(options)
    folder = options.results_path()
    assert payload["space"] == "spheres" and 0.0 <= payload["test"]["auroc"]["value"] <= 1.0
    model = json.loads((folder / "best" / "model.json").read_text(encoding="utf-8"))
    assert model["task"] == "spheres" and model["class_names"] == list(CLASSES)
    splits = pd.read_csv(folder / "splits.csv")
    assert len(splits) == 24 and set(splits["split"]) == {"train", "val", "test"}


def test_an_unknown_task_names_the_known_ones():
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="egfr, luna16, segmentation, xray"):
        get_task("spherez")
