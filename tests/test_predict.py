"""``python -m tuning.predict``: any format the space reads, the training preprocessing, a row per input."""
import numpy as np
import pandas as pd
import pytest

from core.evaluate import predict
from core.imageio import read_image_2d, read_volume, voxel_to_world, write_volume
from core.model_folder import load_model_folder
from core.tasks.egfr import load_case
from core.tasks.luna16 import cutout, window
from core.tasks.segmentation import load_image
from tests.model_folders import (
    EGFR,
    GEOMETRY,
    LUNA,
    ct_volume,
    random_model_folder,
    trained_segmentation_folder,
    write_case_folder,
    write_images,
)
from tuning.serve.predict import main


def model_probability(model, x: np.ndarray) -> np.ndarray:
    return predict(model.module, x[None, None])[0]


@pytest.fixture(scope="module")
def egfr(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("egfr")
    folder = random_model_folder(tmp / "run" / "best", EGFR, threshold=0.5)
    return load_model_folder(folder), write_case_folder(tmp / "inputs")


def read_rows(path):
    table = pd.read_csv(path)
    table["error"] = table["error"].fillna("")
    return {row["path"]: row for _, row in table.iterrows()}


def test_a_mixed_folder_predicts_each_good_case_and_reports_the_corrupt_one(egfr, tmp_path, capsys):
    model, paths = egfr
    out = tmp_path / "preds.csv"
    assert main([str(model.folder.parent), str(paths["nifti"].parent), "--out", str(out)]) == 1
    rows = read_rows(out)
    assert set(rows) == {str(paths[k]) for k in ("nifti", "nrrd", "dicom", "corrupt")}  # masks/ skipped
    for key in ("nifti", "nrrd", "dicom"):
        row = rows[str(paths[key])]
        mask = paths["mask"] if key == "nifti" else None
        expected = model_probability(model, load_case(paths[key], model.config.data, mask_path=mask))
        assert row["error"] == "" and row["probability"] == pytest.approx(float(expected), abs=1e-6)
        assert row["prediction"] == model.class_names[int(expected >= model.threshold)]
    assert rows[str(paths["nifti"])]["mask"] == str(paths["mask"])
    broken = rows[str(paths["corrupt"])]
    assert "Cannot read volume" in broken["error"] and np.isnan(broken["probability"])
    assert "3/4 inputs predicted" in capsys.readouterr().out


def test_files_named_one_by_one_and_a_missing_path(egfr, tmp_path):
    model, paths = egfr
    out = tmp_path / "preds.csv"
    missing = tmp_path / "nowhere.nii.gz"
    assert main([str(model.folder), str(paths["dicom"]), str(missing), "--out", str(out)]) == 1
    rows = read_rows(out)
    assert rows[str(paths["dicom"])]["error"] == "" and "does not exist" in rows[str(missing)]["error"]


def test_a_folder_that_is_not_a_model_exits_2(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path), "--out", str(tmp_path / "p.csv")]) == 2
    assert "model.json is missing" in capsys.readouterr().err


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("segmentation")
    return load_model_folder(trained_segmentation_folder(tmp / "run" / "best")), write_images(tmp / "images")


def test_segmentation_writes_a_mask_per_image_and_its_foreground_fraction(segmentation, tmp_path):
    model, paths = segmentation
    out = tmp_path / "preds.csv"
    assert main([str(model.folder), str(paths["png"].parent), "--out", str(out)]) == 1
    rows = read_rows(out)
    for key in ("png", "rgb", "jpeg"):
        row = rows[str(paths[key])]
        probabilities = model_probability(model, load_image(paths[key], shape=model.config.data.shape))
        assert row["probability"] == pytest.approx(float(probabilities.max()), abs=1e-6)
        assert row["foreground_fraction"] == pytest.approx(float((probabilities >= 0.5).mean()))
        mask = read_image_2d(row["mask_png"])
        assert mask.shape == read_image_2d(paths[key]).shape and set(np.unique(mask)) <= {0, 255}
        assert row["mask_png"].startswith(str(tmp_path / "preds_masks"))
    assert "Cannot read image" in rows[str(paths["corrupt"])]["error"]


def test_luna16_candidates_in_world_mm_become_one_row_each(tmp_path):
    model = load_model_folder(random_model_folder(tmp_path / "run" / "best", LUNA))
    volume = tmp_path / "series1.mhd"
    write_volume(ct_volume(4, shape=(20, 24, 22)), GEOMETRY, volume)
    points = voxel_to_world(np.array([[10.0, 12.0, 11.0], [2.0, 3.0, 20.0], [50.0, 0.0, 0.0]]), GEOMETRY)
    table = pd.DataFrame(points, columns=["coordX", "coordY", "coordZ"]).assign(seriesuid="series1")
    table.to_csv(tmp_path / "candidates.csv", index=False)
    out = tmp_path / "preds.csv"
    assert main([str(model.folder), str(volume), "--candidates", str(tmp_path / "candidates.csv"),
                 "--out", str(out)]) == 1
    rows = pd.read_csv(out).fillna({"error": ""})
    assert len(rows) == 3 and "outside" in rows.loc[2, "error"]
    hu, _ = read_volume(volume)
    cfg = model.config.data
    for i, centre in enumerate([(10, 12, 11), (2, 3, 20)]):
        x = window(cutout(hu, np.array(centre), cfg.shape, fill=cfg.hu_window[0]), cfg.hu_window)
        assert rows.loc[i, "probability"] == pytest.approx(float(model_probability(model, x)), abs=1e-6)
        assert rows.loc[i, "coordX"] == pytest.approx(points[i, 0])


def test_luna16_without_candidates_reads_each_volume_as_a_cutout(tmp_path):
    model = load_model_folder(random_model_folder(tmp_path / "run" / "best", LUNA))
    cfg = model.config.data
    path = tmp_path / "cutout.nii.gz"
    write_volume(ct_volume(6, shape=cfg.shape), GEOMETRY, path)
    out = tmp_path / "preds.csv"
    assert main([str(model.folder), str(path), "--out", str(out)]) == 0
    hu, _ = read_volume(path)
    expected = model_probability(model, window(hu, cfg.hu_window))
    assert pd.read_csv(out).loc[0, "probability"] == pytest.approx(float(expected), abs=1e-6)
