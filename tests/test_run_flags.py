"""One source per run option: the dataclass field gives the CLI's default, its --help text and the
--config key's type, so the CLI, a YAML file and the Python API agree."""
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from core.data.prepared import DataOptions
from tuning.config.command import options_from_args, parse, parser
from tuning.config.options import RUN_FLAGS, CommandFlags, RunOptions
from tuning.search.settings import SweepSettings, resolve

ROOT = Path(__file__).resolve().parents[1]


def help_of(text: str, option: str) -> str:
    """The help paragraph of one option in ``--help`` output, whitespace collapsed."""
    blocks = re.split(r"\n(?=  -)", text)
    [block] = [b for b in blocks if re.match(rf"\s*{re.escape(option)}\b", b.strip())]
    return " ".join(block.split())


def test_help_states_each_default_once_and_it_is_the_fields():
    text = parser().format_help()
    for flag in RUN_FLAGS:
        block = help_of(text, f"--{flag.name}")
        if flag.switch or flag.required:
            assert "(default:" not in block, block
            continue
        assert block.count("(default") == 1 and block.count("default:") == 1, block
        shown = flag.spec.default_text if flag.default is None else str(flag.default)
        assert f"(default: {shown})" in block, block


@pytest.mark.parametrize("owner", [SweepSettings, DataOptions, RunOptions, CommandFlags])
def test_the_cli_parses_to_the_dataclass_defaults(owner):
    args = parse(["--space", "egfr"])
    defaults = {f.name: f.default for f in dataclasses.fields(owner)
                if f.default is not dataclasses.MISSING}
    flagged = [flag for flag in RUN_FLAGS if flag.owner is owner]
    assert flagged
    for flag in flagged:
        if flag.field in defaults:
            assert flag.field_value(getattr(args, flag.key)) == defaults[flag.field], flag.name


def test_python_api_and_cli_give_the_same_options():
    """A notebook's RunOptions and the CLI's differ only in what the CLI adds (scheduler resolved)."""
    from_cli = options_from_args(parse(["--space", "egfr", "--name", "same"]))
    from_api = RunOptions(space="egfr", name="same")
    assert dataclasses.replace(from_cli, sweep=dataclasses.replace(from_cli.sweep, scheduler="auto")) \
        == from_api
    assert from_api.sweep.gpus_per_trial is None and from_api.sweep.max_concurrent is None


def test_automatic_choices_are_resolved_in_one_place():
    auto = SweepSettings()
    on_gpus = resolve(auto, budget=60, cluster={"CPU": 16, "GPU": 2})
    assert (on_gpus.gpus_per_trial, on_gpus.max_concurrent, on_gpus.max_epochs) == (1.0, 2, 60)
    on_cpus = resolve(auto, budget=12, cluster={"CPU": 4})
    assert (on_cpus.gpus_per_trial, on_cpus.max_concurrent, on_cpus.max_epochs) == (0.0, 4, 12)
    packed = resolve(SweepSettings(gpus_per_trial=0.25, max_epochs=5), budget=60,
                     cluster={"CPU": 16, "GPU": 1})
    assert (packed.max_concurrent, packed.max_epochs) == (4, 5) and packed.resolved


@pytest.mark.parametrize("payload,key", [
    ({"space": "egfr", "num_samples": "ten"}, "num_samples"),
    ({"space": "egfr", "gpus-per-trial": "half"}, "gpus-per-trial"),
    ({"space": "egfr", "max_epochs": 2.5}, "max_epochs"),
    ({"space": "egfr", "no_wandb": "no"}, "no_wandb"),
])
def test_a_wrong_type_in_the_yaml_exits_2_naming_the_key(tmp_path, capsys, payload, key):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(payload))
    with pytest.raises(SystemExit) as stop:
        parse(["--config", str(path)])
    assert stop.value.code == 2 and f"--config key {key!r}" in capsys.readouterr().err


def test_a_yaml_float_written_without_a_dot_is_read_as_a_number(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("space: egfr\ntime_budget: 3e2\n")  # YAML 1.1 reads 3e2 as a string
    assert parse(["--config", str(path)]).time_budget == 300.0


def test_no_private_argparse_or_reporter_api():
    private = re.compile(r"\._actions\b|\._progress_str\b|\._option_string_actions\b")
    users = [p.relative_to(ROOT).as_posix() for folder in ("tuning", "tests")
             for p in (ROOT / folder).rglob("*.py")
             if p.name != "test_run_flags.py" and private.search(p.read_text(encoding="utf-8"))]
    assert users == []


def test_options_saved_with_the_old_automatic_markers_still_load():
    payload = RunOptions(space="egfr", name="old").to_json()
    payload["sweep"].update(gpus_per_trial=-1.0, max_concurrent=0)  # the markers before None
    loaded = RunOptions.from_json(payload)
    assert (loaded.sweep.gpus_per_trial, loaded.sweep.max_concurrent) == (None, None)
