"""cluster.yaml passes Ray's own cluster-config validation and keeps the cluster locked down.

Offline and in well under a second: `prepare_config` merges the file with Ray's AWS defaults
(`ray/autoscaler/aws/defaults.yaml`, read from the installed package) and `validate_config`
checks it against `ray/autoscaler/ray-schema.json`. Neither touches AWS; the calls that do
(`bootstrap_aws`: IAM, key pairs, subnets, security groups) only run inside `ray up`, and are
not called here. An autouse fixture makes any socket connection fail, so a cloud call would
show up as an error. The validator is a private Ray API (`ray.autoscaler._private.util`): it
is what `ray up` itself runs, and if Ray moves it these tests fail loudly rather than pass.

The schema catches unknown keys, wrong types and a bad `head_node_type`, not typos inside a
provider's `node_config` (boto3 parameters); see the negative tests.
"""

from __future__ import annotations

import copy
import re
import socket
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"

HEAD_TYPE = "head_cpu"
GPU_WORKER_TYPE = "gpu_worker"

# Lines a user must edit before `ray up`, as they appear in cluster.yaml.
FILL_IN_MARKERS = (
    "# FILL IN: region",
    "# FILL IN: ImageId (head)",
    "# FILL IN: ImageId (worker)",
    "# FILL IN: IamInstanceProfile Arn (workers)",
    "# FILL IN: S3 bucket",
)

# Things that look like credentials. A W&B API key is 40 hex characters.
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"aws_secret_access_key\s*[=:]", re.IGNORECASE),
    "W&B key assignment": re.compile(r"WANDB_API_KEY\s*[=:]\s*\S+"),
    "Ray token assignment": re.compile(r"RAY_AUTH_TOKEN\s*[=:]\s*\S+"),
    "private key block": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "40-hex token": re.compile(r"\b[0-9a-f]{40}\b"),
}

# Command lists that run on the nodes, at the top level and per node type.
COMMAND_KEYS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to open a connection, so validation provably stays offline."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted during an offline test: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def validated(config: dict[str, Any]) -> dict[str, Any]:
    """Merge with Ray's provider defaults and validate, as `ray up` does before any cloud call."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture
def text() -> str:
    return CLUSTER_YAML.read_text(encoding="utf-8")


@pytest.fixture
def raw(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)


@pytest.fixture
def prepared(raw: dict[str, Any]) -> dict[str, Any]:
    return validated(raw)


def all_commands(config: dict[str, Any]) -> list[str]:
    """Every shell command and docker run option that ends up on a node."""
    commands = [cmd for key in COMMAND_KEYS for cmd in config.get(key, [])]
    for node_type in config["available_node_types"].values():
        commands += [cmd for key in COMMAND_KEYS for cmd in node_type.get(key, [])]
    docker = config.get("docker", {})
    for key in ("run_options", "head_run_options", "worker_run_options"):
        commands += docker.get(key, [])
    return commands


def test_cluster_yaml_passes_ray_validation(prepared: dict[str, Any]) -> None:
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def _typo_top_level_key(c: dict[str, Any]) -> None:
    c["idle_timeout_minute"] = c.pop("idle_timeout_minutes")


def _unknown_head_type(c: dict[str, Any]) -> None:
    c["head_node_type"] = "head_gpu"


def _typo_node_type_key(c: dict[str, Any]) -> None:
    c["available_node_types"][GPU_WORKER_TYPE]["min_worker"] = 0


def _fractional_gpu_resource(c: dict[str, Any]) -> None:
    c["available_node_types"][GPU_WORKER_TYPE]["resources"]["GPU"] = 0.5


def _min_workers_above_max(c: dict[str, Any]) -> None:
    c["available_node_types"][GPU_WORKER_TYPE]["min_workers"] = c["max_workers"] + 1


@pytest.mark.parametrize(
    "mutate",
    [
        _typo_top_level_key,
        _unknown_head_type,
        _typo_node_type_key,
        _fractional_gpu_resource,
        _min_workers_above_max,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_broken_copy_is_rejected(
    raw: dict[str, Any], mutate: Callable[[dict[str, Any]], None]
) -> None:
    """Proves the validator runs: a copy with one mistake must fail it."""
    broken = copy.deepcopy(raw)
    mutate(broken)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validated(broken)


def test_head_runs_no_trials(prepared: dict[str, Any]) -> None:
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert prepared["head_node_type"] == HEAD_TYPE
    assert head["resources"] == {"CPU": 0, "GPU": 0}
    assert head["max_workers"] == 0


def test_gpu_worker_type_advertises_gpus_and_autoscales_from_zero(
    prepared: dict[str, Any],
) -> None:
    worker = prepared["available_node_types"][GPU_WORKER_TYPE]
    assert worker["resources"]["GPU"] >= 1
    assert worker["resources"]["CPU"] >= 1
    assert worker["min_workers"] == 0
    assert 1 <= worker["max_workers"] <= prepared["max_workers"]
    assert prepared["idle_timeout_minutes"] > 0
    # Workers write checkpoints to the bucket themselves, so they need an instance profile.
    assert "Arn" in worker["node_config"]["IamInstanceProfile"]


def test_token_auth_stays_on(text: str, prepared: dict[str, Any]) -> None:
    assert not re.search(r"RAY_AUTH_MODE\s*=\s*[\"']?disabled", text, re.IGNORECASE)
    starts = [cmd for cmd in all_commands(prepared) if "ray start" in cmd]
    assert len(starts) == 2, starts  # head and worker
    for cmd in starts:
        assert "RAY_AUTH_MODE=token" in cmd, cmd
    # The same token reaches every node (workers get file_mounts from the head).
    mounts = prepared["file_mounts"]
    assert mounts.get("~/.ray/auth_token") == "~/.ray/auth_token"
    # Shells on the cluster (ray exec, job drivers) also run in token mode.
    assert any("export RAY_AUTH_MODE=token" in c for c in prepared["setup_commands"])


def test_dashboard_bound_to_localhost(text: str, prepared: dict[str, Any]) -> None:
    assert "0.0.0.0" not in text
    assert "::/0" not in text
    commands = all_commands(prepared)
    # Ray's AWS defaults start the head with --dashboard-host=0.0.0.0: ours must replace them.
    assert not any("0.0.0.0" in cmd for cmd in commands)
    (head_start,) = [c for c in prepared["head_start_ray_commands"] if "ray start" in c]
    assert "--dashboard-host=127.0.0.1" in head_start
    hosts = re.findall(r"--dashboard-host[= ](\S+)", " ".join(commands))
    assert set(hosts) == {"127.0.0.1"}


def test_security_group_adds_no_open_ports(prepared: dict[str, Any]) -> None:
    """Only Ray's defaults: SSH plus traffic between the cluster's own nodes."""
    rules = prepared["provider"].get("security_group", {}).get("IpPermissions", [])
    assert rules == []


@pytest.mark.parametrize("name", sorted(SECRET_PATTERNS))
def test_no_secret_in_file(text: str, name: str) -> None:
    assert not SECRET_PATTERNS[name].search(text), f"{name} found in {CLUSTER_YAML.name}"


@pytest.mark.parametrize(
    ("name", "sample"),
    [
        ("AWS access key id", "AKIA" + "Q" * 16),
        ("AWS secret key", "aws_secret_access_key = x"),
        ("W&B key assignment", "WANDB_API_KEY=" + "ab12" * 10),
        ("Ray token assignment", "export RAY_AUTH_TOKEN=" + "cd" * 16),
        ("private key block", "-----BEGIN RSA PRIVATE KEY-----"),
        ("40-hex token", "key: " + "0f" * 20),
    ],
    ids=lambda value: value if value in SECRET_PATTERNS else "",
)
def test_secret_patterns_catch_samples(name: str, sample: str) -> None:
    """The secret scan above would see a real key (samples are built, not stored)."""
    assert SECRET_PATTERNS[name].search(sample)


def test_fill_in_markers_present(text: str) -> None:
    missing = [marker for marker in FILL_IN_MARKERS if marker not in text]
    assert not missing, f"cluster.yaml lost its FILL IN markers: {missing}"


def test_setup_installs_medtune_with_the_right_torch(prepared: dict[str, Any]) -> None:
    head = " ; ".join(prepared["head_setup_commands"])
    worker = " ; ".join(prepared["worker_setup_commands"])
    assert "~/medtune" in prepared["file_mounts"]
    assert 'pip install -q -e "$HOME/medtune[cluster]"' in head  # boto3 for the autoscaler
    assert 'pip install -q -e "$HOME/medtune"' in worker
    # Torch is installed before medtune: the CPU build on the head, the CUDA build on workers.
    assert "download.pytorch.org/whl/cpu" in head
    assert "torch" in worker and "whl/cpu" not in worker
    for commands in (prepared["head_setup_commands"], prepared["worker_setup_commands"]):
        torch_at = next(i for i, c in enumerate(commands) if "torch" in c)
        medtune_at = next(i for i, c in enumerate(commands) if "-e " in c)
        assert torch_at < medtune_at
