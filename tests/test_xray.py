"""Chest X-rays: Kermany layout, patient ids, patient-disjoint splits, 2D classifiers, weights, a sweep."""
from __future__ import annotations

import hashlib
import logging
from collections import Counter

import numpy as np
import pytest
import torch

from core.config import DataConfig, ModelConfig
from core.data.phantoms.xray import xray_phantom
from core.data.prepared import DataOptions
from core.errors import DataError
from core.imageio import read_image_2d, write_image_2d
from core.models import build_model
from core.monai_nets import load_weights
from core.tasks import prepare
from core.tasks.xray import (
    MIN_VAL_IMAGES,
    TASK,
    assign_splits,
    find_kermany_root,
    patient_of,
    read_xray_manifest,
)

FILM = (np.random.default_rng(0).random((20, 24)) * 255).astype(np.uint8)


@pytest.mark.parametrize("name,patient,subtype", [
    ("person12_bacteria_45.jpeg", "person12", "bacteria"),
    ("person1_virus_6.jpeg", "person1", "virus"),
    ("person1946_bacteria_4874.jpeg", "person1946", "bacteria"),
    ("IM-0115-0001.jpeg", "IM-0115", None),
    ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427", None),
    ("NORMAL2-IM-0588-0001-0002.jpeg", "NORMAL2-IM-0588", None),
    ("scan_7.png", "scan_7", None),
])
def test_patient_id_from_kermany_file_names(name, patient, subtype):
    assert patient_of(name) == (patient, subtype)


def _kermany(root, files: dict[str, list[str]], *, rgb_every: int = 3):
    """Write ``{"train/NORMAL": [names], ...}`` as small JPEG films (every third one RGB)."""
    for k, (folder, names) in enumerate(files.items()):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            film = FILM if (i + k) % rgb_every else np.repeat(FILM[..., None], 3, axis=-1)
            write_image_2d(film, root / folder / name)
    return root


def _normals(first: int, n: int) -> list[str]:
    return [f"IM-{first + i:04d}-0001.jpeg" for i in range(n)]


def _pneumonias(first: int, n: int, per_patient: int = 1) -> list[str]:
    return [f"person{first + i}_{'virus' if i % 3 == 0 else 'bacteria'}_{10 * i + j}.jpeg"
            for i in range(n) for j in range(per_patient)]


def test_manifest_reads_nested_layout_and_ignores_macos_litter(tmp_path):
    base = tmp_path / "chest_xray" / "chest_xray"
    _kermany(base, {"train/NORMAL": _normals(1, 3), "train/PNEUMONIA": _pneumonias(1, 2, 2),
                    "test/normal": _normals(50, 2), "test/Pneumonia": _pneumonias(50, 2)})
    (tmp_path / "__MACOSX" / "chest_xray").mkdir(parents=True)
    (base / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0")
    (base / "train" / "NORMAL" / "._IM-0001-0001.jpeg").write_bytes(b"\0")
    assert find_kermany_root(tmp_path) == base
    manifest = read_xray_manifest(tmp_path)
    assert len(manifest) == 3 + 4 + 2 + 2
    assert set(manifest["folder"]) == {"train", "test"}
    pneumonia = manifest[manifest["label"] == 1]
    assert pneumonia["group"].str.startswith("person").all()
    assert set(pneumonia["subtype"]) == {"bacteria", "virus"}
    assert set(manifest.loc[manifest["label"] == 0, "subtype"]) == {"normal"}
    assert manifest[manifest["folder"] == "train"].groupby("group").size().max() == 2


def test_val_is_split_from_train_by_patient_when_absent(tmp_path):
    root = _kermany(tmp_path, {"train/NORMAL": _normals(1, 10), "train/PNEUMONIA": _pneumonias(1, 10, 3),
                               "test/NORMAL": _normals(100, 3), "test/PNEUMONIA": _pneumonias(100, 3)})
    splits = assign_splits(read_xray_manifest(root), val_fraction=0.2, seed=0)
    assert splits.groupby("group")["split"].nunique().max() == 1
    val = splits[splits["split"] == "val"]
    assert val.groupby("label")["group"].nunique().to_dict() == {0: 2, 1: 2}
    assert (splits.loc[splits["folder"] == "test", "split"] == "test").all()
    again = assign_splits(read_xray_manifest(root), val_fraction=0.2, seed=0)
    assert list(again["split"]) == list(splits["split"])


def test_a_patient_in_two_splits_moves_whole_to_the_held_out_one(tmp_path, caplog):
    files = {"train/NORMAL": _normals(1, 8), "train/PNEUMONIA": _pneumonias(1, 8),
             "test/NORMAL": _normals(100, 3), "test/PNEUMONIA": _pneumonias(100, 3)}
    files["train/PNEUMONIA"] += ["person100_bacteria_900.jpeg", "person100_bacteria_901.jpeg"]
    root = _kermany(tmp_path, files)
    with caplog.at_level(logging.WARNING):
        splits = assign_splits(read_xray_manifest(root), val_fraction=0.25, seed=0)
    assert "person100" in caplog.text and "two splits" in caplog.text
    assert set(splits.loc[splits["group"] == "person100", "split"]) == {"test"}
    assert splits.groupby("group")["split"].nunique().max() == 1


def test_a_tiny_val_is_folded_into_train_and_a_large_one_is_kept(tmp_path):
    base = {"train/NORMAL": _normals(1, 12), "train/PNEUMONIA": _pneumonias(1, 12),
            "test/NORMAL": _normals(200, 2), "test/PNEUMONIA": _pneumonias(200, 2)}
    tiny = _kermany(tmp_path / "tiny", {**base, "val/NORMAL": _normals(300, 2),
                                        "val/PNEUMONIA": _pneumonias(300, 2)})
    splits = assign_splits(read_xray_manifest(tiny), val_fraction=0.25, seed=0)
    assert (splits["split"] == "val").sum() == 6  # 3 + 3 patients carved from 14 + 14 (val/ folded in)
    n = MIN_VAL_IMAGES // 2 + 1
    large = _kermany(tmp_path / "large", {**base, "val/NORMAL": _normals(300, n),
                                          "val/PNEUMONIA": _pneumonias(300, n)})
    splits = assign_splits(read_xray_manifest(large), val_fraction=0.25, seed=0)
    assert (splits["split"] == "val").sum() == 2 * n
    assert (splits.loc[splits["split"] == "val", "folder"] == "val").all()


@pytest.mark.parametrize("problem,message", [
    ("empty-class", "holds no .jpeg"), ("no-test", "no test/"), ("extra-class", "COVID"),
    ("no-train", "No train/"),
])
def test_broken_layouts_raise_a_data_error(tmp_path, problem, message):
    files = {"train/NORMAL": _normals(1, 2), "train/PNEUMONIA": _pneumonias(1, 2),
             "test/NORMAL": _normals(9, 2), "test/PNEUMONIA": _pneumonias(9, 2)}
    if problem == "no-test":
        files = {k: v for k, v in files.items() if not k.startswith("test")}
    if problem == "extra-class":
        files["train/COVID"] = ["covid_1.jpeg"]
    if problem == "no-train":
        files = {k.replace("train", "training"): v for k, v in files.items()}
    root = _kermany(tmp_path, files)
    if problem == "empty-class":
        for film in (root / "test" / "NORMAL").iterdir():
            film.unlink()
        (root / "test" / "NORMAL" / ".DS_Store").write_bytes(b"\0")
    with pytest.raises(DataError, match=message):
        read_xray_manifest(root)


def test_prepare_xray_on_the_phantom(tmp_path):
    root = xray_phantom(tmp_path / "phantoms", scale=0.15, seed=2)
    data = prepare(TASK, DataConfig(task="xray", shape=(32, 32), split=(0.8, 0.2, 0.0)),
                   DataOptions(root=root, cache_dir=tmp_path), seed=0)
    for split in ("train", "val", "test"):
        x, y = data.arrays[f"{split}/x"], data.arrays[f"{split}/y"]
        assert x.shape[1:] == (1, 32, 32) and x.dtype == np.float16 and y.dtype == np.int64
        assert set(np.unique(y)) == {0, 1} and 0 <= x.min() and x.max() <= 1
    assert data.splits.groupby("group")["split"].nunique().max() == 1
    assert {"subtype", "folder"} <= set(data.splits.columns)


def _films(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpeg"))


def test_easy_phantom_keeps_its_layout_and_hard_differs(tmp_path):
    easy = xray_phantom(tmp_path, scale=0.1, seed=3, difficulty="easy")
    hard = xray_phantom(tmp_path, scale=0.1, seed=3, difficulty="hard")
    names = _films(easy)  # the easy set as first released: same files for the same seed
    assert hashlib.sha256("\n".join(names).encode()).hexdigest()[:16] == "a3fdd2f4fba5c7f9"
    assert Counter(n.rsplit("/", 1)[0] for n in names) == {
        "chest_xray/train/NORMAL": 13, "chest_xray/train/PNEUMONIA": 15, "chest_xray/val/NORMAL": 8,
        "chest_xray/val/PNEUMONIA": 8, "chest_xray/test/NORMAL": 6, "chest_xray/test/PNEUMONIA": 3}
    patients = read_xray_manifest(hard).groupby(["folder", "label"])["group"].nunique()
    assert patients["train"].to_dict() == {0: 3, 1: 7}  # hard train leans to pneumonia, as Kermany does
    films = _films(hard)
    assert films != names
    shared = sorted(set(films) & set(names))
    assert shared and not any(np.array_equal(read_image_2d(easy / n), read_image_2d(hard / n))
                              for n in shared)


@pytest.mark.parametrize("name", ["densenet121", "efficientnet-b0"])
@pytest.mark.parametrize("shape,channels", [((32, 32), 1), ((40, 56), 3)])
def test_2d_classifiers_give_one_logit_per_image(name, shape, channels):
    net = build_model(ModelConfig(name=name, dropout=0.2), spatial_shape=shape, in_channels=channels,
                      out_channels=1).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, channels, *shape)).shape == (2, 1)


@pytest.mark.parametrize("name,head", [("densenet121", "class_layers.out"), ("efficientnet-b0", "_fc")])
def test_local_weights_load_except_a_head_of_another_size(tmp_path, caplog, name, head):
    source = build_model(ModelConfig(name=name), spatial_shape=(32, 32), out_channels=3)
    path = tmp_path / "pretrained.pt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}}, path)
    with caplog.at_level(logging.WARNING):
        net = build_model(ModelConfig(name=name, weights=str(path)), spatial_shape=(32, 32),
                          out_channels=1)
    assert f"{head}.weight" in caplog.text
    mine, theirs = net.state_dict(), source.state_dict()
    same = [k for k in mine if mine[k].shape == theirs[k].shape]
    assert len(same) == len(mine) - 2
    assert all(torch.equal(mine[k], theirs[k]) for k in same)


def test_missing_or_foreign_weights_raise(tmp_path):
    cfg = ModelConfig(name="densenet121", weights=str(tmp_path / "nope.pt"))
    with pytest.raises(DataError, match="nope.pt"):
        build_model(cfg, spatial_shape=(32, 32))
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="fits none"):
        load_weights(build_model(ModelConfig(name="densenet121"), spatial_shape=(32, 32)),
                     tmp_path / "other.pt")


@pytest.mark.slow
def test_a_two_trial_sweep_runs_end_to_end(ray_local, tmp_path):
    import pandas as pd

    from tuning.config.options import RunOptions
    from tuning.pipeline import run_pipeline
    from tuning.search.settings import SweepSettings

    root = xray_phantom(tmp_path / "phantoms", scale=0.15, seed=2)
    options = RunOptions(
        space="xray", data=DataOptions(root=root, cache_dir=tmp_path / "cache"),
        sweep=SweepSettings(num_samples=2, max_epochs=1, max_concurrent=2, seed=1),
        overrides={"data/shape": (32, 32), "train/batch_size": 16},
        name="tiny-xray", results_dir=tmp_path / "results", top_k=1, retrain_seeds=1, wandb=False)
    payload = run_pipeline(options)
    assert payload["selection_metric"] == "val/auroc" and "auroc" in payload["test"]
    assert 0 <= payload["threshold"] <= 1
    splits = pd.read_csv(options.results_path() / "splits.csv")
    assert splits.groupby("group")["split"].nunique().max() == 1
    assert (splits.loc[splits["folder"] == "test", "split"] == "test").all()
