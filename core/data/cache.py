"""On-disk cache of preprocessed arrays, keyed by dataset content and preprocessing settings.

Every trial on a node memory-maps the same ``.npy`` files instead of re-reading the scans.
Layout: ``<cache_dir>/preprocessed/<key>/<name>.npy`` plus ``arrays.json`` listing the names;
a cache folder appears by one atomic rename, so a reader never sees half of one.
Hand-written because MONAI's ``PersistentDataset`` caches per item, keyed by the item, while
trials need whole arrays keyed by dataset content and settings, to share through Ray.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_INDEX = "arrays.json"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9._-]+$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


def _file_digest(path: Path, head_bytes: int, tail_bytes: int) -> tuple[int, str]:
    """Size and blake2b of the first ``head_bytes`` and the last ``tail_bytes`` of a file."""
    size = path.stat().st_size
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        if size > head_bytes + tail_bytes and hasattr(os, "posix_fadvise"):  # no read-ahead past
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_RANDOM)  # the parts hashed
        digest.update(handle.read(head_bytes))
        if size > head_bytes:
            handle.seek(max(head_bytes, size - tail_bytes))
            digest.update(handle.read(tail_bytes))
    return size, digest.hexdigest()


def dataset_fingerprint(files: Iterable[Path], *, chunk_bytes: int = 1 << 20,
                        tail_bytes: int | None = None) -> str:
    """Content hash of a dataset: each file's name relative to their common folder, size, head and tail.

    Folders are expanded to the files under them. Reads at most ``chunk_bytes`` from the head and
    ``tail_bytes`` (default: ``chunk_bytes``) from the tail of each file.
    """
    paths: set[Path] = set()
    for item in files:
        item = Path(item).absolute()
        if item.is_dir():
            paths.update(p for p in item.rglob("*") if p.is_file())
        else:
            paths.add(item)
    if not paths:
        return hashlib.blake2b(b"", digest_size=16).hexdigest()
    common = Path(os.path.commonpath([p.parent for p in paths]))
    digest = hashlib.blake2b(digest_size=16)
    for rel, path in sorted((p.relative_to(common).as_posix(), p) for p in paths):
        size, content = _file_digest(path, chunk_bytes, chunk_bytes if tail_bytes is None else tail_bytes)
        digest.update(f"{rel}\0{size}\0{content}\n".encode())
    return digest.hexdigest()


def hash_settings(settings: Mapping[str, Any]) -> str:
    """Stable short hash of JSON-able settings (tuples and lists hash alike, keys sorted)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _complete(folder: Path) -> bool:
    return (folder / _INDEX).is_file()


def _load(folder: Path) -> dict[str, np.ndarray]:
    """Every array of a complete cache folder, memory-mapped; raises if a file is missing or short."""
    names = json.loads((folder / _INDEX).read_text())["arrays"]
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in names}


Allocate = Callable[[str, tuple[int, ...], Any], np.ndarray]


def _allocator(folder: Path, names: list[str]) -> Allocate:
    """``allocate(name, shape, dtype)``: a writable ``<folder>/<name>.npy`` memory map, recorded."""
    def allocate(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        if not _SAFE_NAME.match(name):
            raise ValueError(f"Array name {name!r} must be letters, digits, _ or -, parts joined by '/'")
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        names.append(name)
        return np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
    return allocate


def cached_arrays(*, cache_dir: Path, key: str,
                  build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays under ``key``: memory-mapped (read-only) from the cache, built and stored first if absent."""
    def fill(allocate: Allocate) -> None:
        for name, array in build().items():
            allocate(name, array.shape, array.dtype)[...] = array
    return cached_build(cache_dir=cache_dir, key=key, fill=fill)


def cached_build(*, cache_dir: Path, key: str, fill: Callable[[Allocate], None]) -> dict[str, np.ndarray]:
    """Arrays under ``key``, memory-mapped read-only; if absent, ``fill(allocate)`` writes them first
    straight into memory-mapped files, so building never holds the arrays in RAM."""
    if not _SAFE_KEY.match(key):
        raise ValueError(f"Cache key {key!r} must be letters, digits, '.', '_' or '-'")
    final = Path(cache_dir) / "preprocessed" / key
    if _complete(final):
        try:
            arrays = _load(final)
        except (OSError, ValueError, KeyError) as err:  # truncated .npy, bad index, missing file
            logger.warning("Preprocessed cache %s cannot be read (%s); rebuilding it", final, err)
            shutil.rmtree(final, ignore_errors=True)
        else:
            logger.info("Preprocessed cache hit: %s", final)
            return arrays
    logger.info("Preprocessed cache miss: building %s", final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        names: list[str] = []
        fill(_allocator(staging, names))
        (staging / _INDEX).write_text(json.dumps({"arrays": names}))  # written last: marks complete
        if final.exists() and not _complete(final):
            logger.warning("Removing an incomplete cache folder %s", final)
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(staging, final)
        except OSError:
            if not _complete(final):  # not a concurrent builder that finished first
                raise
            logger.info("Another process built %s first; using its copy", final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _load(final)
