"""The HTTP API under attack: hostile and damaged uploads, token, Host and Origin checks,
concurrency and time limits, and a seeded fuzzer over the routes the OpenAPI document lists."""
import random
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
with warnings.catch_warnings():  # Starlette asks for httpx2 over httpx; both work here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

import tuning.serve.app as serve  # noqa: E402
from tests import damaged  # noqa: E402
from tests.model_folders import EGFR, XRAY, random_model_folder, zip_folder  # noqa: E402
from tuning.serve.app import create_app, is_loopback, main  # noqa: E402

BASE = "http://127.0.0.1"
LIMITS = {"max_upload_bytes": 1024 * 1024, "max_voxels": 200_000, "max_pixels": 1_000_000}
TOKEN = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    return {"egfr": random_model_folder(tmp / "egfr-run" / "best", EGFR),
            "xray": random_model_folder(tmp / "xray-run" / "best", XRAY)}


@pytest.fixture(scope="module")
def clients(folders):
    with TestClient(create_app(folders["egfr"], **LIMITS), base_url=BASE) as egfr, \
            TestClient(create_app(folders["xray"], **LIMITS), base_url=BASE) as xray:
        yield {"egfr": egfr, "xray": xray}


def file(build):
    return lambda folder: build(folder).read_bytes()


def zipped(build):
    """Zip whatever ``build`` wrote into its own folder (a header with its data file, a series)."""
    def make(folder):
        build(folder / "src")
        return zip_folder(folder / "src", folder / "upload.zip").read_bytes()
    return make


def in_folder(build):
    def make(folder):
        folder.mkdir(parents=True, exist_ok=True)
        return build(folder)
    return make


def nifti_holding(text: str, *, gz: bool) -> bytes:
    import gzip
    return gzip.compress(text.encode()) if gz else text.encode()


NRRD_PASSWD = "NRRD0004\ntype: short\ndimension: 3\nsizes: 12 14 10\nencoding: raw\ndata file: /etc/passwd\n\n"

# (upload name, bytes made in a folder, status, fragment of the one-line reason)
EGFR_ROWS = [
    ("scan.mha", file(lambda f: damaged.mha_header(f, "/etc/passwd")), 422, "'/etc/passwd' is an absolute path"),
    ("scan.mha", file(lambda f: damaged.mha_header(f, "/etc/no-such-file")), 422, "is an absolute path"),
    ("scan.mha", file(lambda f: damaged.mha_header(f, "../../etc/passwd")), 422, "climbs out with '..'"),
    ("scan.mha", file(lambda f: damaged.mha_header(f, "/dev/zero")), 422, "'/dev/zero' is an absolute path"),
    ("scan.mha", file(lambda f: damaged.mha_header(f, "LIST")), 422, "a LIST, a pattern"),
    ("scan.mha", file(lambda f: damaged.mha_header(f, "slice%03d.raw 1 10 1")), 422, "a LIST, a pattern"),
    ("scan.mha", file(lambda f: damaged.mha_header(f, "other.raw")), 422, "its data file is missing"),
    ("scan.mha", file(lambda f: damaged.mha_header(f, "LOCAL", dims="2000 2000 2000")), 422,
     "8000000000 voxels is over the limit of 200000"),
    ("scan.mha", file(lambda f: damaged.mha_header(f, "LOCAL", dims="12 0 10")), 422, "must be a positive"),
    ("scan.mha", file(lambda f: damaged.mha_header(f, "LOCAL", element="MET_FOO")), 422, "'MET_FOO' is unknown"),
    ("scan.mha", lambda f: b"ObjectType = Image\nNDims = 3\nDimSize = 12 14 10\n", 422, "not a MetaImage"),
    ("scan.mha", file(lambda f: damaged.truncated(f, ".mha")), 422, "(truncated)"),
    ("scan.mha", file(in_folder(damaged.mha_zlib_truncated)), 422, "compressed data is damaged or truncated"),
    ("scan.nrrd", file(lambda f: damaged.nrrd_header(f, "data file: /etc/passwd")), 422, "is an absolute path"),
    ("scan.nrrd", file(lambda f: damaged.nrrd_header(f, "datafile: ../x.raw")), 422, "climbs out"),
    ("scan.nrrd", file(lambda f: damaged.nrrd_header(f, "data file: LIST")), 422, "a LIST, a pattern"),
    ("scan.nrrd", file(lambda f: damaged.nrrd_header(f, "", encoding="zstd")), 422, "'zstd' is not supported"),
    ("scan.nrrd", lambda f: NRRD_PASSWD.replace("NRRD0004", "NRRX0004").encode(), 422, "NRRD magic"),
    ("scan.nrrd", file(lambda f: damaged.truncated(f, ".nrrd")), 422, "(truncated)"),
    ("scan.nrrd", file(in_folder(damaged.nrrd_gzip_truncated)), 422, "compressed data is damaged or truncated"),
    ("scan.nrrd", file(lambda f: damaged.with_values(f, ".nrrd", np.inf)), 422, "1 NaN or infinite voxels"),
    ("scan.nii.gz", file(in_folder(damaged.nifti_bomb)), 422, "1073741824 voxels is over the limit"),
    ("scan.nii.gz", file(lambda f: damaged.truncated(f, ".nii.gz")), 422, "damaged or truncated"),
    ("scan.nii.gz", file(lambda f: damaged.with_values(f, ".nii.gz", np.nan)), 422, "1 NaN or infinite voxels"),
    ("scan.nii.gz", lambda f: nifti_holding(NRRD_PASSWD, gz=True), 422, "not a NIfTI-1 or NIfTI-2 file"),
    ("scan.nii.gz", lambda f: NRRD_PASSWD.encode(), 422, "cannot be read as gzip"),
    ("scan.nii", lambda f: NRRD_PASSWD.encode(), 422, "not a NIfTI-1 or NIfTI-2 file"),
    ("scan.nii", file(lambda f: damaged.truncated(f, ".nii")), 422, "(truncated)"),
    ("scan.nii", file(in_folder(damaged.nifti_pair_header)), 422, "separate .img file"),
    ("scan.zip", zipped(in_folder(lambda f: damaged.mha_header(f, "../../etc/passwd", name="scan.mhd"))), 422,
     "climbs out"),
    ("scan.zip", zipped(in_folder(lambda f: damaged.mhd_pair(f, "/etc/passwd"))), 422, "is an absolute path"),
    ("scan.zip", zipped(damaged.truncated_raw), 422, "holds 1000 bytes of voxel data"),
    ("series.zip", zipped(damaged.dicom_missing_slice), 422, "(a missing slice?)"),
    ("series.zip", zipped(damaged.dicom_truncated_slice), 422, "cannot be read (truncated or damaged)"),
    ("series.zip", zipped(damaged.dicom_duplicate_slice), 422, "share the position"),
]
XRAY_ROWS = [
    ("a.png", file(lambda f: damaged.truncated_image(f, ".png")), 422, "is damaged or truncated"),
    ("a.jpg", file(lambda f: damaged.truncated_image(f, ".jpg")), 422, "is damaged or truncated"),
    ("a.png", file(lambda f: damaged.huge_png(f, side=4000)), 422, "16000000 pixels is over the limit of 1000000"),
    ("a.png", file(damaged.gif_named_png), 422, "holds a GIF image, not PNG or JPEG"),
    ("a.jpeg", lambda f: b"\xff\xd8\xff\xe0" + b"\0" * 64, 422, "is damaged or truncated"),
]
ROWS = [("egfr", *row) for row in EGFR_ROWS] + [("xray", *row) for row in XRAY_ROWS]


def assert_clean_refusal(answer, status, fragment=""):
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert fragment in detail and "\n" not in detail and len(detail) <= 500
    assert "/tmp" not in detail and "medtune-upload" not in detail and "Traceback" not in answer.text
    assert "No such file" not in detail  # never says whether a server-side path exists


@pytest.mark.parametrize("model, name, make, status, fragment", ROWS)
def test_hostile_and_damaged_uploads_get_a_clean_4xx(clients, tmp_path, model, name, make, status, fragment):
    (tmp_path / "w").mkdir()
    content = make(tmp_path / "w")
    answer = clients[model].post("/predict", files={"file": (name, content)})
    assert_clean_refusal(answer, status, fragment)


def test_an_existing_and_a_missing_server_path_get_the_same_answer(clients, tmp_path):
    answers = []
    for target in ("/etc/passwd", "/etc/surely-not-here"):
        header = damaged.mha_header(tmp_path, target)
        answers.append(clients["egfr"].post("/predict", files={"file": ("s.mha", header.read_bytes())}).json())
    assert answers[0]["detail"].replace("/etc/passwd", "X") == answers[1]["detail"].replace("/etc/surely-not-here", "X")


def test_a_hostile_mask_is_refused_too(clients, tmp_path):
    scan = damaged.valid(tmp_path, ".nii.gz").read_bytes()
    mask = damaged.mha_header(tmp_path, "/etc/passwd").read_bytes()
    answer = clients["egfr"].post("/predict", files={"file": ("a.nii.gz", scan), "mask": ("m.mha", mask)})
    assert_clean_refusal(answer, 422, "is an absolute path")


def test_a_good_upload_still_answers(clients, tmp_path):
    answer = clients["egfr"].post("/predict", files={"file": ("a.nii.gz", damaged.valid(tmp_path, ".nii.gz").read_bytes())})
    assert answer.status_code == 200 and 0 <= answer.json()["probability"] <= 1


# --- who may call it --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def locked(folders):
    with TestClient(create_app(folders["egfr"], token=TOKEN, **LIMITS), base_url=BASE) as client:
        yield client


def test_the_token_guards_everything_but_health(locked, tmp_path):
    scan = damaged.valid(tmp_path, ".nii.gz").read_bytes()
    assert locked.get("/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": TOKEN}):
        assert_clean_refusal(locked.get("/model", headers=headers), 401, "Authorization: Bearer")
        assert locked.post("/predict", files={"file": ("a.nii.gz", scan)}, headers=headers).status_code == 401
        assert locked.get("/openapi.json", headers=headers).status_code == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert locked.get("/model", headers=good).status_code == 200
    assert locked.post("/predict", files={"file": ("a.nii.gz", scan)}, headers=good).status_code == 200
    assert locked.get("/model", headers=good).headers.get("www-authenticate") is None


@pytest.mark.parametrize("host, status", [("127.0.0.1:8000", 200), ("localhost", 200), ("evil.example", 400),
                                          ("127.0.0.1.evil.example", 400), ("", 400)])
def test_only_known_host_names_are_answered(clients, host, status):
    assert clients["egfr"].get("/health", headers={"Host": host}).status_code == status


@pytest.mark.parametrize("headers, status", [
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "null"}, 403),
    ({"Origin": "http://127.0.0.1:9999"}, 403),  # another port is another origin
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "same-site"}, 403),
    ({"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}, 200),
    ({"Sec-Fetch-Site": "none"}, 200),
    ({}, 200),
])
def test_cross_site_posts_are_refused(clients, tmp_path, headers, status):
    scan = damaged.valid(tmp_path, ".nii.gz").read_bytes()
    answer = clients["egfr"].post("/predict", files={"file": ("a.nii.gz", scan)}, headers=headers)
    assert answer.status_code == status, answer.text


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                            ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.5", False), ("example.org", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("argv, words", [
    (["--host", "0.0.0.0"], "needs a token: export MEDTUNE_SERVE_TOKEN="),
    (["--host", "192.168.1.5"], "needs a token"),
    (["--token", "short"], "use at least 16"),
    (["--max-concurrent", "0"], "--max-concurrent 0 must be positive"),
])
def test_unsafe_settings_refuse_to_start(folders, monkeypatch, capsys, argv, words):
    monkeypatch.delenv("MEDTUNE_SERVE_TOKEN", raising=False)
    assert main([str(folders["egfr"]), *argv]) == 2
    assert words in capsys.readouterr().err


# --- how much work it takes on -------------------------------------------------------------

@pytest.fixture
def blocked(monkeypatch):
    """load_input waits for ``release`` (up to 20 s): a prediction that takes as long as a test wants."""
    entered, release, real = threading.Event(), threading.Event(), serve.load_input

    def slow(*args, **kwargs):
        entered.set()
        release.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(serve, "load_input", slow)
    yield entered, release
    release.set()


def post_scan(client, folder):
    scan = damaged.valid(folder, ".nii.gz").read_bytes()
    return client.post("/predict", files={"file": ("a.nii.gz", scan)})


def test_past_max_concurrent_requests_get_503(folders, blocked, tmp_path):
    entered, release = blocked
    with TestClient(create_app(folders["egfr"], max_concurrent=1, **LIMITS), base_url=BASE) as client:
        first = {}
        worker = threading.Thread(target=lambda: first.update(answer=post_scan(client, tmp_path)))
        worker.start()
        assert entered.wait(20)
        busy = post_scan(client, tmp_path)
        assert_clean_refusal(busy, 503, "--max-concurrent")
        assert busy.headers["retry-after"] == "1"
        assert client.get("/health").status_code == 200  # health is not queued behind predictions
        release.set()
        worker.join(30)
        assert first["answer"].status_code == 200
        assert post_scan(client, tmp_path).status_code == 200


def test_a_slow_request_gets_504_and_its_slot_frees_when_its_work_ends(folders, blocked, tmp_path):
    entered, release = blocked
    with TestClient(create_app(folders["egfr"], max_concurrent=1, timeout_s=0.5, **LIMITS), base_url=BASE) as client:
        start = time.monotonic()
        assert_clean_refusal(post_scan(client, tmp_path), 504, "--timeout")
        assert time.monotonic() - start < 5
        assert entered.is_set()
        assert post_scan(client, tmp_path).status_code == 503  # its worker still holds the slot
        release.set()
        deadline = time.monotonic() + 20
        while (answer := post_scan(client, tmp_path)).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert answer.status_code == 200


# --- fuzzing ------------------------------------------------------------------------------

SUFFIXES = ["scan.nii.gz", "scan.nii", "scan.mha", "scan.mhd", "scan.nrrd", "scan.nhdr", "s.zip", "a.png",
            "a.jpg", "x.txt", "", "../../etc/passwd", "a" * 300 + ".nii.gz", "scan.NII.GZ"]


def seed_corpus(folder: Path) -> list[tuple[str, bytes]]:
    """Valid inputs in each format, with their names, to mutate: mutated valid files sent under
    their own names reach deeper than random bytes."""
    folder.mkdir()
    out = [damaged.valid(folder, s) for s in (".nii.gz", ".nii", ".mha", ".nrrd")]
    out += [damaged.image(folder, ".png"), damaged.image(folder, ".jpg")]
    damaged.dicom_series(folder / "dcm")
    out.append(zip_folder(folder / "dcm" / "series", folder / "s.zip"))
    damaged.mhd_pair(folder / "mhd", "scan.raw")
    out.append(zip_folder(folder / "mhd", folder / "mhd.zip"))
    return [(path.name, path.read_bytes()) for path in out]


def mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.choice([0, 1, 1, 2, 5, 20])):
        kind, at = rng.random(), rng.randrange(max(len(data), 1))
        if kind < 0.4 and data:
            data[at] = rng.randrange(256)
        elif kind < 0.6:
            del data[at:]
        elif kind < 0.8:
            data[at:at] = rng.randbytes(rng.randrange(1, 64))
        else:
            data[at:at] = rng.choice([b"\nElementDataFile = /etc/passwd\n", b"\ndata file: /dev/zero\n",
                                      b"\xff" * 8, b"\0" * 16, b"DimSize = 99999 99999 99999\n"])
    return bytes(data)


def fuzz_file(rng: random.Random, corpus: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    name, data = rng.choice(corpus)
    return (name if rng.random() < 0.7 else rng.choice(SUFFIXES)), mutate(rng, data)


def fuzz_request(rng: random.Random, routes: list[tuple[str, str]], corpus: list[tuple[str, bytes]]) -> dict:
    path, method = ("/predict", "post") if rng.random() < 0.75 else rng.choice(
        routes + [("/predict", "get"), ("/nothing", "post"), ("/model", "post")])
    request = {"method": method.upper(), "url": path, "headers": {}}
    if rng.random() < 0.8:
        files = {"file": fuzz_file(rng, corpus)}
        if rng.random() < 0.2:
            files["mask"] = fuzz_file(rng, corpus)
        request["files"] = files
        if rng.random() < 0.3:
            request["data"] = {"point": rng.choice(["1,2,3", "nan,1,2", "1e999,0,0", "x", "1,2", " " * 5,
                                                    "1," * 1000])}
    elif rng.random() < 0.5:
        request["content"] = rng.randbytes(rng.randrange(0, 2048))
        request["headers"]["content-type"] = rng.choice([
            "multipart/form-data; boundary=xyz", "multipart/form-data", "application/json",
            "application/x-www-form-urlencoded", "multipart/form-data; boundary=" + "a" * 200, "text/plain"])
    return request


def test_fuzzing_the_api_never_gives_a_5xx_or_a_trace(clients, folders, tmp_path):
    rng = random.Random(20240607)
    corpus = seed_corpus(tmp_path / "corpus")
    schema = clients["egfr"].get("/openapi.json").json()
    routes = [(path, method) for path, ops in schema["paths"].items() for method in ops]
    assert ("/predict", "post") in routes and ("/model", "get") in routes
    sent, deadline = 0, time.monotonic() + 8
    while sent < 150 and time.monotonic() < deadline:
        client = clients["egfr" if sent % 3 else "xray"]
        request = fuzz_request(rng, routes, corpus)
        answer = client.request(**request)
        sent += 1
        assert answer.status_code < 500, (request["url"], answer.text)
        assert "Traceback" not in answer.text and "/tmp/" not in answer.text, answer.text
        if answer.status_code >= 400 and answer.headers.get("content-type") == "application/json":
            assert isinstance(answer.json()["detail"], str) and "\n" not in answer.json()["detail"]
    assert sent >= 40  # the time bound still leaves a meaningful sample
