"""Write a phantom once: generate into a staging folder, then move it into place atomically."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

MARKER = ".complete.json"  # hidden, so the readers skip it; written last


def generate_once(folder: Path, generate: Callable[[Path], None], *, meta: dict) -> Path:
    """Run ``generate(staging)`` and move the result to ``folder`` atomically, unless it is there.

    A hidden marker written last says the folder is complete; concurrent callers agree on one copy.
    """
    if (folder / MARKER).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        generate(staging)
        (staging / MARKER).write_text(json.dumps(meta))
        if folder.exists() and not (folder / MARKER).is_file():
            shutil.rmtree(folder)  # left over from an interrupted run
        try:
            os.replace(staging, folder)
        except OSError:
            if not (folder / MARKER).is_file():
                raise  # not another process that finished first
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
