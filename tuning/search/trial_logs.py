"""Where a Tune trial writes its TensorBoard event files: its own folder under the storage path."""
from __future__ import annotations

import logging
from pathlib import Path

from ray import tune

logger = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"


def trial_log_dir() -> str | None:
    """``<storage>/<experiment>/<trial>/tensorboard`` when the storage path is a local or mounted
    folder; None (no event files) for a bucket, which Lightning's logger cannot write to here.

    Not ``get_trial_dir()``: with reused actors that is a staging folder that may never reach
    the storage path. ``get_storage()`` is a Ray DeveloperAPI (seen working in Ray 2.60).
    """
    storage = tune.get_context().get_storage()
    if storage.storage_filesystem.type_name != "local":
        logger.info("storage %s is not a local folder: no TensorBoard event files for this trial",
                    storage.storage_path)
        return None
    return str(Path(storage.trial_fs_path) / TENSORBOARD_DIR)
