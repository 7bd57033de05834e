"""Shared fixtures: a local 2-CPU Ray cluster, and quiet, offline, telemetry-free settings."""
import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def ensure_ray():
    """Start the small local Ray cluster (2 CPUs) the Ray tests share, unless it is running."""
    import ray

    from tuning.search.workers import worker_runtime_env

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
                 runtime_env=worker_runtime_env())
    return ray


@pytest.fixture
def ray_local():
    """The shared local Ray cluster, for function-scoped tests."""
    return ensure_ray()


@pytest.fixture
def no_ray():
    """No Ray in this process: for tests that start their own cluster or a CLI subprocess."""
    import ray

    ray.shutdown()
    yield
    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray_at_exit():
    yield
    import ray

    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_egfr(tmp_path_factory):
    """A small EGFR phantom (40 cases) in the real on-disk format: NIfTI + clinical CSV + masks.

    The easy variant: tests that train on it need a signal that a few epochs can learn.
    """
    from core.data.phantoms.egfr import egfr_phantom

    return egfr_phantom(tmp_path_factory.mktemp("phantoms"), n_cases=40, seed=3, difficulty="easy")
