"""What an image file's header promises, checked against what the file holds, before decoding.

A volume header (MetaImage, NRRD, NIfTI) says how many voxels follow and where. Here the
header is parsed by hand, before any decoder touches the file, so that
- a data file named by the header is a regular file beside it (never an absolute path, ``..``,
  a device or a LIST/pattern of files; with ``root``, it must also resolve inside ``root``);
- a volume larger than ``max_voxels`` (or an image larger than ``max_pixels``) is refused
  before it is decoded (decompression bombs);
- a data file shorter than the header needs (truncated; for gzip, bzip2 and zlib streams
  counted while inflating, never reading past the size expected) is refused.
Each refusal is a DataError naming the file and the fix.
"""
from __future__ import annotations

import bz2
import gzip
import math
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO, Protocol

import numpy as np
from PIL import Image

from core.errors import DataError

MAX_HEADER = 64 * 1024  # bytes of text header read at most (MetaImage, NRRD)
CHUNK = 1024 * 1024
# MetaImage element types -> bytes per element (MetaIO's MET_ValueTypeSize)
_MET_SIZES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
              "MET_UINT": 4, "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8,
              "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}
_NRRD_SIZES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t",
                     "ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32",
                     "uint32_t", "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long",
                     "signed long long int", "int64", "int64_t", "ulonglong", "unsigned long long",
                     "unsigned long long int", "uint64", "uint64_t", "double"), 8),
}
_NRRD_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2",
                   "ascii": "text", "text": "text", "txt": "text", "hex": "hex"}


def _fail(path: Path, what: str, fix: str) -> DataError:
    return DataError(f"{path}: {what}; {fix}.")


def _regular_size(path: Path, shown: Path, role: str) -> int:
    """Byte size of ``path`` after checking it is a regular file (not a device, FIFO or folder)."""
    try:
        info = os.stat(path)
    except OSError:
        raise _fail(shown, f"its {role} is missing", "keep it beside the header, with the name the "
                    "header gives") from None
    if not stat.S_ISREG(info.st_mode):
        raise _fail(shown, f"its {role} is not a regular file", "point the header at a plain file "
                    "beside it")
    return info.st_size


def data_file(header: Path, name: str, *, root: Path | None = None) -> Path:
    """The file a header's ``name`` points at, refused unless it is a plain relative name below
    the header's folder (and, with ``root``, resolving inside ``root``: symlinks may not leave it)."""
    fix = "name a file beside the header (e.g. ElementDataFile = case.raw), or save it as one file"
    if not name or any(c in name for c in "%\0") or len(name.split()) != 1 or name.upper() == "LIST":
        raise _fail(header, f"its data file {name!r} is a LIST, a pattern or not one plain name",
                    "re-save the volume with its voxels in one file (.nii.gz, .mha or .nrrd)")
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith(("/", "\\")) \
            or ".." in posix.parts or ".." in windows.parts:
        raise _fail(header, f"its data file {name!r} is an absolute path or climbs out with '..'", fix)
    target = header.parent / name
    if root is not None:
        base = Path(root).resolve()
        if not target.resolve().is_relative_to(base):
            raise _fail(header, f"its data file {name!r} leads outside the folder it came in", fix)
    return target


def _read_text_header(path: Path, end: Callable[[list[str]], bool]) -> tuple[list[str], int]:
    """Header lines up to (and including) the line where ``end`` says it stops, and the byte
    offset just after it; refuses headers longer than MAX_HEADER."""
    with open(path, "rb") as handle:
        head = handle.read(MAX_HEADER)
    lines, offset = [], 0
    for raw in head.splitlines(keepends=True):
        offset += len(raw)
        if not raw.endswith(b"\n") and offset == len(head) and len(head) == MAX_HEADER:
            break
        lines.append(raw.decode("latin-1").rstrip("\r\n"))
        if end(lines):
            return lines, offset
    if len(head) < MAX_HEADER:  # the whole file is header (a detached .nhdr may end without a blank line)
        return lines, offset
    raise _fail(path, f"no complete header in its first {MAX_HEADER // 1024} KiB",
                "it is not a valid header of its kind, or it is truncated")


def _product(path: Path, sizes: list[int], max_voxels: int | None) -> int:
    if not sizes or any(s < 1 for s in sizes):
        raise _fail(path, f"the header gives the sizes {sizes}", "every size must be a positive integer")
    count = math.prod(sizes)
    if max_voxels is not None and count > max_voxels:
        raise _fail(path, f"{'x'.join(map(str, sizes))} = {count} voxels is over the limit of {max_voxels}",
                    "send a smaller volume or raise --max-voxels")
    return count


def _ints(path: Path, text: str, key: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise _fail(path, f"{key} {text!r} is not a list of integers", "fix the header") from None


class _Reader(Protocol):
    """What the checks read voxel bytes through: a file, or an inflating view of one."""

    def read(self, n: int, /) -> bytes: ...


class _ZlibReader:
    """A ``read(n)`` view of a zlib or gzip stream (MetaImage's CompressedData), bounded per call."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.inflate, self.pending = handle, zlib.decompressobj(47), b""

    def read(self, n: int) -> bytes:
        while not self.inflate.eof:
            self.pending = self.pending or self.handle.read(CHUNK)
            if not self.pending:
                raise EOFError("the compressed stream ends early")
            out = self.inflate.decompress(self.pending, n)
            self.pending = self.inflate.unconsumed_tail
            if out:
                return out
        return b""


def _inflated_at_least(path: Path, needed: int, opener: Callable[[BinaryIO], _Reader],
                       offset: int = 0) -> None:
    """Inflate the compressed data from ``offset`` until ``needed`` bytes came out (never further);
    a stream that ends or breaks first means a truncated or damaged file."""
    seen = 0
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            stream = opener(handle)
            while seen < needed:
                block = stream.read(min(CHUNK, needed - seen))
                if not block:
                    break
                seen += len(block)
    except (EOFError, OSError, zlib.error, ValueError) as err:
        raise _fail(path, f"its compressed data is damaged or truncated ({err})",
                    "copy or export the file again") from None
    if seen < needed:
        raise _fail(path, f"its compressed data inflates to {seen} bytes but the header needs {needed} "
                    "(truncated)", "copy or export the file again")


def _enough(path: Path, have: int, needed: int) -> None:
    if have < needed:
        raise _fail(path, f"holds {have} bytes of voxel data but its header needs {needed} (truncated)",
                    "copy or export the file again")


def _check_data(path: Path, *, needed: int, encoding: str, offset: int, deep: bool,
                from_end: bool = False) -> None:
    """Check ``needed`` bytes of decoded voxel data are there, from ``offset`` of ``path``."""
    size = _regular_size(path, path, "data file")
    if encoding == "raw":
        _enough(path, size if from_end else size - offset, needed)
    elif encoding in ("text", "hex"):  # at least a character (hex: two) per value
        _enough(path, size - offset, needed)
    elif deep:
        openers: dict[str, Callable[[BinaryIO], _Reader]] = {
            "gzip": lambda h: gzip.GzipFile(fileobj=h), "bzip2": bz2.BZ2File, "zlib": _ZlibReader}
        _inflated_at_least(path, needed, openers[encoding], offset)


def check_metaimage(path: Path, *, root: Path | None = None, max_voxels: int | None = None,
                    deep: bool = True) -> tuple[int, ...]:
    """Size (x, y, z, ...) of a .mha/.mhd after checking its header and data file."""
    lines, offset = _read_text_header(path, lambda ls: ls[-1].split("=")[0].strip() == "ElementDataFile")
    fields = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in lines if "=" in line)}
    if fields.get("ObjectType", "Image") != "Image" or "DimSize" not in fields \
            or "ElementDataFile" not in fields:
        raise _fail(path, "not a MetaImage volume header (ObjectType = Image, DimSize, ...)",
                    "export the volume again as .mha or .nii.gz")
    size = _ints(path, fields["DimSize"], "DimSize")
    channels = _ints(path, fields.get("ElementNumberOfChannels", "1"), "ElementNumberOfChannels")
    element = fields.get("ElementType", "").upper().replace("_ARRAY", "")
    if element not in _MET_SIZES:
        raise _fail(path, f"ElementType {fields.get('ElementType')!r} is unknown",
                    f"use one of {', '.join(_MET_SIZES)}")
    count = _product(path, size + [c for c in channels if c != 1], max_voxels)
    needed = count * _MET_SIZES[element]
    compressed = fields.get("CompressedData", "False").lower() == "true"
    encoding = "zlib" if compressed else ("raw" if fields.get("BinaryData", "True").lower() == "true"
                                          else "text")
    name = fields["ElementDataFile"]
    if name.upper() == "LOCAL":
        target, start = path, offset
    else:
        target = data_file(path, name, root=root)
        start = max(int(fields.get("HeaderSize", "0") or 0), 0)
    from_end = fields.get("HeaderSize", "0").strip() == "-1" and not compressed
    _check_data(target, needed=needed, encoding=encoding, offset=start, deep=deep, from_end=from_end)
    return tuple(size)


def check_nrrd(path: Path, *, root: Path | None = None, max_voxels: int | None = None,
               deep: bool = True) -> tuple[int, ...]:
    """Sizes of a .nrrd/.nhdr after checking its header and data (attached or detached)."""
    with open(path, "rb") as handle:
        if not handle.read(8).startswith(b"NRRD000"):
            raise _fail(path, "does not start with the NRRD magic 'NRRD000x'", "export it again as .nrrd")
    lines, offset = _read_text_header(path, lambda ls: len(ls) > 1 and not ls[-1].strip())
    fields = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#") and not value.startswith("="):
            fields[key.strip().lower()] = value.strip()
    sizes = _ints(path, fields.get("sizes", ""), "sizes")
    kind = fields.get("type", "").lower()
    if kind not in _NRRD_SIZES:
        raise _fail(path, f"type {kind!r} is not a numeric NRRD type", "re-save with a plain numeric type")
    encoding = _NRRD_ENCODINGS.get(fields.get("encoding", "").lower())
    if encoding is None:
        raise _fail(path, f"encoding {fields.get('encoding')!r} is not supported",
                    "use raw, gzip, bzip2, ascii or hex")
    needed = _product(path, sizes, max_voxels) * _NRRD_SIZES[kind] * (2 if encoding == "hex" else 1)
    skip = int(fields.get("byte skip", "0") or 0)
    name = fields.get("data file", fields.get("datafile"))
    target, start = (path, offset) if name is None else (data_file(path, name, root=root), max(skip, 0))
    if name is None and skip > 0:
        start += skip
    _check_data(target, needed=needed, encoding=encoding, offset=start, deep=deep,
                from_end=skip == -1 and encoding == "raw")
    return tuple(sizes)


def _nifti_header(path: Path, head: bytes) -> tuple[list[int], int, int, str | None]:
    """(sizes, bytes per voxel, data offset, numpy dtype when floating point) from a NIfTI-1 or
    NIfTI-2 single-file header."""
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348:
            dims = struct.unpack(order + "8h", head[40:56])
            datatype = struct.unpack(order + "h", head[70:72])[0]
            bitpix = struct.unpack(order + "h", head[72:74])[0]
            vox_offset, magic = int(struct.unpack(order + "f", head[108:112])[0]), head[344:348]
            single = magic == b"n+1\0"
            break
        if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:
            dims = struct.unpack(order + "8q", head[16:80])
            datatype = struct.unpack(order + "h", head[12:14])[0]
            bitpix = struct.unpack(order + "h", head[14:16])[0]
            vox_offset, magic = struct.unpack(order + "q", head[168:176])[0], head[4:8]
            single = magic == b"n+2\0"
            break
    else:
        raise _fail(path, "not a NIfTI-1 or NIfTI-2 file (no 348- or 540-byte header)",
                    "export the volume again as .nii.gz")
    if not single:
        raise _fail(path, "its header keeps the voxels in a separate .img file (a NIfTI pair or Analyze)",
                    "convert it to a single .nii.gz")
    if not 1 <= dims[0] <= 7 or bitpix < 8 or bitpix % 8:
        raise _fail(path, f"the header's dim[0]={dims[0]} or bitpix={bitpix} is invalid",
                    "export the volume again")
    floating = {16: order + "f4", 64: order + "f8"}.get(datatype)
    return list(dims[1:dims[0] + 1]), bitpix // 8, vox_offset, floating


def _refuse_nonfinite(path: Path, handle: _Reader, *, start: int, count: int, dtype: str) -> None:
    """Read ``count`` values of ``dtype`` from ``start`` of a stream; refuse NaN or infinity (ITK's
    NIfTI reader turns them into zeros without a word)."""
    item = int(dtype[-1])
    handle.read(start)
    left, bad = count, 0
    while left:
        block = handle.read(min(left * item, CHUNK // item * item))
        if not block or len(block) % item:
            break
        values = np.frombuffer(block, dtype=dtype)
        bad += values.size - int(np.count_nonzero(np.isfinite(values)))
        left -= values.size
    if bad:
        raise DataError(f"{path} holds {bad} NaN or infinite voxels; fill them (e.g. with the "
                        "background value) and save the volume again.")


def check_nifti(path: Path, *, max_voxels: int | None = None, deep: bool = True) -> tuple[int, ...]:
    """Sizes of a .nii/.nii.gz after checking its header and, streaming, its voxel bytes (and that
    floating-point voxels are finite)."""
    gz = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as handle:
            head = handle.read(540)
    except (EOFError, OSError, zlib.error) as err:
        raise _fail(path, f"cannot be read as {'gzip' if gz else 'NIfTI'} ({err})",
                    "export the volume again as .nii.gz") from None
    sizes, nbytes, offset, floating = _nifti_header(path, head)
    count = _product(path, sizes, max_voxels)
    needed = offset + count * nbytes
    if not gz:
        _enough(path, _regular_size(path, path, "file"), needed)
    elif deep:
        _inflated_at_least(path, needed, lambda h: gzip.GzipFile(fileobj=h))
    if deep and floating:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as handle:
            _refuse_nonfinite(path, handle, start=offset, count=count, dtype=floating)
    return tuple(sizes)


def check_volume_file(path: Path, *, root: Path | None = None, max_voxels: int | None = None,
                      deep: bool = True) -> tuple[int, ...]:
    """Size (x, y, z, ...) from the header of a volume file, after the checks this module makes.

    ``root``: the folder every file must resolve inside (an upload's folder). ``deep=False``
    skips inflating compressed data (a cheap header look).
    """
    path = Path(path)
    _regular_size(path, path, "file")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return check_nifti(path, max_voxels=max_voxels, deep=deep)
    if name.endswith((".mha", ".mhd")):
        return check_metaimage(path, root=root, max_voxels=max_voxels, deep=deep)
    if name.endswith((".nrrd", ".nhdr")):
        return check_nrrd(path, root=root, max_voxels=max_voxels, deep=deep)
    raise _fail(path, "is not a volume file this reader knows", "use .nii.gz, .nii, .mha, .mhd, .nrrd or .nhdr")


def check_image_2d(path: Path, *, max_pixels: int | None = None) -> tuple[int, int]:
    """(H, W) of a PNG/JPEG after checking its pixel count against ``max_pixels`` from the header
    (before decoding) and that the file is whole: a PNG's chunks all pass their CRCs up to IEND,
    a JPEG's entropy-coded data decodes to the end (at 1/8 scale, which reads it all cheaply)."""
    path = Path(path)
    _regular_size(path, path, "file")
    fix = "re-save it as a plain grey or RGB PNG or JPEG"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
            shape = _opened_image_2d(path, max_pixels, fix)
    except Image.DecompressionBombError:
        raise _fail(path, "has more pixels than the image library accepts", "send a smaller image") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as err:
        if isinstance(err, DataError):
            raise
        raise _fail(path, f"is damaged or truncated ({str(err).replace(str(path), path.name)})", fix) from None
    return shape


def _opened_image_2d(path: Path, max_pixels: int | None, fix: str) -> tuple[int, int]:
    with Image.open(path) as image:  # lazy: reads the header only
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise _fail(path, f"{width}x{height} = {width * height} pixels is over the limit of "
                        f"{max_pixels}", "send a smaller image or raise --max-pixels")
        if image.format not in ("PNG", "JPEG"):
            raise _fail(path, f"holds a {image.format} image, not PNG or JPEG", fix)
        if image.format == "PNG":
            image.verify()
        else:
            image.draft(image.mode, (max(width // 8, 1), max(height // 8, 1)))
            image.load()
    return height, width
