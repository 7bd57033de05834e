#!/usr/bin/env bash
# Create .venv and install medtune: the CPU build of torch unless a GPU is present or torch is
# already installed (GPU users keep theirs). Usage: bash setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -d .venv ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
if python -c "import torch" 2>/dev/null; then
    echo "keeping installed torch $(python -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1; then
    pip install --quiet torch
else
    # CPU-only: the CPU build of torch, pinned, from pip's configured index (an unpinned torch
    # could be a multi-GB CUDA build). For another index, set pip's own variables first, e.g.
    # PIP_INDEX_URL / PIP_EXTRA_INDEX_URL, or PIP_FIND_LINKS for a folder of wheels.
    pip install --quiet torch==2.13.0
fi
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
pip install --quiet -e ".${extras}"
python -c "import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
