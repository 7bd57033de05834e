"""python -m tuning.compare RUN... : the command of ``tuning.results.compare``."""
from __future__ import annotations

import sys

from tuning.results.compare import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
