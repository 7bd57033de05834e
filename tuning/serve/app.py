"""python -m tuning.serve results/<name> [--host 127.0.0.1] [--port 8000] [--max-upload-mb 512]

Serve a finished run's best model over HTTP (FastAPI): POST /predict with an uploaded file
(a volume, a zipped DICOM series, or a PNG/JPEG) answers the class, its probability and the
threshold; GET /health and GET /model (config and test metrics). Needs the "serve" extra.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import shutil
import sys
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from core.annotate import labelled_png
from core.errors import DataError
from core.evaluate import predict
from core.imageio import read_image_2d
from core.inference import USES_MASKS, USES_POINTS, Case, decide, load_input, mask_image
from core.model_folder import MODEL_FILE, LoadedModel, load_model_folder, model_folder_of
from tuning.serve.uploads import UploadError, UploadLimit, accepted_inputs, stage_upload

try:  # the optional "serve" extra: pip install "medtune[serve]"
    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.responses import JSONResponse
except ImportError:  # pragma: no cover - reported by main() and create_app()
    FastAPI = None

log = logging.getLogger(__name__)
MIB = 1024 * 1024


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
    if model.task not in USES_POINTS:
        raise UploadError(422, f"'point' applies to models of {sorted(USES_POINTS)}; this is a "
                               f"{model.task} model.")
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise UploadError(422, f"point={text!r} must be three world coordinates in mm: 'x,y,z'.")
    return values


def _case(model: LoadedModel, work: Path, file: UploadFile, mask: UploadFile | None,
          point: str | None, max_bytes: int) -> tuple[Case, str]:
    """Stage the uploads in ``work`` and describe the case to predict."""
    volumes = len(model.config.data.shape) == 3
    saved, filename = _save(file, work / "input", "upload")
    path = stage_upload(saved, filename, volumes=volumes, max_bytes=max_bytes)
    mask_path = None
    if mask is not None:
        if model.task not in USES_MASKS:
            raise UploadError(422, f"'mask' applies to models of {sorted(USES_MASKS)}; this is a "
                                   f"{model.task} model.")
        saved_mask, mask_name = _save(mask, work / "mask", "mask")
        mask_path = stage_upload(saved_mask, mask_name, volumes=True, max_bytes=max_bytes)
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


def create_app(model_folder: Path, *, max_upload_bytes: int = 512 * MIB) -> FastAPI:
    """The API for one model folder (or results folder); the model loads once, at start-up."""
    if FastAPI is None:
        raise ImportError("tuning.serve needs FastAPI: pip install 'medtune[serve]'")
    folder = model_folder_of(Path(model_folder))
    lock = threading.Lock()  # one forward pass at a time: requests run in a thread pool

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = app.state.model = load_model_folder(folder)
        channels = int(model.info.get("input", {}).get("channels", 1))
        predict(model.module, np.zeros((1, channels, *model.config.data.shape), dtype=np.float32))
        log.info("Loaded %s (%s) from %s", model.name, model.task, folder)  # and warmed up
        yield

    app = FastAPI(title="medtune", summary="Predict with a medtune model folder", lifespan=lifespan)
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes)

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, err: UploadError) -> JSONResponse:
        return JSONResponse(status_code=err.status, content={"detail": err.message})

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
        with tempfile.TemporaryDirectory(prefix="medtune-upload-") as tmp:
            work = Path(tmp)
            case, filename = _case(model, work, file, mask, point, max_upload_bytes)
            try:
                x, _ = load_input(case, model.config.data)
            except Exception as err:  # whatever fails to read is the upload's fault: a 422
                detail = str(err) if isinstance(err, DataError) else f"{type(err).__name__}: {err}"
                detail = _clean(detail, case, work, filename)
                raise UploadError(422, f"Cannot read {filename}: {detail}") from err
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
                   help="interface to bind; 0.0.0.0 exposes the API to the network")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--max-upload-mb", type=float, default=512, help="largest accepted upload (MiB)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = model_folder_of(args.model)
    if not (folder / MODEL_FILE).is_file():
        print(f"error: {args.model} is not a model folder (no {MODEL_FILE}, nor best/{MODEL_FILE}); "
              "pass results/<name> of a finished run.", file=sys.stderr)
        return 2
    if FastAPI is None:
        print("error: serving needs FastAPI and uvicorn: pip install 'medtune[serve]'", file=sys.stderr)
        return 2
    import uvicorn

    app = create_app(folder, max_upload_bytes=int(args.max_upload_mb * MIB))
    print(f"Serving {folder} at http://{args.host}:{args.port} (POST /predict, GET /health, GET /model)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
