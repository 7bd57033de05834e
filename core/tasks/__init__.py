"""Every task medtune knows, by name, one line each; a task's module is imported on first use.

Adding a task: a module here defining ``TASK`` (reader, preprocessing, input loader), a phantom
in ``core/data/phantoms/``, a page in ``search_spaces/``, and its line in ``REGISTRY``.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.tasks.prepare import prepare

if TYPE_CHECKING:
    from core.tasks.task import Task

__all__ = ["REGISTRY", "get_task", "prepare", "register", "task_names", "tasks_taking", "unregister"]

REGISTRY = {
    "egfr": "core.tasks.egfr",
    "luna16": "core.tasks.luna16",
    "segmentation": "core.tasks.segmentation",
    "xray": "core.tasks.xray",
}
_REGISTERED: dict[str, Task] = {}  # tasks added at run time (a plug-in, a test)


def task_names() -> tuple[str, ...]:
    """Names of every known task, built-in first."""
    return (*REGISTRY, *(name for name in _REGISTERED if name not in REGISTRY))


def get_task(name: str) -> Task:
    """The task called ``name``; raises ``ConfigError`` listing the known ones."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in REGISTRY:
        raise ConfigError(f"Unknown task {name!r}; known tasks: {', '.join(task_names())}")
    return importlib.import_module(REGISTRY[name]).TASK


def register(task: Task) -> None:
    """Make ``task`` known by its name (replacing a task registered earlier under that name)."""
    _REGISTERED[task.name] = task


def unregister(name: str) -> None:
    """Forget a task added with ``register`` (built-in tasks stay)."""
    _REGISTERED.pop(name, None)


def tasks_taking(extra_input: str) -> list[str]:
    """Names of the tasks whose models read ``extra_input`` ("mask" or "point") beside an image."""
    return [name for name in task_names() if extra_input in get_task(name).inputs]
