"""The console command, the single version, and setup files that name no package index."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tuning
from tuning.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command,flag", [("run", "--num-samples"), ("predict", "--out"),
                                          ("serve", "--max-upload-mb"), ("compare", "--out"),
                                          ("export-wandb-sweep", "--space")])
def test_each_subcommand_reaches_its_entry_points_main(capsys, command, flag):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0 and flag in capsys.readouterr().out


def test_an_unknown_subcommand_exits_2_listing_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["sweep"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and all(name in err for name in COMMANDS)


def test_the_version_has_one_source_and_a_changelog_entry(capsys):
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # read as text: tomllib needs Python 3.11
    assert re.search(r'^dynamic = \["version"\]', pyproject, flags=re.M)
    assert not re.search(r'^version = "', pyproject, flags=re.M)  # no second, literal version
    assert 'version = {attr = "tuning.__version__"}' in pyproject
    assert 'medtune = "tuning.cli:main"' in pyproject
    entries = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), flags=re.M)
    assert entries[0] == tuning.__version__
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"medtune {tuning.__version__}"


def test_setup_and_ci_name_no_package_index_and_ci_lints_first():
    setup = (ROOT / "setup.sh").read_text(encoding="utf-8")
    assert not re.search(r"https?://|--index-url|--extra-index-url", setup)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "ruff check ." in ci and ci.index("ruff check .") < ci.index("pytest")


@pytest.mark.parametrize("module,flag", [("tuning.run", "--num-samples"), ("tuning.predict", "--out"),
                                         ("tuning.serve", "--max-upload-mb"), ("tuning.compare", "--out"),
                                         ("tuning.export_wandb_sweep", "--space")])
def test_the_documented_module_commands_still_run(module, flag):
    out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and f"python -m {module}" in out.stdout and flag in out.stdout
