"""Checks on a DICOM series that its reader does not make: a damaged slice it skips without a
word, a slice missing in the middle (uneven spacing), two slices at one position."""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import DataError

HEAD_BYTES = 64 * 1024  # a slice's header (where its series UID sits) lies within this
GAP_TOLERANCE = 0.1  # a slice gap may differ from the median gap by this fraction
DUPLICATE_MM = 1e-3  # slices closer than this along the slice normal share a position


def refuse_damaged_slices(folder: Path, series_uid: str, files: Sequence[str]) -> None:
    """Refuse when a file in ``folder`` carries ``series_uid`` but the reader left it out of the
    series: a truncated or damaged slice, which would otherwise go missing silently."""
    used = {Path(f).name for f in files}
    uid = re.compile(re.escape(series_uid.encode()) + rb"(?![0-9.])")
    for entry in sorted(folder.iterdir()):
        if entry.name in used or entry.name.startswith(".") or not entry.is_file():
            continue
        with open(entry, "rb") as handle:
            head = handle.read(HEAD_BYTES)
        if head[128:132] == b"DICM" and uid.search(head):
            raise DataError(f"{entry} belongs to DICOM series {series_uid} but cannot be read "
                            "(truncated or damaged); export the series again or remove that file.")


def check_slice_positions(folder: Path, positions: Sequence[str], direction: Sequence[float],
                          files: Sequence[str]) -> None:
    """Refuse duplicate slice positions and uneven gaps along the slice normal (a missing slice).

    ``positions``: each slice's ImagePositionPatient (0020,0032) text, x\\y\\z mm; ``direction``:
    the series' 3x3 direction, row-major, whose third column is the slice normal.
    """
    if len(positions) < 3 or not all(positions):
        return
    try:
        points = np.array([[float(v) for v in p.split("\\")] for p in positions], dtype=np.float64)
    except ValueError:
        raise DataError(f"{folder}: a slice has an unreadable ImagePositionPatient; export the "
                        "series again.") from None
    along = points @ np.asarray(direction, dtype=np.float64).reshape(3, 3)[:, 2]
    order = np.argsort(along, kind="stable")
    gaps = np.diff(along[order])
    if (gaps < DUPLICATE_MM).any():
        k = int(np.argmax(gaps < DUPLICATE_MM))
        names = Path(files[order[k]]).name, Path(files[order[k + 1]]).name
        raise DataError(f"{folder}: slices {names[0]} and {names[1]} share the position "
                        f"{along[order[k]]:.3f} mm; remove the duplicate slice.")
    median = float(np.median(gaps))
    worst = int(np.argmax(np.abs(gaps - median)))
    if abs(gaps[worst] - median) > GAP_TOLERANCE * median:
        names = Path(files[order[worst]]).name, Path(files[order[worst + 1]]).name
        raise DataError(f"{folder}: the gap between slices {names[0]} and {names[1]} is "
                        f"{gaps[worst]:.3f} mm where the others are {median:.3f} mm (a missing "
                        "slice?); export the whole series again.")
