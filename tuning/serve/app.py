"""python -m tuning.serve results/<name> [--host 127.0.0.1] [--port 8000] [--token ...] [--max-upload-mb 512]

Serve a finished run's best model over HTTP (FastAPI): POST /predict with an uploaded file
(a volume, a zipped DICOM series, or a PNG/JPEG) answers the class, its probability and the
threshold; GET /health and GET /model (config and test metrics). Needs the "serve" extra.

Bound to anything but loopback it needs a bearer token (--token or $MEDTUNE_SERVE_TOKEN), then
asked on every route but /health; Host headers must name the server (--allowed-host adds names);
cross-site POSTs are refused; uploads are checked before decoding (voxels, pixels, data files
that point outside the upload), and --max-concurrent / --timeout bound the work.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import ipaddress
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from core.annotate import labelled_png
from core.errors import DataError
from core.evaluate import predict
from core.imageio import check_input, read_image_2d
from core.inference import Case, decide, load_input, mask_image
from core.model_folder import MODEL_FILE, LoadedModel, load_model_folder, model_folder_of
from core.tasks import get_task, tasks_taking
from tuning.serve.uploads import (
    Admission,
    UploadError,
    UploadLimit,
    accepted_inputs,
    send_json,
    stage_upload,
    worker_slot,
)

try:  # the optional "serve" extra: pip install "medtune[serve]"
    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.datastructures import Headers
    from starlette.middleware.trustedhost import TrustedHostMiddleware
except ImportError:  # pragma: no cover - reported by main() and create_app()
    FastAPI = None

log = logging.getLogger(__name__)
MIB = 1024 * 1024
TOKEN_ENV = "MEDTUNE_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
OPEN_PATHS = ("/health",)  # answered without the token
SAME_SITE = ("same-origin", "none")  # Sec-Fetch-Site values of a request not made by another site


class Guard:
    """ASGI middleware: the bearer token (when one is set) on every route but /health, compared in
    constant time; a POST/PUT/... that a browser made for another site (Sec-Fetch-Site, or an
    Origin other than this server) gets a 403, whatever it carries (DNS rebinding, CSRF)."""

    def __init__(self, app: Any, *, token: str | None) -> None:
        self.app, self.token = app, token.encode() if token else None

    def refusal(self, scope: dict) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            site, origin = headers.get("sec-fetch-site"), headers.get("origin")
            if site is not None and site.lower() not in SAME_SITE:
                return 403, f"Cross-site request refused (Sec-Fetch-Site: {site[:40]})."
            if origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
                return 403, "Cross-site request refused: its Origin is not this server."
        if self.token is None or scope["path"] in OPEN_PATHS:
            return None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
            return 401, "Missing or wrong token: send the header 'Authorization: Bearer <token>'."
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        refused = self.refusal(scope) if scope["type"] == "http" else None
        if refused is None:
            return await self.app(scope, receive, send)
        status, detail = refused
        await send_json(send, status, detail, {"WWW-Authenticate": "Bearer"} if status == 401 else None)


def _save(upload: UploadFile, work: Path, stem: str) -> tuple[Path, str]:
    """Copy an upload into ``work``; returns (path, the client's file name)."""
    filename = Path(upload.filename or "").name
    if not filename:
        raise UploadError(422, "The upload has no file name; send it as a file with its suffix "
                               "(e.g. curl -F file=@scan.nii.gz).")
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"{stem}.bin"
    with path.open("wb") as out:
        shutil.copyfileobj(upload.file, out, length=MIB)
    if path.stat().st_size == 0:
        raise UploadError(422, f"{filename} is empty.")
    return path, filename


def _point(text: str | None, model: LoadedModel) -> tuple[float, float, float] | None:
    if text is None or not text.strip():
        return None
    if "point" not in get_task(model.task).inputs:
        raise UploadError(422, f"'point' applies to models of {tasks_taking('point')}; this is a "
                               f"{model.task} model.")
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(np.isfinite(values)):
        raise UploadError(422, f"point={text[:80]!r} must be three finite world coordinates in mm: 'x,y,z'.")
    return values


def _reason(verb: str, filename: str, detail: str) -> str:
    """``Refused scan.mha: ...``, naming the file once even when ``detail`` starts with it."""
    return f"{verb} {detail if detail.startswith(filename) else f'{filename}: {detail}'}"


def _staged(upload: UploadFile, work: Path, stem: str, limits: dict[str, int], *,
            volumes: bool) -> tuple[Path, str]:
    """Save, unpack and check one upload from its headers (sizes, data files) before decoding."""
    saved, filename = _save(upload, work / stem, stem)
    path = stage_upload(saved, filename, volumes=volumes, max_bytes=limits["max_bytes"])
    try:
        check_input(path, root=work, max_voxels=limits["max_voxels"], max_pixels=limits["max_pixels"])
    except DataError as err:
        detail = str(err).replace(str(path), filename).replace(str(work), "upload")
        raise UploadError(422, _reason("Refused", filename, detail)) from err
    return path, filename


def _case(model: LoadedModel, work: Path, file: UploadFile, mask: UploadFile | None,
          point: str | None, limits: dict[str, int]) -> tuple[Case, str]:
    """Stage the uploads in ``work`` and describe the case to predict."""
    volumes = len(model.config.data.shape) == 3
    path, filename = _staged(file, work, "input", limits, volumes=volumes)
    mask_path = None
    if mask is not None:
        if "mask" not in get_task(model.task).inputs:
            raise UploadError(422, f"'mask' applies to models of {tasks_taking('mask')}; this is a "
                                   f"{model.task} model.")
        mask_path, _ = _staged(mask, work, "mask", limits, volumes=True)
    return Case(path, mask=mask_path, point=_point(point, model)), filename


def _clean(message: str, case: Case, work: Path, filename: str) -> str:
    """An error message without the server's temporary paths."""
    return message.replace(str(case.path), filename).replace(str(work), "upload")


def answer(model: LoadedModel, probabilities: Any, *, filename: str,
           image_path: Path | None = None) -> dict[str, Any]:
    """The JSON answer: class, probabilities, threshold; for 2D inputs the labelled image (PNG)."""
    decision = decide(model, probabilities)
    index = model.class_names.index(decision["prediction"])
    p = decision["probability"]
    out = {"model": model.name, "task": model.task, "filename": filename,
           "class": decision["prediction"], "class_index": index,
           "probability": p, "class_probability": p if index == 1 else 1.0 - p,
           "threshold": model.threshold, "class_names": list(model.class_names)}
    if "foreground_fraction" in decision:
        out["foreground_fraction"] = decision["foreground_fraction"]
    if image_path is not None:
        image = read_image_2d(image_path)
        mask = (mask_image(probabilities, model.threshold, image.shape) > 0
                if model.segmentation else None)
        text = f"{decision['prediction']}  p={p:.2f}  (threshold {model.threshold:.2f})"
        out["image_png_base64"] = base64.b64encode(labelled_png(image, text, mask=mask)).decode()
    return out


def _one_line(text: str, limit: int = 500) -> str:
    return " ".join(str(text).split())[:limit]


def _handlers(app: FastAPI) -> None:
    """Every refusal answers one line of JSON; an unexpected failure a 500 without a trace."""
    @app.exception_handler(UploadError)
    async def upload_error(request: Request, err: UploadError) -> JSONResponse:
        return JSONResponse(status_code=err.status, content={"detail": _one_line(err.message)})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in err.errors()]
        return JSONResponse(status_code=422, content={"detail": _one_line("Invalid request: " + "; ".join(parts))})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("Unexpected error on %s", request.url.path)
        return JSONResponse(status_code=500, content={"detail": "Internal error; the server log has the details."})


def create_app(model_folder: Path, *, max_upload_bytes: int = 512 * MIB,
               max_voxels: int = 512 * 512 * 1024, max_pixels: int = 64_000_000, max_concurrent: int = 4,
               timeout_s: float = 120.0, token: str | None = None,
               allowed_hosts: tuple[str, ...] = LOCAL_HOSTS) -> FastAPI:
    """The API for one model folder (or results folder); the model loads once, at start-up.

    Uploads are refused past ``max_upload_bytes`` / ``max_voxels`` / ``max_pixels``; at most
    ``max_concurrent`` predictions run at once, each for at most ``timeout_s`` seconds; with a
    ``token``, every route but /health needs it; Host headers must be in ``allowed_hosts``.
    """
    if FastAPI is None:
        raise ImportError("tuning.serve needs FastAPI: pip install 'medtune[serve]'")
    folder = model_folder_of(Path(model_folder))
    lock = threading.Lock()  # one forward pass at a time: requests run in a thread pool
    limits = {"max_bytes": max_upload_bytes, "max_voxels": max_voxels, "max_pixels": max_pixels}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = app.state.model = load_model_folder(folder)
        channels = int(model.info.get("input", {}).get("channels", 1))
        predict(model.module, np.zeros((1, channels, *model.config.data.shape), dtype=np.float32))
        log.info("Loaded %s (%s) from %s", model.name, model.task, folder)  # and warmed up
        yield

    app = FastAPI(title="medtune", summary="Predict with a medtune model folder", lifespan=lifespan)
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes)  # the last added runs first:
    app.add_middleware(Admission, max_concurrent=max_concurrent, timeout_s=timeout_s)
    app.add_middleware(Guard, token=token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts), www_redirect=False)
    _handlers(app)

    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        return {"status": "ok", "model": request.app.state.model.name}

    @app.get("/model")
    def model_info(request: Request) -> dict[str, Any]:
        model: LoadedModel = request.app.state.model
        return {"name": model.name, "task": model.task, "class_names": list(model.class_names),
                "threshold": model.threshold, "accepts": accepted_inputs(len(model.config.data.shape) == 3),
                "config": model.config.to_dict(), "preprocessing": model.info.get("preprocessing"),
                "versions": model.info.get("versions"), "metrics": model.metrics()}

    @app.post("/predict")
    def predict_upload(request: Request, file: UploadFile = File(...),
                       mask: UploadFile | None = File(None),
                       point: str | None = Form(None)) -> dict[str, Any]:
        model: LoadedModel = request.app.state.model
        with worker_slot(getattr(request.state, "ticket", None)), \
                tempfile.TemporaryDirectory(prefix="medtune-upload-") as tmp:
            work = Path(tmp)
            case, filename = _case(model, work, file, mask, point, limits)
            try:
                x, _ = load_input(case, model.config.data)
            except Exception as err:  # whatever fails to read is the upload's fault: a 422
                detail = (_clean(str(err), case, work, filename) if isinstance(err, DataError)
                          else f"not a readable input ({type(err).__name__})")
                raise UploadError(422, _reason("Cannot read", filename, detail)) from err
            with lock:
                probabilities = predict(model.module, x[None])[0]
            image = case.path if len(model.config.data.shape) == 2 else None
            return answer(model, probabilities, filename=filename, image_path=image)

    return app


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuning.serve", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", type=Path, help="a results folder (its best/ is used) or a model folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind; anything but loopback (e.g. 0.0.0.0) needs a token")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--token", default=None,
                   help=f"bearer token clients must send (default: ${TOKEN_ENV}, which keeps it out of "
                        "the process list); required when --host is not loopback")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host name clients may use besides the bind address and localhost (repeatable)")
    p.add_argument("--max-upload-mb", type=float, default=512, help="largest accepted upload (MiB)")
    p.add_argument("--max-voxels", type=int, default=512 * 512 * 1024,
                   help="largest volume accepted, in voxels, checked from its header before decoding")
    p.add_argument("--max-pixels", type=int, default=64_000_000, help="largest 2D image accepted, in pixels")
    p.add_argument("--max-concurrent", type=int, default=4,
                   help="predictions in progress at once; more get 503")
    p.add_argument("--timeout", type=float, default=120, help="seconds a prediction may take, upload included")
    return p


def is_loopback(host: str) -> bool:
    """True when binding ``host`` reaches this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _settings_error(args: argparse.Namespace, token: str | None) -> str | None:
    """What makes these flags unsafe or invalid to start with, else None."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        return (f"the token has {len(token)} characters; use at least {MIN_TOKEN_CHARS}, e.g. "
                f"export {TOKEN_ENV}=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if token is None and not is_loopback(args.host):
        return (f"--host {args.host} exposes the API beyond this machine, so it needs a token: "
                f"export {TOKEN_ENV}=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') "
                "(or pass --token), then clients send 'Authorization: Bearer <token>'.")
    for flag in ("max_voxels", "max_pixels", "max_concurrent", "timeout", "max_upload_mb"):
        if getattr(args, flag) <= 0:
            return f"--{flag.replace('_', '-')} {getattr(args, flag)} must be positive."
    return None


def allowed_hosts(bind: str, extra: list[str]) -> tuple[str, ...]:
    """Host header names the server answers: the bind address (unless a wildcard), localhost, extras."""
    names = [*LOCAL_HOSTS, *extra]
    if bind not in ("0.0.0.0", "::", ""):
        names.insert(0, bind)
    return tuple(dict.fromkeys(n.lower() for n in names))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = model_folder_of(args.model)
    if not (folder / MODEL_FILE).is_file():
        print(f"error: {args.model} is not a model folder (no {MODEL_FILE}, nor best/{MODEL_FILE}); "
              "pass results/<name> of a finished run.", file=sys.stderr)
        return 2
    token = args.token or os.environ.get(TOKEN_ENV) or None
    problem = _settings_error(args, token)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if FastAPI is None:
        print("error: serving needs FastAPI and uvicorn: pip install 'medtune[serve]'", file=sys.stderr)
        return 2
    import uvicorn

    hosts = allowed_hosts(args.host, args.allowed_host)
    app = create_app(folder, max_upload_bytes=int(args.max_upload_mb * MIB), max_voxels=args.max_voxels,
                     max_pixels=args.max_pixels, max_concurrent=args.max_concurrent, timeout_s=args.timeout,
                     token=token, allowed_hosts=hosts)
    print(f"Serving {folder} at http://{args.host}:{args.port} (POST /predict, GET /health, GET /model); "
          f"token {'required' if token else 'off'}; Host names accepted: {', '.join(hosts)} "
          "(--allowed-host adds one)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False,
                limit_concurrency=args.max_concurrent + 16, timeout_keep_alive=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
