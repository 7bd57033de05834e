"""Ctrl-C mid-sweep: the run says it was interrupted (exit 130), writes nothing that reads as
finished, and ``--resume`` completes it; no file of the run holds a URL password."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "pl4nted-s3cret"
FINISHED = ("summary.json", "leaderboard.csv", "trials.csv", "report.md")


def _run_cli(args, env):
    return subprocess.Popen([sys.executable, "-m", "tuning.run", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_ctrl_c_mid_sweep_is_interrupted_and_resume_finishes(no_ray, tiny_egfr, tmp_path):
    env = {**os.environ, "MEDTUNE_CACHE_DIR": str(tmp_path / "cache")}
    mlflow = f"file://alice:{PASSWORD}@{tmp_path / 'mlruns'}"  # a file store: nothing to connect to
    args = ["--space", "egfr", "--data", str(tiny_egfr), "--scheduler", "none", "--max-epochs", "30",
            "--num-samples", "2", "--top-k", "1", "--retrain-seeds", "1", "--no-wandb",
            "--mlflow", mlflow, "--name", "cut", "--results-dir", str(tmp_path / "results")]
    run = tmp_path / "results" / "cut"
    driver = _run_cli(args, env)
    deadline = time.time() + 300
    while time.time() < deadline and driver.poll() is None \
            and not list((run / "sweep").glob("trial_*/checkpoint_*")):
        time.sleep(0.5)
    assert driver.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 130, err.decode()[-3000:]
    assert "interrupted; continue with --resume --name cut" in err.decode()
    assert not [name for name in FINISHED if (run / name).exists()]
    assert not list((run / "retrain").glob("*")), "retrained a partial sweep"

    resumed = _run_cli(["--resume", "--name", "cut", "--results-dir", str(tmp_path / "results"),
                        "--mlflow", mlflow], env)
    out2, err2 = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err2.decode()[-3000:]
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 2 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "early_stopped"}, trials[["status", "reason"]]
    assert json.loads((run / "summary.json").read_text(encoding="utf-8"))["trials"]["total"] == 2
    leaks = _files_holding(run, PASSWORD)
    for stream in (out, err, out2, err2):
        assert PASSWORD.encode() not in stream
    assert not leaks, leaks
