"""Ray's driver-side MLflow logger for a local ``file:`` store (what ``--mlflow`` without a URI
asks for). Imported lazily by ``tuning.tracking.callbacks`` (it imports mlflow)."""
from __future__ import annotations

from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from tuning.tracking.scoped_env import scoped_env


class FileStoreMLflowLoggerCallback(MLflowLoggerCallback):
    """MLflow 3 opens a ``file:`` store only with ``MLFLOW_ALLOW_FILE_STORE=true``; it is set
    while this callback opens the store at setup (MLflow keeps the opened store for the URI), and
    restored after."""

    def setup(self, *args: Any, **kwargs: Any) -> None:
        with scoped_env("MLFLOW_ALLOW_FILE_STORE", "true"):
            super().setup(*args, **kwargs)
