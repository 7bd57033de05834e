"""A run's files are safe: the results folder is claimed before preprocessing, --resume takes its
options from the run (results folder or shared storage) and refuses changed flags, result files
are written whole, URL passwords are masked, and a sweep whose retrains all fail ends clearly."""
import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from ray import tune

import tuning.run as run_module
from tuning.config.atomic import write_atomic, write_csv_atomic
from tuning.config.options import OPTIONS_FILE, OPTIONS_YAML, load_options
from tuning.config.secrets import redact, redact_text
from tuning.pipeline import RetrainsFailed, check_fingerprint, finish
from tuning.search.interrupt import STOP, RunInterrupted, fitting
from tuning.search.sweep import fit_or_resume

PASSWORD = "s3cret-Pw"
URL = f"postgresql://alice:{PASSWORD}@db.example:5432/optuna"


@pytest.mark.parametrize("text,expected", [
    (URL, "postgresql://alice:***@db.example:5432/optuna"),
    (f"mysql+pymysql://bob:{PASSWORD}@h/db?x=1", "mysql+pymysql://bob:***@h/db?x=1"),
    (f"see https://:{PASSWORD}@host/ and s3://k:{PASSWORD}@b", "see https://:***@host/ and s3://k:***@b"),
    ("http://host:8080/path@x", "http://host:8080/path@x"),  # a port is not a password
    ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
    ("plain text", "plain text"),
])
def test_url_passwords_are_masked(text, expected):
    assert redact_text(text) == expected


def test_redact_walks_nested_values():
    masked = redact({"a": [URL, 3, (URL,)], "b": None})
    assert PASSWORD not in json.dumps(masked) and masked["a"][1] == 3 and masked["b"] is None


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def broken(temp: Path) -> None:
        temp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(target, broken)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    write_csv_atomic(pd.DataFrame({"a": [1]}), target)
    assert target.read_text().splitlines() == ["a", "1"]


def _start(monkeypatch, argv):
    """main(argv) with the pipeline replaced by a recorder: what would have run, and the exit code."""
    seen = {}

    def fake(options, *, resume, fingerprint):
        seen.update(options=options, resume=resume, fingerprint=fingerprint,
                    claimed=options.results_path().is_dir(),
                    saved=(options.results_path() / OPTIONS_FILE).is_file())
        raise KeyboardInterrupt  # stands for Ctrl-C during preprocessing

    monkeypatch.setattr(run_module, "run_pipeline", fake)
    return run_module.main(argv), seen


BASE = ["--space", "egfr", "--no-wandb", "--num-samples", "5", "--name", "r1"]


def test_the_folder_is_claimed_and_options_saved_before_preprocessing(monkeypatch, tmp_path, capsys):
    code, seen = _start(monkeypatch, [*BASE, "--results-dir", str(tmp_path)])
    assert seen["claimed"] and seen["saved"] and not seen["resume"]
    assert code == 130
    err = capsys.readouterr().err
    assert f"interrupted; continue with --resume --name r1 --results-dir {tmp_path}" in err
    again, _ = _start(monkeypatch, [*BASE, "--results-dir", str(tmp_path)])
    assert again == 2 and "already exists" in capsys.readouterr().err


def test_a_new_head_resumes_from_the_storage_alone(monkeypatch, tmp_path):
    storage, old, new = tmp_path / "shared", tmp_path / "old-head", tmp_path / "new-head"
    _start(monkeypatch, [*BASE, "--results-dir", str(old), "--storage-path", str(storage)])
    assert (storage / "r1" / OPTIONS_FILE).is_file()
    code, seen = _start(monkeypatch, ["--resume", "--name", "r1", "--results-dir", str(new),
                                      "--storage-path", str(storage), "--address", "auto",
                                      "--data", str(tmp_path / "mounted-here")])
    assert code == 130 and seen["resume"]
    assert seen["options"].sweep.num_samples == 5 and seen["options"].address == "auto"
    assert seen["options"].data.root == tmp_path / "mounted-here"  # its content is checked later
    assert seen["options"].results_path() == (new / "r1").resolve()
    assert load_options(new / "r1").sweep.num_samples == 5


def test_resume_refuses_a_changed_flag_by_name(monkeypatch, tmp_path, capsys):
    _start(monkeypatch, [*BASE, "--results-dir", str(tmp_path)])
    capsys.readouterr()
    code, seen = _start(monkeypatch, ["--resume", "--name", "r1", "--results-dir", str(tmp_path),
                                      "--num-samples", "50"])
    assert code == 2 and not seen
    assert "--num-samples differs from the run's 5; leave it out or start a new --name" in \
        capsys.readouterr().err
    same, seen = _start(monkeypatch, [*BASE, "--results-dir", str(tmp_path), "--resume"])
    assert same == 130 and seen["resume"]  # the same values again are fine


def test_a_url_password_is_saved_masked_and_must_be_given_again(monkeypatch, tmp_path, capsys):
    _start(monkeypatch, [*BASE, "--results-dir", str(tmp_path), "--optuna-storage", URL,
                         "--mlflow", URL.replace("postgresql", "https")])
    capsys.readouterr()
    for name in (OPTIONS_FILE, OPTIONS_YAML):
        text = (tmp_path / "r1" / name).read_text(encoding="utf-8")
        assert PASSWORD not in text and "alice:***@db.example" in text
    code, _ = _start(monkeypatch, ["--resume", "--name", "r1", "--results-dir", str(tmp_path)])
    assert code == 2 and "--optuna-storage: the run's URL postgresql://alice:***@" in capsys.readouterr().err
    code, seen = _start(monkeypatch, ["--resume", "--name", "r1", "--results-dir", str(tmp_path),
                                      "--optuna-storage", URL,
                                      "--mlflow", URL.replace("postgresql", "https")])
    assert code == 130 and seen["options"].sweep.optuna_storage == URL  # the real URL, to connect
    other = URL.replace(PASSWORD, "x").replace("alice", "eve")
    code, _ = _start(monkeypatch, ["--resume", "--name", "r1", "--results-dir", str(tmp_path),
                                   "--optuna-storage", other])
    assert code == 2 and "--optuna-storage differs" in capsys.readouterr().err


def test_changed_data_is_refused_on_resume():
    data = SimpleNamespace(info={"cache_key": "abc"})
    check_fingerprint(data, "abc")
    check_fingerprint(data, None)  # a run saved before its data was prepared
    with pytest.raises(Exception, match="data differ from the run's"):
        check_fingerprint(data, "old")


def test_every_retrain_failing_is_a_clear_error_not_a_key_error(tmp_path):
    failed = SimpleNamespace(error=RuntimeError("boom\nValueError: loss is NaN"), checkpoint=None,
                             path=str(tmp_path / "trial_1"))
    options = SimpleNamespace(results_path=lambda: tmp_path, name="r1")
    data = SimpleNamespace(info={"task": "egfr"}, arrays={}, splits=pd.DataFrame({"split": [], "group": []}))
    space = SimpleNamespace(metric="val/auroc", mode="max", threshold_rule="youden")
    with pytest.raises(RetrainsFailed, match="every retrain failed") as caught:
        finish(space, data, [failed], [{}], pd.DataFrame(), options, wall_time_s=1.0)
    assert "trial_1: ValueError: loss is NaN" in str(caught.value)
    assert "trials.csv" in str(caught.value) and "--resume --name r1" in str(caught.value)
    assert not (tmp_path / "leaderboard.csv").exists()


def test_a_pickled_secret_url_is_masked_and_comes_back_only_where_known():
    import pickle

    from tuning.config import secrets

    held = secrets.secret(URL)
    assert held == URL and secrets.secret("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    blob = pickle.dumps({"url": held})
    assert PASSWORD.encode() not in blob
    assert pickle.loads(blob)["url"] == URL  # this process was given the real URL
    assert held.format() == URL and PASSWORD.encode() not in pickle.dumps(held.format())
    secrets._REAL.clear()
    assert pickle.loads(blob)["url"] == redact_text(URL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_outside_a_fit_interrupts_at_once(sig):
    with pytest.raises(KeyboardInterrupt, match=sig.name), STOP.installed():
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the handler raises before this ends
    assert STOP.received is None  # cleared for a later run in this process
    assert signal.getsignal(sig) is not STOP._handle  # the previous handler is back


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_in_a_fit_asks_tune_to_stop_then_the_run_is_interrupted(sig):
    asked = []
    with pytest.raises(RunInterrupted, match=sig.name), STOP.installed(), fitting():
        signal.signal(signal.SIGUSR1, lambda *_: asked.append(True))  # as Tune's fit() does
        os.kill(os.getpid(), sig)
        time.sleep(0.2)  # Tune's loop would now save its state and return from fit()
    assert asked == [True]
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)


def _fails_once(config):
    marker = Path(config["marker"])
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("first attempt fails")
    tune.report({"score": 1.0})


def test_errored_retrains_run_again_on_resume(ray_local, tmp_path):
    def build():
        return tune.Tuner(_fails_once, param_space={"marker": str(tmp_path / "marker")},
                          run_config=tune.RunConfig(name="retrain", storage_path=str(tmp_path),
                                                    verbose=0))

    first = fit_or_resume(build, _fails_once, str(tmp_path / "retrain"), resume=False)
    assert first[0].error is not None
    again = fit_or_resume(build, _fails_once, str(tmp_path / "retrain"), resume=True,
                          restart_errored=True)
    assert again[0].error is None and again[0].metrics["score"] == 1.0
