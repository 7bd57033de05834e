"""Imports flow one way: core knows no Ray or tuning; spaces hold data; only tuning imports Ray."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package,forbidden", [
    ("core", {"ray", "tuning", "search_spaces", "optuna", "wandb"}),
    ("search_spaces", {"ray", "tuning", "torch", "optuna", "pytorch_lightning"}),
])
def test_package_does_not_import(package, forbidden):
    for path in (ROOT / package).rglob("*.py"):
        bad = imported_roots(path) & forbidden
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_only_imageio_imports_simpleitk():
    users = {p.relative_to(ROOT).as_posix() for p in (ROOT / "core").rglob("*.py")
             if "SimpleITK" in imported_roots(p)}
    assert users <= {"core/imageio.py"}


def test_search_spaces_import_only_types_metric_names_and_task_names():
    for path in (ROOT / "search_spaces").glob("*.py"):
        allowed = {"core.metrics", "core.tasks"} if path.name == "__init__.py" else {"core.metrics"}
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core"):
                assert node.module in allowed, f"{path.name} imports {node.module}"
