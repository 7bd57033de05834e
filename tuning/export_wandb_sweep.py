"""python -m tuning.export_wandb_sweep --space NAME: the command of ``tuning.tracking.export``."""
from __future__ import annotations

import sys

from tuning.tracking.export import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
