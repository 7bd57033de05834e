"""What ITK prints while it reads: collected, and turned into DataError when it means damage.

SimpleITK's decoders (MetaIO, libjpeg, the DICOM series reader) report some damage only as a
warning on stderr and then hand back zeros (a truncated .raw, a JPEG cut short, a missing
slice). Reads run inside ``itk_messages()``, which points file descriptor 2 at a temporary file
for the duration (one read at a time), so those warnings can be inspected instead of lost.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import DataError

logger = logging.getLogger(__name__)

# Phrases ITK, MetaIO, libjpeg, libpng and GDCM print when the data is incomplete or damaged.
DAMAGE = ("premature end", "not read completely", "missing slices", "non uniform sampling",
          "truncat", "corrupt", "short read", "fread got only", "extraneous bytes", "crc error",
          "unexpected end")
_LOCK = threading.Lock()


@dataclass
class Said:
    """The text printed to stderr while an ``itk_messages()`` block ran (filled when it ends)."""

    text: str = ""


@contextlib.contextmanager
def itk_messages() -> Iterator[Said]:
    """Collect what is printed to file descriptor 2 while the block runs."""
    said = Said()
    with _LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to redirect: nothing to collect
            yield said
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said.text = sink.read(64 * 1024).decode("utf-8", errors="replace")


def refuse_damage(path: Path, text: str) -> None:
    """Raise DataError when ``text`` (what the reader printed) reports damaged data; log the rest."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    damage = [line for line in lines if any(word in line.lower() for word in DAMAGE)]
    if damage:
        raise DataError(f"{path} is damaged or incomplete: the reader reports '{damage[0][:200]}'; "
                        "copy or export it again.")
    if lines:
        logger.warning("Reading %s: %s", path, " | ".join(lines)[:500])
