"""python -m tuning.predict RUN INPUT... : the command of ``tuning.serve.predict``."""
from __future__ import annotations

import sys

from tuning.serve.predict import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
