"""Volume reading and writing: the one module that imports SimpleITK.

Arrays come out (z, y, x), the numpy order SimpleITK hands back. Geometry travels beside
them in SimpleITK's (x, y, z) order: ``spacing[0]`` is the x (column) spacing in mm and
``direction`` is the row-major 3x3 matrix whose columns are the x, y, z axis directions.

Written here rather than taken from MONAI's ``LoadImage``: MONAI has no SimpleITK reader (its
``ITKReader`` needs the ``itk`` package), and one SimpleITK path reads NIfTI, MHD, NRRD and DICOM.
"""
from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from core.dicomcheck import check_slice_positions, refuse_damaged_slices
from core.errors import DataError
from core.imagecheck import check_image_2d, check_volume_file
from core.itklog import itk_messages, refuse_damage

logger = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mhd", ".mha", ".nrrd", ".nhdr")
ACCEPTED = ("a .nii.gz, .nii, .mhd (+.raw/.zraw), .mha, .nrrd or .nhdr file, "
            "or a folder holding a DICOM series")
# Things a dataset download carries beside its images; skipped without a word.
_QUIET_SUFFIXES = (".raw", ".zraw", ".raw.gz", ".csv", ".tsv", ".json", ".txt", ".md", ".xlsx", ".xls",
                   ".pdf")
_QUIET_NAMES = {"license", "license.txt", "readme", "__macosx", "thumbs.db"}


@dataclass(frozen=True)
class Geometry:
    """Where the voxels sit in the world, SimpleITK (x, y, z) order, millimetres.

    ``direction`` holds 9 values, row-major, as ``sitk.Image.GetDirection()`` returns them.
    """

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def matrix(self) -> np.ndarray:
        """(3, 3) direction matrix; column k is the world direction of voxel axis k (x, y, z)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)


def _xyz(values: tuple[float, ...]) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return x, y, z


def _geometry_of(image: sitk.Image) -> Geometry:
    """Geometry of a 3D image (read_volume refuses others first)."""
    return Geometry(spacing=_xyz(image.GetSpacing()), origin=_xyz(image.GetOrigin()),
                    direction=tuple(float(v) for v in image.GetDirection()))


def _image_of(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def volume_suffix(path: Path) -> str | None:
    """The accepted volume suffix ``path`` ends with (``".nii.gz"``...), else None."""
    name = path.name.lower()
    return next((s for s in VOLUME_SUFFIXES if name.endswith(s) and len(name) > len(s)), None)


_IMAGE_IO = {".nii.gz": "NiftiImageIO", ".nii": "NiftiImageIO", ".mhd": "MetaImageIO",
             ".mha": "MetaImageIO", ".nrrd": "NrrdImageIO", ".nhdr": "NrrdImageIO",
             ".png": "PNGImageIO", ".jpg": "JPEGImageIO", ".jpeg": "JPEGImageIO"}


def _reader_for(path: Path) -> sitk.ImageFileReader:
    """A reader bound to the format the suffix names: content never picks another decoder."""
    suffix = volume_suffix(path) or path.suffix.lower()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(_IMAGE_IO[suffix])
    return reader


def _execute(path: Path, reader: sitk.ImageFileReader | sitk.ImageSeriesReader,
             check: Callable[[sitk.Image], None] | None = None) -> sitk.Image:
    """Run a SimpleITK reader; its errors, and warnings that mean damaged data, become DataError
    (``check`` runs first, so that its clearer message wins)."""
    try:
        with itk_messages() as said:
            image = reader.Execute()
    except RuntimeError as err:
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DataError(f"Cannot read {path}: {detail}. Accepted: {ACCEPTED}.") from err
    if check is not None:
        check(image)
    refuse_damage(path, said.text)
    return image


def _finite(array: np.ndarray, path: Path) -> np.ndarray:
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    if bad:
        raise DataError(f"{path} holds {bad} NaN or infinite voxels; fill them (e.g. with the "
                        "background value) and save the volume again.")
    return array


def read_volume(path: Path, *, orient: str | None = None,
                max_voxels: int | None = None) -> tuple[np.ndarray, Geometry]:
    """Read a volume file or DICOM series folder as float32 (z, y, x) plus its geometry.

    ``orient`` (e.g. ``"LPS"``) reorders/flips the axes so every case shares one orientation.
    Damaged input (truncated, NaN voxels, missing DICOM slices, a header naming a file elsewhere)
    raises DataError; so does one of more than ``max_voxels`` voxels, before it is decoded.
    """
    path = Path(path)
    if path.is_dir():
        image = _read_dicom_folder(path, max_voxels=max_voxels)
    else:
        try:
            check_volume_file(path, max_voxels=max_voxels)
        except DataError as err:
            raise DataError(f"Cannot read volume {err}") from err
        reader = _reader_for(path)
        reader.SetOutputPixelType(sitk.sitkFloat32)
        image = _execute(path, reader)
    if orient is not None:
        image = sitk.DICOMOrient(image, orient)
    if image.GetDimension() != 3:
        raise DataError(f"{path} holds a {image.GetDimension()}D image; a 3D volume is needed.")
    array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    return _finite(array, path), _geometry_of(image)


def read_geometry(path: Path) -> tuple[tuple[int, int, int], Geometry]:
    """Array shape (z, y, x) and geometry of a volume file from its header only (cheap)."""
    path = Path(path)
    if path.is_dir():  # a DICOM series needs every slice position: read it whole
        array, geometry = read_volume(path)
        return array.shape, geometry
    check_volume_file(path, deep=False)
    reader = _reader_for(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise DataError(f"Cannot read the header of {path}. Accepted: {ACCEPTED}.") from err
    if reader.GetDimension() != 3:
        raise DataError(f"{path} holds a {reader.GetDimension()}D image; a 3D volume is needed.")
    size = reader.GetSize()
    geometry = Geometry(spacing=tuple(reader.GetSpacing()), origin=tuple(reader.GetOrigin()),
                        direction=tuple(reader.GetDirection()))
    return (size[2], size[1], size[0]), geometry


def check_input(path: Path, *, root: Path | None = None, max_voxels: int | None = None,
                max_pixels: int | None = None) -> None:
    """Header-only checks of an input before it is decoded: a volume file (its data files inside
    ``root``), a DICOM series folder (slice count x slice size) or a PNG/JPEG, against the limits."""
    path = Path(path)
    if path.is_dir():
        dicom_series_size(path, max_voxels=max_voxels)
    elif path.name.lower().endswith(IMAGE_2D_SUFFIXES):
        check_image_2d(path, max_pixels=max_pixels)
    else:
        check_volume_file(path, root=root, max_voxels=max_voxels)


def _visible_dirs(folder: Path) -> list[tuple[Path, list[str]]]:
    """Every folder under ``folder`` (itself included) with its visible file names, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        files = sorted(f for f in filenames if not f.startswith("."))
        if files:
            found.append((Path(dirpath), files))
    return found


def _largest_series(folder: Path) -> tuple[str, str, tuple[str, ...]]:
    """(folder, series UID, slice files sorted by position) of the series with the most slices."""
    series = []
    for dirpath, _ in _visible_dirs(folder):
        for sid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(dirpath)):
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(dirpath), sid)
            series.append((len(files), str(dirpath), sid, files))
    if not series:
        raise DataError(f"No DICOM series found in folder {folder}. Accepted: {ACCEPTED}.")
    series.sort(key=lambda s: (-s[0], s[1], s[2]))
    n_slices, chosen, sid, files = series[0]
    if len(series) > 1:
        logger.info("%s holds %d DICOM series; reading %s (%d slices) in %s",
                    folder, len(series), sid, n_slices, chosen)
    return chosen, sid, tuple(files)


def _series_size(folder: Path, files: tuple[str, ...], max_voxels: int | None) -> tuple[int, int, int]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    reader.SetImageIO("GDCMImageIO")
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise DataError(f"Cannot read the DICOM header of {files[0]}: export the series again.") from err
    width, height = reader.GetSize()[:2]
    if max_voxels is not None and width * height * len(files) > max_voxels:
        raise DataError(f"{folder}: {len(files)} slices of {width}x{height} = {width * height * len(files)} "
                        f"voxels is over the limit of {max_voxels}; send a smaller series or raise --max-voxels.")
    return width, height, len(files)


def dicom_series_size(folder: Path, *, max_voxels: int | None = None) -> tuple[int, int, int]:
    """(x, y, z) size of the largest DICOM series under ``folder`` from one slice's header and the
    slice count, refused past ``max_voxels`` before any pixel is decoded."""
    folder = Path(folder)
    return _series_size(folder, _largest_series(folder)[2], max_voxels)


def _read_dicom_folder(folder: Path, *, max_voxels: int | None = None) -> sitk.Image:
    """The DICOM series with the most slices anywhere under ``folder`` (slices sorted by position),
    after checking no slice is damaged, missing in the middle or doubled."""
    dirpath, sid, files = _largest_series(folder)
    _series_size(folder, files, max_voxels)
    refuse_damaged_slices(Path(dirpath), sid, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.SetImageIO("GDCMImageIO")
    reader.SetOutputPixelType(sitk.sitkFloat32)
    reader.MetaDataDictionaryArrayUpdateOn()

    def positions(image: sitk.Image) -> None:
        found = [reader.GetMetaData(k, "0020|0032") if reader.HasMetaDataKey(k, "0020|0032") else ""
                 for k in range(len(files))]
        check_slice_positions(folder, found, image.GetDirection(), files)

    return _execute(folder, reader, positions)


def write_volume(array: np.ndarray, geometry: Geometry, path: Path, *, compress: bool = False) -> None:
    """Write a (z, y, x) array in the format its suffix names; ``.nii.gz`` is always compressed."""
    path = Path(path)
    if volume_suffix(path) is None:
        raise DataError(f"Cannot write {path}: the name must end with one of "
                        f"{', '.join(VOLUME_SUFFIXES)}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    compress = compress or path.name.lower().endswith(".gz")
    sitk.WriteImage(_image_of(array, geometry), str(path), useCompression=compress)


def _uid() -> str:
    """A fresh DICOM UID under the UUID-derived root 2.25 (at most 44 characters)."""
    return f"2.25.{uuid.uuid4().int}"


def write_dicom_series(array: np.ndarray, geometry: Geometry, folder: Path, *,
                       rescale_intercept: float = -1024, rescale_slope: float = 1,
                       suffix: str = ".dcm", patient_id: str = "PHANTOM") -> list[Path]:
    """Write a (z, y, x) HU array as int16 CT slices that read back to the same array and geometry.

    Stored values are ``(hu - intercept) / slope``; the direction must be right-handed (DICOM
    derives the slice axis as the cross product of the row and column directions).
    """
    d = geometry.matrix()
    if np.linalg.det(d) < 0:
        raise DataError(f"Cannot write a DICOM series with a left-handed direction {geometry.direction}; "
                        "flip the array along z and negate the third direction column first.")
    stored = (np.asarray(array, dtype=np.float64) - rescale_intercept) / rescale_slope
    if stored.min(initial=0) < -32768 or stored.max(initial=0) > 32767:
        raise DataError(f"Values {array.min()}..{array.max()} do not fit int16 with intercept "
                        f"{rescale_intercept} and slope {rescale_slope}.")
    image = _image_of(np.asarray(array, dtype=np.float64), geometry)  # GDCM applies the inverse rescale
    series_tags = {
        "0008|0008": "DERIVED\\SECONDARY", "0008|0060": "CT", "0008|103e": "medtune phantom",
        "0010|0010": patient_id, "0010|0020": patient_id,
        "0020|000d": _uid(), "0020|000e": _uid(), "0020|0011": "1",
        "0020|0037": "\\".join(f"{v:.10g}" for v in (*d[:, 0], *d[:, 1])),  # row (x) then column (y) axis
        "0018|0050": f"{geometry.spacing[2]:.10g}",
        "0028|1052": f"{rescale_intercept:.10g}", "0028|1053": f"{rescale_slope:.10g}",
        "0028|1054": "HU",
        "0028|0100": "16", "0028|0101": "16", "0028|0102": "15", "0028|0103": "1",  # signed int16 storage
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")  # also for file names without .dcm
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        for tag, value in series_tags.items():
            slice_.SetMetaData(tag, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        slice_.SetMetaData("0020|0032", "\\".join(f"{v:.10g}" for v in position))
        slice_.SetMetaData("0020|0013", str(k + 1))
        slice_.SetMetaData("0008|0018", _uid())
        paths.append(folder / f"{k + 1:04d}{suffix}")
        writer.SetFileName(str(paths[-1]))
        writer.Execute(slice_)
    return paths


def world_to_voxel(points_xyz: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(N, 3) world mm (x, y, z) -> (N, 3) continuous voxel indices in array order (z, y, x)."""
    points = np.atleast_2d(np.asarray(points_xyz, dtype=np.float64))
    to_world = geometry.matrix() @ np.diag(geometry.spacing)
    index_xyz = np.linalg.solve(to_world, (points - np.asarray(geometry.origin)).T).T
    return index_xyz[:, ::-1].reshape(np.shape(points_xyz))


def voxel_to_world(indices_zyx: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(N, 3) voxel indices in array order (z, y, x) -> (N, 3) world mm (x, y, z)."""
    indices = np.atleast_2d(np.asarray(indices_zyx, dtype=np.float64))[:, ::-1]
    to_world = geometry.matrix() @ np.diag(geometry.spacing)
    world = indices @ to_world.T + np.asarray(geometry.origin)
    return world.reshape(np.shape(indices_zyx))


def volume_files(path: Path) -> list[Path]:
    """Every file a volume is made of: a DICOM folder's files, a header and its data file."""
    path = Path(path)
    if path.is_dir():
        return [d / f for d, files in _visible_dirs(path) for f in files]
    files = [path]
    if path.suffix.lower() in (".mhd", ".nhdr"):
        stem = path.name[: -len(path.suffix)]
        files += sorted(p for p in path.parent.glob(stem + ".*")
                        if p.name.lower().endswith((".raw", ".zraw", ".raw.gz")))
    return files


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _holds_dicom(folder: Path) -> bool:
    return any(_is_dicom_file(d / f) for d, files in _visible_dirs(folder) for f in files)


def _quiet(name: str) -> bool:
    lower = name.lower()
    return lower.startswith(".") or lower in _QUIET_NAMES or lower.endswith(_QUIET_SUFFIXES)


def find_volumes(folder: Path, *, exclude: Collection[str] = ("masks",)) -> dict[str, Path]:
    """Case id -> path for each volume file and each DICOM subfolder directly in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; pass the folder that holds one volume per case.")
    found: dict[str, Path] = {}
    skipped = []
    for entry in sorted(folder.iterdir()):
        if entry.name in exclude or _quiet(entry.name):
            continue
        suffix = volume_suffix(entry)
        if entry.is_file() and suffix:
            case_id = entry.name[: -len(suffix)]
        elif entry.is_dir() and _holds_dicom(entry):
            case_id = entry.name
        else:
            skipped.append(entry.name)
            continue
        if case_id in found:
            raise DataError(f"Two volumes for case {case_id!r} in {folder}: {found[case_id].name} and "
                            f"{entry.name}; keep one per case.")
        found[case_id] = entry
    if skipped:
        logger.warning("Ignored %d entries in %s that are not volumes (%s): %s", len(skipped), folder,
                       ACCEPTED, ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    return found


def resize(array: np.ndarray, shape: tuple[int, ...], *, mode: str = "trilinear") -> np.ndarray:
    """Resample a 2D or 3D array to ``shape`` (float32); "nearest" suits masks and labels.

    Linear modes use align_corners=False; "nearest" is torch's "nearest-exact" (pixel centres).
    """
    if array.ndim not in (2, 3) or len(shape) != array.ndim:
        raise ValueError(f"resize takes a 2D or 3D array and a shape of the same length, "
                         f"got {array.shape} -> {tuple(shape)}")
    align: bool | None = None  # torch's default; "nearest-exact" takes no align_corners
    if mode in ("trilinear", "bilinear", "linear"):
        torch_mode, align = ("trilinear" if array.ndim == 3 else "bilinear"), False
    elif mode == "nearest":
        torch_mode = "nearest-exact"
    else:
        raise ValueError(f"resize mode {mode!r} is not one of 'trilinear', 'nearest'")
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    size = tuple(int(s) for s in shape)
    return F.interpolate(tensor, size=size, mode=torch_mode, align_corners=align)[0, 0].numpy()


# --- 2D images (PNG / JPEG): arrays come out (H, W) = (y, x), grey. ---

IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 weights, as PIL's "L"


def _read_sitk_2d(path: Path) -> sitk.Image:
    try:
        image = _execute(path, _reader_for(path))
    except DataError as err:
        detail = str(err)
        if "Unknown PixelType" in detail:
            detail = "a pixel layout SimpleITK cannot read (grey + alpha?)"
        raise DataError(f"Cannot read image {path}: {detail}. Accepted: PNG or JPEG, grey, RGB or "
                        "RGBA; re-save the file as a plain grey or RGB PNG.") from err
    if image.GetDimension() == 3 and image.GetDepth() == 1:
        image = image[:, :, 0]
    if image.GetDimension() != 2:
        raise DataError(f"{path} holds a {image.GetDimension()}D image of size {image.GetSize()}; "
                        "a 2D picture is needed.")
    return image


def read_image_2d(path: Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Read a PNG/JPEG as grey float32 (H, W) in the file's units (0-255 for 8 bits).

    RGB(A) becomes luminance (alpha dropped); errors name the file. A truncated or damaged file,
    or one of more than ``max_pixels`` pixels, raises DataError before it is decoded.
    """
    path = Path(path)
    if not path.name.lower().endswith(IMAGE_2D_SUFFIXES):
        raise DataError(f"Cannot read image {path}: the name must end with one of "
                        f"{', '.join(IMAGE_2D_SUFFIXES)}.")
    try:
        shape = check_image_2d(path, max_pixels=max_pixels)
    except DataError as err:
        raise DataError(f"Cannot read image {err}") from err
    array = sitk.GetArrayFromImage(_read_sitk_2d(path)).astype(np.float32, copy=False)
    if array.ndim == 3:  # (H, W, C) vector pixels
        array = array[..., :3] @ _LUMA if array.shape[-1] >= 3 else array[..., 0]
    if array.shape != shape:
        raise DataError(f"{path}: decoded {array.shape} pixels but its header says {shape}; re-save it.")
    return np.ascontiguousarray(array, dtype=np.float32)


def resize_image_2d(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample (H, W) to ``shape`` bilinearly, float32, antialiased when shrinking.

    A 2000-pixel X-ray shrunk to 224 keeps its texture instead of aliasing; masks want
    ``resize(mode="nearest")`` instead.
    """
    if image.ndim != 2 or len(shape) != 2:
        raise ValueError(f"resize_image_2d takes (H, W) and a 2D shape, got {image.shape} -> {tuple(shape)}")
    if tuple(image.shape) == tuple(shape):
        return np.asarray(image, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=tuple(int(s) for s in shape), mode="bilinear",
                         align_corners=False, antialias=True)[0, 0].numpy()


def write_image_2d(array: np.ndarray, path: Path, *, quality: int = 95) -> None:
    """Write uint8 (H, W) grey or (H, W, 3) RGB as PNG or JPEG (by suffix; ``quality`` for JPEG)."""
    path = Path(path)
    if not path.name.lower().endswith(IMAGE_2D_SUFFIXES):
        raise DataError(f"Cannot write {path}: the name must end with one of "
                        f"{', '.join(IMAGE_2D_SUFFIXES)}.")
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ValueError(f"write_image_2d takes uint8 (H, W) or (H, W, 3), got {array.dtype} {array.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=array.ndim == 3)
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    sitk.WriteImage(image, str(path), useCompression=jpeg, compressionLevel=quality if jpeg else -1)
