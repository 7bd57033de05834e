"""``tuning.run --config run.yaml``: a YAML run file gives the same options as the flags it names."""
from pathlib import Path

import pytest
import yaml

from tuning.config.command import options_from_args, parse
from tuning.config.options import OPTIONS_YAML, config_keys, save_options
from tuning.tracking.callbacks import local_mlflow_uri, mlflow_callbacks

FLAGS = ["--space", "segmentation", "--quick", "--num-samples", "3", "--max-epochs", "2",
         "--cpus-per-trial", "0.5", "--seed", "7", "--top-k", "1", "--retrain-seeds", "1",
         "--name", "tiny", "--results-dir", "out", "--no-wandb", "--mlflow",
         "--label-column", "status", "--time-budget", "60"]
YAML = {"space": "segmentation", "quick": True, "num-samples": 3, "max_epochs": 2,
        "cpus_per_trial": 0.5, "seed": 7, "top-k": 1, "retrain_seeds": "1", "name": "tiny",
        "results-dir": "out", "no_wandb": True, "mlflow": True, "label-column": "status",
        "time_budget": 60}


def write_yaml(folder: Path, payload: dict) -> Path:
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(payload))
    return path


def test_a_yaml_file_gives_the_same_options_as_its_flags(tmp_path):
    from_flags = options_from_args(parse(FLAGS))
    from_yaml = options_from_args(parse(["--config", str(write_yaml(tmp_path, YAML))]))
    assert from_yaml == from_flags
    assert from_yaml.sweep.num_samples == 3 and from_yaml.overrides == {"data/shape": (64, 64)}
    assert from_yaml.mlflow == local_mlflow_uri(Path("out/tiny"))


def test_flags_override_the_yaml_file(tmp_path):
    path = write_yaml(tmp_path, YAML)
    options = options_from_args(parse(["--config", str(path), "--num-samples", "9", "--space", "xray",
                                       "--mlflow", "sqlite:///m.db"]))
    assert options.sweep.num_samples == 9 and options.space == "xray"
    assert options.mlflow == "sqlite:///m.db" and options.top_k == 1


def test_an_unknown_key_exits_2_listing_the_valid_keys(tmp_path, capsys):
    path = write_yaml(tmp_path, {"space": "egfr", "num_sample": 3})
    with pytest.raises(SystemExit) as stop:
        parse(["--config", str(path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "unknown keys num_sample" in err and "num-samples" in err and "max-epochs" in err


@pytest.mark.parametrize("payload,words", [
    ({"space": "lungs"}, "not one of"),
    ({"space": "egfr", "num_samples": "many"}, "not a valid int"),
    ({"space": "egfr", "quick": "yes"}, "true or false"),
    ({"space": "egfr", "top_k": [1, 2]}, "must be one int"),
])
def test_a_value_of_the_wrong_kind_exits_2(tmp_path, capsys, payload, words):
    with pytest.raises(SystemExit) as stop:
        parse(["--config", str(write_yaml(tmp_path, payload))])
    assert stop.value.code == 2 and words in capsys.readouterr().err


def test_the_space_may_come_from_the_yaml_or_the_flags_but_is_required(tmp_path):
    path = write_yaml(tmp_path, {"num_samples": 2})
    assert parse(["--config", str(path), "--space", "egfr"]).space == "egfr"
    with pytest.raises(SystemExit):
        parse(["--config", str(path)])


def test_run_options_yaml_reruns_the_run(tmp_path):
    options = options_from_args(parse([*FLAGS, "--results-dir", str(tmp_path)]))
    save_options(options, tmp_path)
    saved = tmp_path / OPTIONS_YAML
    assert set(yaml.safe_load(saved.read_text(encoding="utf-8"))) <= set(config_keys())
    assert options_from_args(parse(["--config", str(saved)])) == options
    renamed = options_from_args(parse(["--config", str(saved), "--name", "again"]))
    assert renamed.name == "again" and renamed.overrides == options.overrides
    assert renamed.mlflow == local_mlflow_uri(tmp_path / "again")  # its own folder, not the first run's


def test_mlflow_callbacks_tag_each_run_with_its_job_type(tmp_path):
    assert mlflow_callbacks(uri=None, experiment="x", job_type="trial") == []
    [callback] = mlflow_callbacks(uri=local_mlflow_uri(tmp_path), experiment="x", job_type="retrain")
    assert callback.tags == {"job_type": "retrain"} and callback.experiment_name == "x"
