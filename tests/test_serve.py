"""The HTTP API (``tuning.serve``): each input kind answers, each bad upload gets a 4xx with a message."""
import base64
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
with warnings.catch_warnings():  # Starlette asks for httpx2 over httpx; both work here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from core.evaluate import predict  # noqa: E402
from core.imageio import read_volume, write_volume  # noqa: E402
from core.model_folder import load_model_folder  # noqa: E402
from core.tasks.egfr import load_case  # noqa: E402
from core.tasks.xray import load_xray  # noqa: E402
from tests.model_folders import (  # noqa: E402
    EGFR,
    XRAY,
    random_model_folder,
    trained_segmentation_folder,
    write_case_folder,
    write_images,
    zip_folder,
)
from tuning.serve.app import create_app  # noqa: E402

LIMIT = 1024 * 1024  # bytes
BASE = "http://127.0.0.1"  # a Host the server accepts


@pytest.fixture(scope="module")
def egfr(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-egfr")
    folder = random_model_folder(tmp / "egfr-run" / "best", EGFR, threshold=0.4)
    (folder / "metrics.json").write_text('{"val": {"val/auroc": 0.7}, "test": {"auroc": {"value": 0.6}}}')
    return folder, write_case_folder(tmp / "inputs")


@pytest.fixture(scope="module")
def egfr_client(egfr):
    with TestClient(create_app(egfr[0], max_upload_bytes=LIMIT), base_url=BASE) as client:
        yield client


@pytest.fixture
def upload_dir(tmp_path, monkeypatch):
    """Temporary files go here, so a test can see that none is left behind."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == []


def post(client, name, content, **extra):
    return client.post("/predict", files={"file": (name, content), **extra.pop("files", {})}, **extra)


def probability(folder, x):
    return float(predict(load_model_folder(folder).module, x[None, None])[0])


def test_health_and_model(egfr_client):
    assert egfr_client.get("/health").json() == {"status": "ok", "model": "egfr-run"}
    info = egfr_client.get("/model").json()
    assert info["class_names"] == ["Wildtype", "Mutant"] and info["threshold"] == 0.4
    assert info["config"]["data/shape"] == [12, 12, 12] and info["metrics"]["test"]["auroc"]["value"] == 0.6
    assert info["versions"]["torch"] and info["preprocessing"]["hu_window"] == [-1000.0, 400.0]


def test_a_volume_file_is_classified(egfr, egfr_client, upload_dir):
    folder, paths = egfr
    answer = post(egfr_client, "scan.nii.gz", paths["nifti"].read_bytes())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = probability(folder, load_case(paths["nifti"], load_model_folder(folder).config.data))
    assert body["probability"] == pytest.approx(expected, abs=1e-6)
    assert body["class"] == ["Wildtype", "Mutant"][expected >= 0.4] and body["threshold"] == 0.4
    assert body["model"] == "egfr-run" and "image_png_base64" not in body


def test_a_volume_with_its_tumour_mask(egfr, egfr_client, upload_dir):
    folder, paths = egfr
    answer = post(egfr_client, "a.nii.gz", paths["nifti"].read_bytes(),
                  files={"mask": ("m.nii.gz", paths["mask"].read_bytes())})
    cfg = load_model_folder(folder).config.data
    expected = probability(folder, load_case(paths["nifti"], cfg, mask_path=paths["mask"]))
    assert answer.json()["probability"] == pytest.approx(expected, abs=1e-6)


def test_a_zipped_dicom_series_is_classified(egfr, egfr_client, upload_dir, tmp_path):
    folder, paths = egfr
    archive = zip_folder(paths["dicom"], tmp_path / "series.zip", prefix="study/series/")
    answer = post(egfr_client, "series.zip", archive.read_bytes())
    assert answer.status_code == 200, answer.text
    expected = probability(folder, load_case(paths["dicom"], load_model_folder(folder).config.data))
    assert answer.json()["probability"] == pytest.approx(expected, abs=1e-6)


def test_a_zipped_mhd_with_its_raw_is_classified(egfr, egfr_client, upload_dir, tmp_path):
    folder, paths = egfr
    mhd = tmp_path / "mhd" / "scan.mhd"
    hu, geometry = read_volume(paths["nrrd"])
    write_volume(hu, geometry, mhd)
    answer = post(egfr_client, "scan.zip", zip_folder(mhd.parent, tmp_path / "scan.zip").read_bytes())
    expected = probability(folder, load_case(mhd, load_model_folder(folder).config.data))
    assert answer.status_code == 200 and answer.json()["probability"] == pytest.approx(expected, abs=1e-6)


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return out.getvalue()


@pytest.mark.parametrize("name,content,status,words", [
    ("notes.txt", b"hello", 415, "this model takes"),
    ("scan.mhd", b"ObjectType = Image", 415, "zip of it"),
    ("scan.nii.gz", b"\x1f\x8b garbage" * 30, 422, "Refused scan.nii.gz: cannot be read as gzip"),
    ("scan.nii.gz", b"", 422, "empty"),
    ("series.zip", b"PK\x03\x04 not a zip at all", 422, "not a readable zip"),
    ("series.zip", zip_of({"readme.txt": b"no images here"}), 422, "No DICOM series"),
    ("series.zip", zip_of({"../../evil.dcm": b"x"}), 400, "outside the upload folder"),
    ("series.zip", zip_of({"/etc/evil.dcm": b"x"}), 400, "outside the upload folder"),
    ("series.zip", zip_of({"ok/..\\..\\evil.dcm": b"x"}), 400, "outside the upload folder"),
])
def test_bad_uploads_get_a_4xx_with_a_message(egfr_client, upload_dir, name, content, status, words):
    answer = post(egfr_client, name, content)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["detail"]
    assert str(upload_dir) not in answer.json()["detail"]  # no server paths in messages


def test_an_upload_over_the_limit_is_refused_with_413(egfr_client, upload_dir):
    answer = post(egfr_client, "big.nii.gz", b"\0" * (LIMIT + 10))
    assert answer.status_code == 413 and "1 MiB" in answer.json()["detail"]


def test_the_limit_holds_without_a_content_length(egfr_client, upload_dir):
    boundary = "medtuneboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.nii.gz\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()

    def chunks():  # a streamed (chunked) body: the server must count the bytes as they come
        yield head
        for _ in range(3):
            yield b"\0" * (LIMIT // 2)
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = egfr_client.post("/predict", content=chunks(),
                              headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 413


def test_a_zip_that_would_expand_too_far_is_refused(egfr_client, upload_dir):
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("huge.dcm", b"\0" * (9 * LIMIT))
    answer = post(egfr_client, "bomb.zip", bomb.getvalue())
    assert answer.status_code == 413 and "expanding" in answer.json()["detail"]


@pytest.fixture(scope="module")
def xray_client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-xray")
    folder = random_model_folder(tmp / "xray-run" / "best", XRAY, threshold=0.5)
    with TestClient(create_app(folder, max_upload_bytes=LIMIT), base_url=BASE) as client:
        yield folder, client, write_images(tmp / "images")


@pytest.mark.parametrize("key", ["png", "jpeg", "rgb"])
def test_a_2d_image_is_classified_and_labelled(xray_client, upload_dir, key):
    folder, client, paths = xray_client
    answer = post(client, paths[key].name, paths[key].read_bytes())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = probability(folder, load_xray(paths[key], shape=(32, 32)))
    assert body["probability"] == pytest.approx(expected, abs=1e-6)
    assert body["class"] in ("NORMAL", "PNEUMONIA")
    assert base64.b64decode(body["image_png_base64"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_2d_model_refuses_volumes_and_corrupt_images(xray_client, upload_dir):
    _, client, paths = xray_client
    assert post(client, "scan.nii.gz", b"x" * 100).status_code == 415
    answer = post(client, "d.png", paths["corrupt"].read_bytes())
    assert answer.status_code == 422 and "Refused d.png: is damaged" in answer.json()["detail"]
    assert post(client, "a.png", paths["png"].read_bytes(), data={"point": "1,2,3"}).status_code == 422


def test_segmentation_answers_with_the_mask_drawn_on_the_image(tmp_path, upload_dir):
    folder = trained_segmentation_folder(tmp_path / "seg-run" / "best")
    paths = write_images(tmp_path / "images")
    with TestClient(create_app(folder, max_upload_bytes=LIMIT), base_url=BASE) as client:
        body = post(client, "a.png", paths["png"].read_bytes()).json()
    assert body["class"] in ("background", "foreground") and 0 <= body["foreground_fraction"] <= 1
    assert base64.b64decode(body["image_png_base64"])[:4] == b"\x89PNG"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_real_server_answers_over_http(egfr):
    folder, paths = egfr
    port = free_port()
    token = "a-token-of-at-least-16-characters"
    server = subprocess.Popen([sys.executable, "-m", "tuning.serve", str(folder.parent), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**os.environ, "MEDTUNE_SERVE_TOKEN": token})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.time() < deadline, server.stdout.read().decode()
            time.sleep(0.5)
        scan = paths["nifti"].read_bytes()
        refused = httpx.post(f"{url}/predict", files={"file": ("scan.nii.gz", scan)}, timeout=60)
        assert refused.status_code == 401
        answer = httpx.post(f"{url}/predict", files={"file": ("scan.nii.gz", scan)}, timeout=60,
                            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and answer.json()["model"] == "egfr-run"
        assert httpx.get(f"{url}/health", headers={"Host": "evil.example"}, timeout=10).status_code == 400
    finally:
        server.terminate()
        server.wait(timeout=30)
