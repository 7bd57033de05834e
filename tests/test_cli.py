"""The CLI stops on bad input with one clear message and exit status 2, before any trial."""
import shutil

import pytest

from tuning.config.options import RUN_FLAGS
from tuning.run import main, parser


def run(capsys, *argv):
    code = main(["--space", "egfr", "--no-wandb", *argv])
    return code, capsys.readouterr().err


def test_every_flag_has_help():
    for flag in RUN_FLAGS:
        assert flag.spec.help.strip(), f"--{flag.name} has no help text"


def test_gpus_per_trial_accepts_fractions():
    assert parser().parse_args(["--space", "egfr", "--gpus-per-trial", "0.25"]).gpus_per_trial == 0.25


@pytest.mark.parametrize("make,expected", [
    (lambda tmp: tmp / "missing", "does not exist"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "No volume"),
])
def test_a_bad_data_folder_exits_2_naming_it(capsys, tmp_path, make, expected):
    folder = make(tmp_path)
    code, err = run(capsys, "--data", str(folder), "--results-dir", str(tmp_path / "results"))
    assert code == 2
    assert str(folder) in err and expected.lower() in err.lower()
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("trials.csv"))


def test_a_missing_label_column_lists_the_columns(capsys, tmp_path, tiny_egfr):
    code, err = run(capsys, "--data", str(tiny_egfr), "--label-column", "EGFR",
                    "--results-dir", str(tmp_path))
    assert code == 2 and "EGFR mutation status" in err and "--label-column" in err


def test_a_dataset_too_small_to_split_exits_2(capsys, tmp_path, tiny_egfr):
    small = tmp_path / "small"
    shutil.copytree(tiny_egfr, small)
    csv = small / "clinical.csv"
    lines = csv.read_text(encoding="utf-8").splitlines()
    csv.write_text("\n".join(lines[:7]) + "\n")  # header + 6 cases
    code, err = run(capsys, "--data", str(small), "--results-dir", str(tmp_path / "results"))
    assert code == 2 and "split" in err.lower()


def test_an_existing_run_is_never_overwritten(capsys, tmp_path):
    (tmp_path / "taken").mkdir()
    code, err = run(capsys, "--name", "taken", "--results-dir", str(tmp_path))
    assert code == 2 and "already exists" in err


def test_resume_needs_a_started_run(capsys, tmp_path):
    code, err = run(capsys, "--resume", "--name", "nothing", "--results-dir", str(tmp_path))
    assert code == 2 and "nothing to resume" in err
