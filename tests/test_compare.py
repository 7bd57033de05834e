"""python -m tuning.compare: two finished runs side by side, and a clear error for a bad folder."""
import json
import shutil

import pandas as pd
import pytest

from tests.test_report import assert_real_png, run_tiny, tiny_options
from tuning.results.compare import main


@pytest.fixture(scope="module")
def two_runs(tiny_egfr, tmp_path_factory):
    """One tiny sweep, and a copy of it under another name with its method renamed."""
    tmp = tmp_path_factory.mktemp("compare")
    first, _ = run_tiny(tiny_options(tiny_egfr, tmp, name="tiny-a", num_samples=3))
    second = shutil.copytree(first, first.parent / "tiny-b")
    options = json.loads((second / "run_options.json").read_text(encoding="utf-8"))
    options["sweep"]["search"] = "random"
    (second / "run_options.json").write_text(json.dumps(options))
    return first, second


@pytest.mark.slow
def test_compare_writes_one_row_per_run_and_one_plot(two_runs, tmp_path, capsys):
    first, second = two_runs
    assert main([str(first), str(second), "--out", str(tmp_path / "cmp")]) == 0
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert list(table["name"]) == ["tiny-a", "tiny-b"]
    assert list(table["search"]) == ["tpe", "random"] and set(table["scheduler"]) == {"asha"}
    assert (table["trials"] == 3).all() and (table["trial_epochs"] > 0).all()
    assert {"test/auroc", "test/auroc_ci_low", "test/auroc_ci_high"} <= set(table.columns)
    text = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert "| tiny-a | egfr | tpe | asha | 3 |" in text and "| tiny-b | egfr | random | asha | 3 |" in text
    assert "](compare.png)" in text
    assert_real_png(tmp_path / "cmp" / "compare.png")
    assert "tiny-a" in capsys.readouterr().out


def test_compare_rejects_a_folder_that_is_not_a_finished_run(tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "trials.csv").write_text("trial_id,status\n")
    assert main([str(unfinished), "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert f"missing {unfinished / 'summary.json'}" in err
    assert not (tmp_path / "cmp").exists()


def test_compare_names_a_folder_that_does_not_exist(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "cmp")]) == 2
    assert "nowhere is not a folder" in capsys.readouterr().err
