"""Preprocessing in parallel: a ``map`` whose calls run as Ray tasks on the driver's node.

The dataset need only be on the driver's disk, so the tasks stay on its node (every core of it);
at most ``in_flight`` results wait in the driver at once, so it holds a few scans' outputs plus
the arrays it fills, never the dataset.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@ray.remote
def _apply(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def local_cpus() -> int:
    """CPUs Ray gives the driver's node (0 on a head that keeps its CPUs from tasks)."""
    node = ray.get_runtime_context().get_node_id()
    for entry in ray.nodes():
        if entry["NodeID"] == node:
            return int(entry["Resources"].get("CPU", 0))
    return 0


def local_map() -> Callable[..., Iterable[Any]]:
    """``ray_map`` when the driver's node has CPUs for tasks, else the plain serial ``map``."""
    return ray_map if local_cpus() > 0 else map


def ray_map(fn: Callable[[Any], Any], items: Iterable[Any], *, in_flight: int | None = None) -> Iterator[Any]:
    """``map(fn, items)`` in order, each call a one-CPU Ray task on this node; Ray must be running."""
    strategy = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    task = _apply.options(num_cpus=1, scheduling_strategy=strategy)
    fn_ref = ray.put(fn)
    limit = in_flight or 2 * max(1, local_cpus())
    pending: deque = deque()
    for item in items:
        pending.append(task.remote(fn_ref, item))
        if len(pending) >= limit:
            yield ray.get(pending.popleft())
    while pending:
        yield ray.get(pending.popleft())
