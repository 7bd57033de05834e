"""Importing medtune changes nothing global: no environment variable, warnings filter, matplotlib
backend or logger level. (The CLIs' main functions set what their own process needs.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Third-party libraries first, so that what they do on import is not blamed on medtune's modules.
PROBE = r"""
import importlib, json, logging, os, sys, warnings
from pathlib import Path

import matplotlib, numpy, optuna, pandas, pytorch_lightning, ray, ray.tune, torch, wandb  # noqa
import monai  # noqa

def levels():
    return {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
            if isinstance(logger, logging.Logger)}

def state():
    return {"env": dict(os.environ), "filters": [repr(f) for f in warnings.filters],
            "backend": matplotlib.get_backend(), "root_level": logging.getLogger().level}

root = Path(sys.argv[1])
before, levels_before = state(), levels()
modules = sorted(".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
                 for package in ("core", "search_spaces", "tuning")
                 for p in (root / package).rglob("*.py") if p.name != "__main__.py")
for name in modules:
    importlib.import_module(name)
after, levels_after = state(), levels()
changed_levels = {name: level for name, level in levels_after.items()
                  if level != levels_before.get(name, logging.NOTSET)}
print(json.dumps({"modules": len(modules), "changed_levels": changed_levels,
                  "changed": {k: [before[k], after[k]] for k in before if before[k] != after[k]}}))
"""


def test_importing_every_module_changes_no_global_state():
    env = {**os.environ, "MPLBACKEND": "svg"}  # a backend a stray matplotlib.use("Agg") would change
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["modules"] > 50
    assert found["changed"] == {}, found["changed"]
    assert found["changed_levels"] == {}, found["changed_levels"]
