"""Small damaged or hostile files in the real formats, each built by a function of a folder.

Each builder writes what it needs under ``folder`` and returns the path to read or upload
(a file, or a folder for a DICOM series). Shared by the reading-layer and the HTTP tests.
"""
from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from core.imageio import Geometry, write_dicom_series, write_image_2d, write_volume

GEOMETRY = Geometry(spacing=(0.8, 0.9, 2.0), origin=(-20.0, 10.0, 5.0))
SHAPE = (10, 14, 12)  # (z, y, x)


def ct(shape: tuple[int, ...] = SHAPE, dtype: type = np.int16) -> np.ndarray:
    return np.random.default_rng(0).integers(-1000, 400, size=shape).astype(dtype)


def cut(path: Path, fraction: float = 0.6) -> Path:
    """Keep the first ``fraction`` of the file's bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def valid(folder: Path, suffix: str) -> Path:
    path = folder / f"scan{suffix}"
    write_volume(ct(), GEOMETRY, path)
    return path


# --- headers that point at another file ---------------------------------------------------

def mha_header(folder: Path, data_file: str, *, dims: str = "12 14 10", element: str = "MET_SHORT",
               extra: str = "", name: str = "scan.mha") -> Path:
    path = folder / name
    path.write_text(f"ObjectType = Image\nNDims = 3\nDimSize = {dims}\nElementType = {element}\n{extra}"
                    f"ElementDataFile = {data_file}\n")
    return path


def nrrd_header(folder: Path, data_line: str, *, encoding: str = "raw", sizes: str = "12 14 10",
                kind: str = "short", name: str = "scan.nrrd") -> Path:
    path = folder / name
    path.write_text(f"NRRD0004\ntype: {kind}\ndimension: 3\nsizes: {sizes}\nencoding: {encoding}\n"
                    f"{data_line}\n\n")
    return path


def mhd_pair(folder: Path, data_file: str, *, raw_bytes: int | None = None) -> Path:
    """A .mhd naming ``data_file`` plus a correct ``scan.raw`` beside it (cut to ``raw_bytes``)."""
    header = valid(folder, ".mhd")
    raw = folder / "scan.raw"
    if raw_bytes is not None:
        raw.write_bytes(raw.read_bytes()[:raw_bytes])
    text = header.read_text(encoding="utf-8").replace("ElementDataFile = scan.raw", f"ElementDataFile = {data_file}")
    header.write_text(text)
    return header


# --- truncated or damaged volumes -----------------------------------------------------------

def truncated(folder: Path, suffix: str) -> Path:
    return cut(valid(folder, suffix))


def truncated_raw(folder: Path) -> Path:
    return mhd_pair(folder, "scan.raw", raw_bytes=1000)


def nrrd_gzip_truncated(folder: Path) -> Path:
    path = folder / "scan.nrrd"
    write_volume(ct(), GEOMETRY, path, compress=True)
    return cut(path, 0.7)


def mha_zlib_truncated(folder: Path) -> Path:
    data = zlib.compress(ct().tobytes())[:200]
    path = mha_header(folder, "LOCAL", extra=f"CompressedData = True\nCompressedDataSize = {len(data)}\n")
    path.write_bytes(path.read_bytes() + data)
    return path


def nifti_bytes(shape_xyz: tuple[int, int, int], *, magic: bytes = b"n+1\0", data: bytes = b"",
                datatype: int = 4, bitpix: int = 16) -> bytes:
    """A NIfTI-1 single-file header (348 bytes + 4 extension bytes) followed by ``data``."""
    head = bytearray(352)
    head[0:4] = np.int32(348).tobytes()
    head[40:56] = np.array([3, *shape_xyz, 1, 1, 1, 1], dtype="<i2").tobytes()
    head[70:74] = np.array([datatype, bitpix], dtype="<i2").tobytes()
    head[76:92] = np.array([1, 1, 1, 1], dtype="<f4").tobytes()
    head[108:112] = np.float32(352).tobytes()
    head[344:348] = magic
    return bytes(head) + data


def nifti_bomb(folder: Path) -> Path:
    """130 bytes that claim a 1024^3 volume: refused from the header, nothing inflated."""
    path = folder / "bomb.nii.gz"
    path.write_bytes(gzip.compress(nifti_bytes((1024, 1024, 1024), data=b"\0" * 4096)))
    return path


def nifti_pair_header(folder: Path) -> Path:
    path = folder / "scan.nii"
    path.write_bytes(nifti_bytes((12, 14, 10), magic=b"ni1\0", data=ct().tobytes()))
    return path


def with_values(folder: Path, suffix: str, value: float) -> Path:
    array = ct(dtype=np.float32)
    array[3, 4, 5] = value
    path = folder / f"scan{suffix}"
    write_volume(array, GEOMETRY, path)
    return path


# --- DICOM series -----------------------------------------------------------------------------

def dicom_series(folder: Path) -> tuple[Path, list[Path]]:
    series = folder / "series"
    return series, write_dicom_series(ct(), GEOMETRY, series)


def dicom_missing_slice(folder: Path) -> Path:
    series, files = dicom_series(folder)
    files[4].unlink()
    return series


def dicom_truncated_slice(folder: Path) -> Path:
    """Slice 5 loses the end of its pixel data (its header, series UID included, stays whole)."""
    series, files = dicom_series(folder)
    files[4].write_bytes(files[4].read_bytes()[:-100])
    return series


def dicom_duplicate_slice(folder: Path) -> Path:
    series, files = dicom_series(folder)
    (series / "0005b.dcm").write_bytes(files[4].read_bytes())  # slice 5 twice, under two names
    return series


# --- 2D images --------------------------------------------------------------------------------

def image(folder: Path, suffix: str) -> Path:
    path = folder / f"picture{suffix}"
    write_image_2d(np.random.default_rng(1).integers(0, 255, (48, 40), dtype=np.uint8), path)
    return path


def truncated_image(folder: Path, suffix: str) -> Path:
    return cut(image(folder, suffix), 0.6)


def huge_png(folder: Path, side: int = 12000) -> Path:
    """A PNG of ``side`` x ``side`` black pixels: a few KB on disk, ``side``**2 bytes decoded."""
    path = folder / "huge.png"
    Image.new("L", (side, side)).save(path, optimize=True)
    return path


def gif_named_png(folder: Path) -> Path:
    path = folder / "fake.png"
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="GIF")
    path.write_bytes(buffer.getvalue())
    return path
