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
    # CPU-only: a CPU wheel that pip's configured local wheel folders hold, else PyTorch's
    # CPU wheel index (an unpinned torch from PyPI would be a multi-GB CUDA build).
    wheels=$(mktemp -d)
    if pip download --quiet --no-deps --no-index torch==2.13.0 -d "$wheels" >/dev/null 2>&1; then
        pip install --quiet torch==2.13.0
    else
        pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu \
            --extra-index-url https://pypi.org/simple
    fi
    rm -rf "$wheels"
fi
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
pip install --quiet -e ".${extras}"
python -c "import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
