"""The live trial table: sorted by the metric, best so far, errors visible, at most every N s."""
from types import SimpleNamespace

from ray.tune import ProgressReporter

from search_spaces import get_space
from tuning.search.progress import TrialTable, short_names, trial_table


def trial(trial_id, status, auroc=None, best=None, lr=1e-3, error_file=None):
    result = {} if auroc is None else {"epoch": 3, "val/auroc": auroc, "val/loss": 0.5}
    analysis = {} if best is None else {"val/auroc": {"max": best, "min": 0.0}}
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=result,
                           config={"optim": {"lr": lr}}, metric_analysis=analysis,
                           error_file=error_file)


def table(**kwargs):
    return TrialTable(metric="val/auroc", mode="max", every_s=30,
                      metric_columns={"epoch": "epoch", "val/auroc": "val/auroc"},
                      parameter_columns={"optim/lr": "lr"}, **kwargs)


def test_the_table_sorts_by_the_metric_and_names_the_best_and_the_errors():
    trials = [trial("a", "TERMINATED", 0.61, best=0.70), trial("b", "RUNNING", 0.83, best=0.83),
              trial("c", "ERROR", error_file="/r/c/error.txt"), trial("d", "PENDING")]
    text = table().render(trials, done=False)
    rows = [line.split()[0] for line in text.splitlines() if line.split()[:1] in (["a"], ["b"])]
    assert rows == ["b", "a"]  # best val/auroc first
    assert "Best so far: val/auroc 0.8300 (trial b)" in text
    assert "error: trial c: /r/c/error.txt" in text
    assert "1 RUNNING" in text and "1 ERROR" in text


def test_it_reports_at_most_every_interval_and_always_at_the_end():
    reporter = table()
    assert reporter.should_report([], done=False)
    assert not reporter.should_report([], done=False)
    assert reporter.should_report([], done=True)


def test_it_is_a_public_progress_reporter_and_off_under_rays_new_output(monkeypatch):
    space = get_space("egfr")
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "0")
    assert isinstance(trial_table(space, list(space.search)), ProgressReporter)
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "1")
    assert trial_table(space, list(space.search)) is None


def test_short_names_keep_a_shared_name_long():
    assert short_names(["optim/lr", "optim/weight_decay", "a/dropout", "b/dropout"]) == {
        "optim/lr": "lr", "optim/weight_decay": "wd", "a/dropout": "a/dropout", "b/dropout": "b/dropout"}
