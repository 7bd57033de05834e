"""python -m benchmarks.cluster_chaos [--num-samples 4] [--max-epochs 5] [--keep DIR]   (as root)

A real three-host Ray cluster on this machine (head + two workers, each in its own network
namespace, see ``benchmarks.netns_cluster``) runs an egfr sweep. Mid-sweep one worker's raylet
is SIGKILLed; with ``--max-failures 2`` its trial must resume from its last checkpoint on the
other worker. Later the driver (``python -m tuning.run``) is SIGKILLed mid-sweep, and
``--resume --name NAME`` must finish the run. Prints: trials finished, epochs redone, wall times.

The dataset (the egfr phantom) is made in the work folder and read only by the driver on the
head; trials get its arrays through Ray's object store over the bridge. The storage path is a
folder of the work folder, reachable by all three hosts because they share one filesystem.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.netns_cluster import NetnsCluster

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
NAME = "chaos"


@dataclass
class Chaos:
    """What happened: event times (s from the driver's start), the kills, and both driver exits."""

    started_at: float = 0.0  # epoch seconds when the first driver started
    events: dict[str, float] = field(default_factory=dict)
    worker_killed: str = ""  # address of the node whose raylet was killed
    driver_codes: list[int | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a Tune ``result.json`` (a JSON object a line), skipping a half-written line."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def trial_rows(sweep: Path) -> dict[str, list[dict[str, Any]]]:
    """trial id -> its per-epoch results, from every ``trial_<id>/result.json`` of the sweep."""
    return {p.parent.name.removeprefix("trial_"): read_rows(p)
            for p in sorted(sweep.glob("trial_*/result.json"))}


def mid_trial_on(rows: dict[str, list[dict]], address: str | None, max_epochs: int) -> str | None:
    """A trial whose latest epoch (1 <= epoch < max) ran on ``address`` (None: anywhere)."""
    for trial, history in rows.items():
        if history and 1 <= history[-1].get("epoch", 0) < max_epochs:
            if address is None or history[-1].get("node_ip") == address:
                return trial
    return None


def moved_off(rows: dict[str, list[dict]], address: str) -> list[str]:
    """Trials that reported from ``address`` and later from another node."""
    moved = []
    for trial, history in rows.items():
        ips = [r.get("node_ip") for r in history]
        if address in ips and any(ip != address for ip in ips[ips.index(address):]):
            moved.append(trial)
    return moved


def driver_argv(args: argparse.Namespace, work: Path, cluster: NetnsCluster, *,
                resume: bool) -> list[str]:
    """``python -m tuning.run`` for the chaos run, or its ``--resume``."""
    base = [sys.executable, "-m", "tuning.run", "--space", "egfr", "--name", NAME,
            "--results-dir", str(work / "results")]
    if resume:
        return [*base, "--resume"]
    return [*base, "--data", str(work / "data"), "--address", cluster.ray_address,
            "--storage-path", str(work / "storage"), "--scheduler", "none", "--max-failures", "2",
            "--num-samples", str(args.num_samples), "--max-epochs", str(args.max_epochs),
            "--cpus-per-trial", "1", "--top-k", "1", "--retrain-seeds", "1", "--no-wandb"]


def start_driver(cluster: NetnsCluster, argv: list[str], logfile: Path) -> subprocess.Popen:
    """The driver on the head host, its output to ``logfile``."""
    env = {**cluster.ray_env(), "WANDB_MODE": "offline",
           "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
    with open(logfile, "wb") as out:
        return cluster.popen(cluster.head, argv, cwd=ROOT, env=env, stdout=out,
                             stderr=subprocess.STDOUT)


def inject_faults(cluster: NetnsCluster, driver: subprocess.Popen, sweep: Path, *,
                  max_epochs: int, chaos: Chaos, t0: float, timeout_s: float) -> None:
    """Kill the last worker host (raylet and workers) while it holds a trial mid-way, then, once that trial has
    resumed on another node, SIGKILL the driver while some trial is mid-way."""
    victim = cluster.workers[-1]
    deadline = t0 + timeout_s
    while time.time() < deadline and driver.poll() is None:
        rows = trial_rows(sweep)
        if not chaos.worker_killed:
            trial = mid_trial_on(rows, victim.address, max_epochs)
            if trial:
                cluster.kill_host(victim)
                chaos.worker_killed = victim.address
                chaos.events["worker_killed"] = time.time() - t0
                chaos.notes.append(f"host {victim.address} (raylet and workers) SIGKILLed while trial {trial} was "
                                   f"past epoch {rows[trial][-1]['epoch']} (per the results "
                                   "written so far)")
        elif moved_off(rows, victim.address):
            chaos.events.setdefault("trial_resumed_elsewhere", time.time() - t0)
            trial = mid_trial_on(rows, None, max_epochs)
            if trial:
                os.kill(driver.pid, signal.SIGKILL)
                driver.wait()
                chaos.events["driver_killed"] = time.time() - t0
                chaos.notes.append(f"driver killed during trial {trial} at epoch "
                                   f"{rows[trial][-1]['epoch']}")
                return
        time.sleep(0.1)  # an epoch of the phantom takes 0.3 s and up here
    chaos.notes.append("the driver ended or timed out before both faults were injected")


def trial_evidence(rows: dict[str, list[dict]], *, max_epochs: int, dead: str) -> dict[str, dict]:
    """Per trial: epochs reported (in order), how many were reported twice, its nodes, the epochs
    at which a new process took it over (a restore; 1 would mean it restarted from zero), and
    for a trial that left the dead node the first epoch it reported elsewhere."""
    out = {}
    for trial, history in rows.items():
        epochs = [int(r.get("epoch", 0)) for r in history]
        ips = [r.get("node_ip") for r in history]
        procs = [(r.get("node_ip"), r.get("pid")) for r in history]
        first_after = None
        if dead in ips:
            last_dead = len(ips) - 1 - ips[::-1].index(dead)
            first_after = epochs[last_dead + 1] if last_dead + 1 < len(epochs) else None
        out[trial] = {"epochs": epochs, "redone": len(epochs) - len(set(epochs)),
                      "complete": sorted(set(epochs)) == list(range(1, max_epochs + 1)),
                      "nodes": sorted({ip for ip in ips if ip}),
                      "taken_over_at": [epochs[i] for i in range(1, len(procs))
                                        if procs[i] != procs[i - 1]],
                      "first_epoch_after_move": first_after}
    return out


def last_report_from(rows: dict[str, list[dict]], address: str) -> float:
    """Epoch seconds (whole) of the last result any trial reported from ``address``."""
    return max((r.get("timestamp", 0) for history in rows.values() for r in history
                if r.get("node_ip") == address), default=float("nan"))


def tune_trial_statuses(sweep: Path) -> dict[str, str]:
    """trial id -> status, as Tune's saved experiment state records it."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(sweep))
    return {t.trial_id: t.status for t in analysis.trials}


def files_holding(secret: bytes, folder: Path, *, skip: Path | None = None) -> list[str]:
    """Files under ``folder`` (links not followed) whose bytes contain ``secret``."""
    return [str(p) for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and not p.is_symlink() and p != skip and secret in p.read_bytes()]


def log_tail(path: Path, chars: int = 4000) -> str:
    """The end of a driver's log (for a failure message)."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"{path}: no log"


def run_drivers(cluster: NetnsCluster, work: Path, args: argparse.Namespace, chaos: Chaos) -> dict:
    """The sweep with both faults injected, then ``--resume``; times and what existed between."""
    sweep = work / "storage" / NAME / "sweep"
    t0 = chaos.started_at = time.time()
    driver = start_driver(cluster, driver_argv(args, work, cluster, resume=False),
                          work / "driver-1.log")
    try:
        inject_faults(cluster, driver, sweep, max_epochs=args.max_epochs, chaos=chaos, t0=t0,
                      timeout_s=args.timeout)
    finally:
        if driver.poll() is None:
            driver.kill()
        chaos.driver_codes.append(driver.wait())
    finished_before_resume = (work / "results" / NAME / "trials.csv").exists()
    t1 = time.time()
    resumed = start_driver(cluster, driver_argv(args, work, cluster, resume=True),
                           work / "driver-2.log")
    try:
        chaos.driver_codes.append(resumed.wait(timeout=args.timeout))
    except subprocess.TimeoutExpired:
        resumed.kill()
        chaos.driver_codes.append(resumed.wait())
        chaos.notes.append(f"the resumed driver ran past {args.timeout} s and was killed")
    token = cluster.token_path().read_bytes()
    return {"finished_before_resume": finished_before_resume, "resume_s": time.time() - t1,
            "token_in_files": files_holding(token, work, skip=cluster.token_path()),
            "token_in_ray_session_files": files_holding(token, cluster.ray_root)}


def outcome(work: Path, args: argparse.Namespace, chaos: Chaos) -> dict[str, Any]:
    """What the run left: trials.csv, summary.json, Tune's trial statuses, per-trial evidence."""
    sweep, results = work / "storage" / NAME / "sweep", work / "results" / NAME
    rows = trial_rows(sweep)
    evidence = trial_evidence(rows, max_epochs=args.max_epochs, dead=chaos.worker_killed)
    return {
        "evidence": evidence,
        "tune_statuses": tune_trial_statuses(sweep) if sweep.exists() else {},
        "trials": (pd.read_csv(results / "trials.csv")
                   if (results / "trials.csv").exists() else None),
        "summary": (json.loads((results / "summary.json").read_text())
                    if (results / "summary.json").exists() else None),
        "log_tails": [log_tail(work / f"driver-{i}.log") for i in (1, 2)],
        "figures": {
            "until_driver_killed_s": round(chaos.events.get("driver_killed", float("nan")), 1),
            "trials_finished": sum(e["complete"] for e in evidence.values()),
            "trials": len(evidence),
            "epochs_redone": sum(e["redone"] for e in evidence.values()),
            "trials_moved_off_dead_node": len(moved_off(rows, chaos.worker_killed)),
            "last_report_from_dead_node_s":
                last_report_from(rows, chaos.worker_killed) - chaos.started_at,
        },
    }


def run_chaos(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The whole scenario in ``work``; returns its figures and the evidence the test checks."""
    from core.data.phantoms.egfr import egfr_phantom

    work = Path(work)
    (work / "data").symlink_to(egfr_phantom(work / "phantom", n_cases=40, seed=3))
    t_start, chaos = time.time(), Chaos()
    with NetnsCluster(workdir=work, env={"MEDTUNE_CACHE_DIR": str(work / "cache")}) as cluster:
        cluster_up_s = time.time() - t_start
        drivers = run_drivers(cluster, work, args, chaos)
    out = {"chaos": chaos, **drivers, **outcome(work, args, chaos)}
    out["figures"] = {"cluster_up_s": round(cluster_up_s, 1), **out["figures"],
                      "resume_to_summary_s": round(drivers["resume_s"], 1),
                      "total_wall_s": round(time.time() - t_start, 1)}
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("--num-samples", type=int, default=4, help="sweep trials")
    p.add_argument("--max-epochs", type=int, default=5, help="epochs every trial must finish")
    p.add_argument("--timeout", type=float, default=600, help="seconds each driver may run")
    p.add_argument("--keep", type=Path,
                   help="work folder to keep (default: a temp folder, removed)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        out = run_chaos(args.keep, args)
    else:
        with tempfile.TemporaryDirectory(prefix="medtune-chaos-") as tmp:
            out = run_chaos(Path(tmp), args)
    for note in out["chaos"].notes:
        print(f"- {note}")
    print(f"driver exit codes: {out['chaos'].driver_codes}; events (s): {out['chaos'].events}")
    for trial, e in sorted(out["evidence"].items()):
        print(f"  trial {trial}: epochs {e['epochs']} on {e['nodes']}, "
              f"{e['redone']} reported twice, "
              f"taken over by a new process at epochs {e['taken_over_at']}")
    print(f"files holding the Ray auth token: {out['token_in_files']} (work folder), "
          f"{out['token_in_ray_session_files']} (Ray's session folders)")
    print(json.dumps(out["figures"], indent=2))
    kept = (out["chaos"].driver_codes == [-signal.SIGKILL, 0]
            and out["figures"]["trials_finished"] == args.num_samples and out["summary"])
    print("every trial finished and the resumed run wrote summary.json" if kept
          else "FAILED: see the notes and driver exit codes above")
    return 0 if kept else 1


if __name__ == "__main__":
    sys.exit(main())
