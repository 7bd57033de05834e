"""What of a Tune result a tracker logs: the trial's metrics, without its config or Ray's bookkeeping."""
from __future__ import annotations

import math
from typing import Any

from ray.tune.utils import flatten_dict

# Result keys that are bookkeeping, not metrics (Ray adds them to every report).
EXCLUDES = frozenset({"time_this_iter_s", "timestamp", "pid", "hostname", "node_ip", "done",
                      "time_since_restore", "iterations_since_restore", "should_checkpoint"})


def trial_metrics(result: dict[str, Any]) -> dict[str, float]:
    """A Tune result as one history row (W&B, MLflow): finite numbers only, no config, no bookkeeping."""
    flat = flatten_dict({k: v for k, v in result.items() if k != "config"}, delimiter="/")
    return {key: float(value) for key, value in flat.items()
            if key not in EXCLUDES and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(float(value))}
