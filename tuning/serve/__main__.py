"""python -m tuning.serve results/<name> [--port 8000]: the HTTP app of ``tuning.serve.app``."""
from __future__ import annotations

import sys

from tuning.serve.app import main

if __name__ == "__main__":
    sys.exit(main())
