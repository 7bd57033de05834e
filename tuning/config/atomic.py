"""Result files written whole or not at all: a temp file in the same folder, then ``os.replace``,
so a reader (or a run killed mid-write) never sees half a ``summary.json`` or ``trials.csv``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temp_path)`` on a temp file beside ``path``, then move it onto ``path``."""
    path = Path(path)
    # the temp name ends like the target (``.splits.csv.x1y2.tmp.csv``) for writers that look at it
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(Path(temp))
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """``path.write_text(text)`` (UTF-8), atomically."""
    return write_atomic(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def write_csv_atomic(table: pd.DataFrame, path: Path) -> Path:
    """``table.to_csv(path, index=False)``, atomically."""
    return write_atomic(path, lambda temp: table.to_csv(temp, index=False))
