"""Preprocessing as Ray tasks gives exactly the serial arrays, in order."""
import numpy as np

from core.config import DataConfig
from core.data.prepared import DataOptions
from core.tasks import get_task, prepare
from tests.conftest import ensure_ray
from tuning.parallel import ray_map


def _square(x: int) -> int:
    return x * x


def test_ray_map_keeps_the_order_of_map():
    ensure_ray()
    items = list(range(23))
    assert list(ray_map(_square, items, in_flight=3)) == [x * x for x in items]


def test_parallel_preparation_matches_serial(tiny_egfr, tmp_path):
    ensure_ray()
    cfg = DataConfig(shape=(8, 8, 8))
    serial = prepare(get_task("egfr"), cfg, DataOptions(root=tiny_egfr, cache_dir=tmp_path / "a"), seed=1)
    parallel = prepare(get_task("egfr"), cfg, DataOptions(root=tiny_egfr, cache_dir=tmp_path / "b"),
                       seed=1, mapper=ray_map)
    assert serial.info["cache_key"] == parallel.info["cache_key"]
    for name, array in serial.arrays.items():
        np.testing.assert_array_equal(array, parallel.arrays[name])
