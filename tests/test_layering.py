"""Imports flow one way: core knows no Ray or tuning; spaces hold data; only tuning imports Ray."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
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
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core"):
                assert node.module in allowed, f"{path.name} imports {node.module}"


# --- tuning's rooms ------------------------------------------------------------------------------
# A room imports only itself and the rooms before it; tuning's top-level modules (the pipeline and
# the entry points) may import any room, and no room imports them.
ROOMS = ("search", "tracking", "config", "results", "serve")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in (ROOT / "tuning").rglob("*.py")}


def tuning_imports(path: Path) -> set[str]:
    """The tuning modules a file imports anywhere in it (function bodies and TYPE_CHECKING too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("tuning")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "tuning":
            for alias in node.names:  # ``from tuning.results import outputs`` imports a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


def room_of(module: str) -> str | None:
    """``search`` for ``tuning.search.sweep``; None for a top-level module such as ``tuning.run``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else None


def test_rooms_import_only_earlier_rooms():
    bad = []
    for module, path in MODULES.items():
        room = room_of(module)
        if room is None:
            continue
        allowed = set(ROOMS[:ROOMS.index(room) + 1])
        bad += [f"{module} imports {target}" for target in sorted(tuning_imports(path))
                if target != "tuning" and room_of(target) not in allowed]
    assert not bad, "rooms import in one direction, " + " > ".join(reversed(ROOMS)) + ":\n" + \
        "\n".join(bad)


def test_tuning_has_no_import_cycle():
    graph = {module: tuning_imports(path) & set(MODULES) - {module} for module, path in MODULES.items()}
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycle = trail[trail.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_room_rule_catches_a_new_cycle(tmp_path):
    """The rule above is live: a search module importing a results module breaks it."""
    probe = tmp_path / "probe.py"
    probe.write_text("from tuning.results.report import write_report\n")
    assert room_of(next(iter(tuning_imports(probe)))) == "results"
    assert ROOMS.index("results") > ROOMS.index("search")
