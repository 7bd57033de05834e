"""What a run's Ray worker processes get: an environment handed to ``ray.init(runtime_env=...)``
once by whoever starts Ray (``tuning.pipeline.start_ray``, the tests' cluster), and a quiet
logging scope for each trial that is undone when the trial ends."""
from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Any, Iterator

# A trial that ASHA stops may be mid-epoch; Tune hands its process to the next trial only once
# that epoch ends, and gives up after TUNE_FUNCTION_THREAD_TIMEOUT_S (2 s by default), erroring
# the next trial. Read by the trial's own process when it is reused.
STOP_WAIT_S = "3600"
QUIET_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda",
                 "lightning.pytorch.utilities.rank_zero", "lightning_fabric.utilities.seed",
                 "ray.train")  # Lightning's tips and device banners; a line per saved checkpoint


def worker_runtime_env() -> dict[str, Any]:
    """Ray's ``runtime_env`` for a run's workers: the trial wait above."""
    return {"env_vars": {"TUNE_FUNCTION_THREAD_TIMEOUT_S": STOP_WAIT_S}}


@contextlib.contextmanager
def quiet_trial() -> Iterator[None]:
    """Within a trial: no Lightning tips or device banners, no line per saved checkpoint (noise in
    a sweep of many short trials). Logger levels and warning filters are restored on exit."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
