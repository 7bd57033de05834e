"""W&B tracking: one run per trial and per retrain, offline without a key, test metrics in each
retrain's summary, never a failed sweep because of W&B, and never an API key in the results."""
import json
import logging
import struct
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.data.prepared import DataOptions
from tuning.config.options import RunOptions
from tuning.search.settings import SweepSettings

wandb = pytest.importorskip("wandb")
FAKE_KEY = "fake-key-0123456789abcdef0123456789abcdef01234567"
BLOCK = 32768  # W&B's transaction log: LevelDB-style 32 KiB blocks of 7-byte-headed chunks


def wandb_records(path: Path):
    """The protobuf records of an offline run's ``run-*.wandb`` file."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, chunk = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            break
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            yield record
            chunk = b""


def offline_runs(folder: Path) -> list[dict]:
    """Each offline run under ``folder``: job type, group, tags, config (key -> JSON value), history
    rows (key -> JSON value) and final summary."""
    runs = []
    for path in sorted(folder.glob("offline-run-*/run-*.wandb")):
        run = {"summary": {}, "config": {}, "history": [], "tags": set()}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.update(job_type=record.run.job_type, group=record.run.run_group)
                run["tags"] |= set(record.run.tags)
                run["config"].update({_key(item): item.value_json for item in record.run.config.update})
            elif kind == "history":
                run["history"].append({_key(item): item.value_json for item in record.history.item})
            elif kind == "summary":
                run["summary"].update({_key(item): item.value_json for item in record.summary.update})
        runs.append(run)
    return runs


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)  # W&B splits "val/auroc" into a nested key


def fake_retrain(tmp_path, rank=0, seed=42):
    folder = tmp_path / f"ckpt{rank}{seed}"
    folder.mkdir()
    history = [{"epoch": 1, "val/auroc": 0.6, "val/loss": 0.7}, {"epoch": 2, "val/auroc": 0.7, "val/loss": 0.6}]
    (folder / "history.json").write_text(json.dumps(history))
    test = {"auroc": {"value": 0.75, "ci_low": 0.6, "ci_high": 0.9}}
    return SimpleNamespace(rank=rank, seed=seed, val_score=0.7, checkpoint_dir=folder,
                           config={"optim/lr": 1e-3, "data/shape": (16, 16, 16), "train/seed": seed},
                           evaluation={"threshold": 0.4, "test": test})


def test_a_trial_config_reaches_wandb_flat_and_readable():
    from tuning.tracking.wandb_logging import wandb_config

    nested = {"optim": {"lr": 1e-3}, "data": {"shape": (16, 16, 16)}, "rank": 0}
    assert wandb_config(nested) == {"optim.lr": 1e-3, "data.shape": [16, 16, 16], "rank": 0}
    assert wandb_config({"optim/lr": 1e-3}) == {"optim.lr": 1e-3}


def test_a_retrain_is_one_offline_run_with_its_test_metrics(tmp_path):
    from tuning.tracking.callbacks import log_wandb_retrains

    runs = [fake_retrain(tmp_path, seed=42), fake_retrain(tmp_path, seed=43)]
    logged = log_wandb_retrains(runs, mode="offline", project="p", group="g", folder=tmp_path / "wb",
                                metric="val/auroc")
    found = offline_runs(tmp_path / "wb" / "wandb")
    assert logged == 2 and len(found) == 2
    for run in found:
        assert run["job_type"] == "retrain" and run["group"] == "g"
        assert {"optim.lr", "data.shape", "train.seed"} <= set(run["config"])
        assert float(run["summary"]["test/auroc"]) == 0.75
        assert float(run["summary"]["best_val/auroc"]) == 0.7
        assert float(run["summary"]["test/auroc_ci_low"]) == 0.6


def test_a_wandb_failure_is_a_warning_and_the_sweep_goes_on(monkeypatch, caplog, tmp_path):
    from tuning.tracking.wandb_logging import WandbTrialCallback, log_retrains

    def broken(*args, **kwargs):
        raise ConnectionError("W&B is down")

    monkeypatch.setattr(wandb, "init", broken)
    callback = WandbTrialCallback(project="p", group="g", job_type="trial", mode="offline",
                                  dir=str(tmp_path / "trials"))
    trial = SimpleNamespace(trial_id="x", config={"optim/lr": 1e-3})
    with caplog.at_level(logging.WARNING):
        callback.log_trial_start(trial)
        callback.log_trial_result(1, trial, {"val/auroc": 0.5})  # switched off: no-op
        callback.log_trial_end(trial)
        callback.on_experiment_end([trial])
        logged = log_retrains([fake_retrain(tmp_path)], mode="offline", project="p", group="g",
                              folder=tmp_path / "wb", metric="val/auroc")
    assert logged == 0
    assert "W&B logging stopped" in caplog.text and "W&B is down" in caplog.text
    assert "was not logged" in caplog.text


def test_trials_are_runs_of_one_writer_with_every_reported_epoch(tmp_path):
    """Runs from one thread in this process: each keeps its epochs, config, group and tags, even
    when another trial's run is open at the same time (two trials in flight)."""
    import pickle

    from tuning.tracking.wandb_logging import WandbTrialCallback

    callback = WandbTrialCallback(project="p", group="g", job_type="trial", mode="offline",
                                  dir=str(tmp_path), tags=("egfr", "tpe"))
    callback = pickle.loads(pickle.dumps(callback))  # Tune pickles its callbacks
    callback.setup()
    trials = [SimpleNamespace(trial_id=f"t{i}", config={"optim": {"lr": 10.0 ** -i}}) for i in (1, 2)]
    for trial in trials:
        callback.log_trial_start(trial)
    for epoch in (1, 2, 3):
        for trial in trials:
            callback.log_trial_result(epoch, trial, {"val/auroc": 0.5 + epoch / 10, "epoch": epoch,
                                                     "done": False, "config": {"x": 1}})
    callback.log_trial_end(trials[0])  # the other one ends with the experiment (ASHA-stopped)
    callback.on_experiment_end(trials)
    runs = offline_runs(tmp_path / "wandb")
    assert len(runs) == 2
    for run in runs:
        assert run["job_type"] == "trial" and run["group"] == "g"
        assert set(run["config"]) - {"_wandb"} == {"optim.lr"}
        assert float(run["summary"]["val/auroc"]) == pytest.approx(0.8)
        assert float(run["summary"]["epoch"]) == 3 and "done" not in run["summary"]
    tags = [set(record.run.tags) for path in tmp_path.glob("wandb/offline-run-*/run-*.wandb")
            for record in wandb_records(path) if record.WhichOneof("record_type") == "run"]
    assert tags and all(tag == {"egfr", "tpe"} for tag in tags)


@pytest.mark.parametrize("search,scheduler,expected", [
    ("tpe", "auto", "scheduler:asha"), ("random", "none", "scheduler:none"),
    ("wandb-bayes", "auto", "scheduler:wandb-hyperband")])
def test_sweep_tags_name_the_space_the_search_and_the_scheduler_it_ran(search, scheduler, expected):
    from tuning.tracking.callbacks import sweep_tags

    tags = sweep_tags("egfr", SweepSettings(search=search, scheduler=scheduler))
    assert tags == ("space:egfr", f"search:{search}", expected)


def test_a_sweep_is_one_group_of_runs_with_searched_params_and_its_metric_per_epoch(tmp_path):
    """What W&B's parallel-coordinates and parameter-importance panels read: one group, the
    searched parameters in each run's config, the metric every epoch and, in the summary, the
    trial's best (not its last) value, also for a trial stopped after a worse epoch."""
    from tuning.tracking.callbacks import sweep_tags, wandb_callbacks

    tags = sweep_tags("egfr", SweepSettings(search="random"))
    [callback] = wandb_callbacks(mode="offline", project="p", group="egfr-random-s1",
                                 job_type="trial", folder=tmp_path, tags=tags,
                                 metric="val/auroc", metric_mode="max")
    curves = {"a": [0.6, 0.5, 0.7], "b": [0.8, 0.55]}  # b ends below its best, as ASHA may stop it
    trials = {key: SimpleNamespace(trial_id=key, config={"optim/lr": lr, "model/dropout": 0.1,
                                                         "train/max_epochs": 3})
              for key, lr in (("a", 1e-3), ("b", 1e-4))}
    callback.setup()
    for key, trial in trials.items():
        callback.log_trial_start(trial)
        for epoch, value in enumerate(curves[key], start=1):
            callback.log_trial_result(epoch, trial, {"val/auroc": value, "val/loss": 1 - value,
                                                     "epoch": epoch})
        callback.log_trial_end(trial)
    callback.on_experiment_end(list(trials.values()))
    runs = sorted(offline_runs(tmp_path / "wandb"), key=lambda run: run["config"]["optim.lr"])
    assert len(runs) == 2 and {run["group"] for run in runs} == {"egfr-random-s1"}
    assert all(run["tags"] == {"space:egfr", "search:random", "scheduler:asha"} for run in runs)
    for run, key in zip(runs, ("b", "a")):
        assert {"optim.lr", "model.dropout", "train.max_epochs"} <= set(run["config"])
        assert [float(row["val/auroc"]) for row in run["history"]] == curves[key]
        best = [max(curves[key][:i + 1]) for i in range(len(curves[key]))]
        assert [float(row["best_val/auroc"]) for row in run["history"]] == best
        assert float(run["summary"]["best_val/auroc"]) == max(curves[key])
    assert float(runs[0]["summary"]["val/auroc"]) == 0.55  # the last epoch stays the metric's own


def test_a_min_metric_logs_its_lowest_value_so_far(tmp_path):
    from tuning.tracking.wandb_logging import WandbTrialCallback

    callback = WandbTrialCallback(project="p", group="g", job_type="trial", mode="offline",
                                  dir=str(tmp_path), metric="val/loss", metric_mode="min")
    trial = SimpleNamespace(trial_id="t", config={"optim/lr": 1e-3})
    callback.log_trial_start(trial)
    for epoch, loss in enumerate([0.7, 0.5, 0.6], start=1):
        callback.log_trial_result(epoch, trial, {"val/loss": loss, "epoch": epoch})
    callback.on_experiment_end([trial])
    [run] = offline_runs(tmp_path / "wandb")
    assert [float(row["best_val/loss"]) for row in run["history"]] == [0.7, 0.5, 0.5]


# --- whole runs ------------------------------------------------------------------------------

def tiny_options(tiny_egfr, tmp, name):
    return RunOptions(
        space="egfr", data=DataOptions(root=tiny_egfr, cache_dir=tmp / "cache"),
        sweep=SweepSettings(num_samples=2, max_epochs=2, max_concurrent=2, seed=1),
        overrides={"data/shape": (16, 16, 16), "train/batch_size": 8},
        name=name, results_dir=tmp / "results", top_k=1, retrain_seeds=2, wandb=True,
        wandb_project="medtune-test")


@pytest.mark.slow
def test_without_a_key_every_trial_and_retrain_is_an_offline_run(ray_local, tiny_egfr, tmp_path,
                                                                  monkeypatch):
    from tuning.pipeline import run_pipeline

    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc, no wandb settings: no login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))
    options = tiny_options(tiny_egfr, tmp_path, "nokey")
    run_pipeline(options)
    runs = offline_runs(options.results_path() / "wandb")
    assert sorted(run["job_type"] for run in runs) == ["retrain", "retrain", "trial", "trial"]
    assert {run["group"] for run in runs} == {"nokey"}
    for run in runs:
        assert "optim.lr" in run["config"] and "val/auroc" in run["summary"]
        assert "best_val/auroc" in run["summary"]
        assert run["tags"] == {"space:egfr", "search:tpe", "scheduler:asha"}
    assert all("test/auroc" in run["summary"] for run in runs if run["job_type"] == "retrain")


def files_under(*folders: Path) -> list[Path]:
    return [path for folder in folders for path in Path(folder).rglob("*")
            if path.is_file() and not path.is_symlink()]


@pytest.mark.slow
def test_no_api_key_is_written_into_results_storage_wandb_or_ray_logs(no_ray, tiny_egfr, tmp_path,
                                                                      monkeypatch, caplog, capfd):
    """A key in the driver's environment reaches no file: not the results, the storage path, the
    W&B offline folder, W&B's settings, nor any log of the Ray session (which holds every runtime
    env Ray's agent set up). Ray starts here, with the key already in the environment."""
    import ray

    from tuning.pipeline import run_pipeline

    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")  # nothing connects
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # W&B's own files
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))
    options = replace(tiny_options(tiny_egfr, tmp_path, "withkey"),
                      storage_path=str(tmp_path / "storage"))
    with caplog.at_level(logging.DEBUG):
        run_pipeline(options)
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    ray.shutdown()  # logs flushed
    assert len(offline_runs(options.results_path() / "wandb")) == 4
    files = files_under(options.results_path(), tmp_path / "storage", tmp_path / "wandb-home",
                        session)
    assert len(files) > 50 and any(path.name == "runtime_env_agent.log" for path in files)
    leaked = [str(path) for path in files if FAKE_KEY.encode() in path.read_bytes()]
    assert not leaked
    out, err = capfd.readouterr()
    assert FAKE_KEY not in caplog.text + out + err
